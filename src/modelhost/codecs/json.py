"""``application/json``: a list, ``{"instances": [...]}``, ``{"inputs": ...}`` or a single value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from modelhost.codecs.convert import text_of, to_plain
from modelhost.codecs.types import Decoded, Envelope
from modelhost.errors import InvalidInput, NotAcceptable

_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def loads(body: bytes | str) -> Any:
    """Parse JSON, turning a syntax error into a 400 that says where it is."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from exc


def dumps(value: Any) -> bytes:
    """Serialise predictions; numpy values go through natively, other objects are refused."""
    try:
        return orjson.dumps(value, option=_DUMP_OPTIONS)
    except TypeError:
        try:
            return orjson.dumps(to_plain(value), option=_DUMP_OPTIONS)
        except TypeError as exc:
            raise NotAcceptable(f"the prediction cannot be written as JSON: {exc}") from exc


def instances_of(value: Any) -> Decoded:
    """Find the instances in a decoded JSON value and remember the envelope they came in."""
    if isinstance(value, list):
        return Decoded(value, value, Envelope.LIST)
    if isinstance(value, dict) and len(value) == 1:
        if "instances" in value:
            items = value["instances"]
            if not isinstance(items, list):
                raise InvalidInput('"instances" must be a JSON list')
            return Decoded(value, items, Envelope.INSTANCES)
        if "inputs" in value:
            items = value["inputs"]
            if isinstance(items, list):
                return Decoded(value, items, Envelope.INPUTS)
            return Decoded(value, [items], Envelope.SINGLE)
    return Decoded(value, [value], Envelope.SINGLE)


class JsonCodec:
    media_type = "application/json"
    aliases: tuple[str, ...] = ("text/json",)

    def decode(self, body: bytes, charset: str) -> Decoded:
        if charset not in ("utf-8", "utf8"):
            body = text_of(body, charset).encode()
        return instances_of(loads(body))

    def encode(self, predictions: Sequence[Any], envelope: Envelope) -> bytes:
        return dumps(envelope.wrap(predictions))

    def encode_value(self, value: Any) -> bytes:
        return dumps(value)
