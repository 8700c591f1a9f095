"""``text/plain``: the whole body is one text; a text prediction goes out as is, others as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelhost.codecs.convert import text_of
from modelhost.codecs.json import dumps
from modelhost.codecs.types import Decoded, Envelope


class TextCodec:
    media_type = "text/plain"
    aliases: tuple[str, ...] = ()

    def decode(self, body: bytes, charset: str) -> Decoded:
        text = text_of(body, charset)
        return Decoded(text, [text], Envelope.SINGLE)

    def encode(self, predictions: Sequence[Any], envelope: Envelope) -> bytes:
        if len(predictions) == 1:
            return self.encode_value(predictions[0])
        return b"".join(self.encode_value(p) + b"\n" for p in predictions)

    def encode_value(self, value: Any) -> bytes:
        if isinstance(value, str):
            return value.encode()
        return dumps(value)
