"""``text/csv``: one instance per row (no header), numbers parsed; one prediction per row out."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelhost.codecs.convert import text_of, to_plain
from modelhost.codecs.types import Decoded, Envelope
from modelhost.errors import InvalidInput, NotAcceptable


def _cell(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_rows(text: str) -> list[Any]:
    """Rows of cells; a one-column row becomes its single cell (one text or number per line)."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV: {exc}") from exc
    if not rows:
        raise InvalidInput("the CSV body has no rows")
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise InvalidInput(f"CSV row {number} has {len(row)} columns, row 1 has {width}")
    if width == 1:
        return [_cell(row[0]) for row in rows]
    return [[_cell(cell) for cell in row] for row in rows]


def _line(prediction: Any) -> str:
    value = to_plain(prediction)
    if isinstance(value, dict):
        raise NotAcceptable("predictions that are objects cannot be written as text/csv; accept application/json")
    cells = value if isinstance(value, list) else [value]
    if any(isinstance(cell, (list, dict)) for cell in cells):
        raise NotAcceptable("nested predictions cannot be written as text/csv; accept application/json")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


class CsvCodec:
    media_type = "text/csv"
    aliases: tuple[str, ...] = ("application/csv",)

    def decode(self, body: bytes, charset: str) -> Decoded:
        rows = parse_rows(text_of(body, charset))
        return Decoded(rows, rows, Envelope.ROWS)

    def encode(self, predictions: Sequence[Any], envelope: Envelope) -> bytes:
        return "".join(_line(p) for p in predictions).encode()

    def encode_value(self, value: Any) -> bytes:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        rows = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
        return self.encode(list(rows), Envelope.ROWS)
