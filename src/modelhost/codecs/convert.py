"""Conversion of prediction values to plain Python, shared by the codecs."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_plain(value: Any) -> Any:
    """Numpy scalars and arrays (also nested in lists, tuples and dicts) to JSON-able Python."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def text_of(body: bytes, charset: str) -> str:
    """Decode a text body, naming the charset in the error a client gets."""
    from modelhost.errors import InvalidInput

    try:
        return body.decode(charset)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"body is not valid {charset}: {exc.reason} at byte {exc.start}") from exc
