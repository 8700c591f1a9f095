"""``application/jsonlines``: one JSON value per line in, one prediction per line out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from modelhost.codecs.convert import text_of
from modelhost.codecs.json import dumps
from modelhost.codecs.types import Decoded, Envelope
from modelhost.errors import InvalidInput


class JsonLinesCodec:
    media_type = "application/jsonlines"
    aliases: tuple[str, ...] = ("application/jsonl", "application/x-jsonlines", "application/json-lines")

    def decode(self, body: bytes, charset: str) -> Decoded:
        rows: list[Any] = []
        for number, line in enumerate(text_of(body, charset).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"malformed JSON on line {number}: {exc}") from exc
        if not rows:
            raise InvalidInput("the JSON Lines body has no records")
        return Decoded(rows, rows, Envelope.ROWS)

    def encode(self, predictions: Sequence[Any], envelope: Envelope) -> bytes:
        return b"".join(dumps(p) + b"\n" for p in predictions)

    def encode_value(self, value: Any) -> bytes:
        rows = value if isinstance(value, (list, tuple)) else [value]
        return self.encode(rows, Envelope.ROWS)
