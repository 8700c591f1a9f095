"""Shared vocabulary of the codecs: what a decoded body is and how predictions are wrapped back."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Envelope(enum.Enum):
    """The shape a request came in, which decides the shape its answer goes out in.

    LIST       ``[a, b]``                 -> ``[p(a), p(b)]``
    INSTANCES  ``{"instances": [a, b]}``  -> ``{"predictions": [p(a), p(b)]}``
    INPUTS     ``{"inputs": [a, b]}``     -> ``[p(a), p(b)]``  (Hugging Face style)
    SINGLE     ``a`` (any other value)    -> ``p(a)``
    ROWS       CSV / JSON Lines / npy rows -> one output row per input row
    """

    LIST = "list"
    INSTANCES = "instances"
    INPUTS = "inputs"
    SINGLE = "single"
    ROWS = "rows"

    def wrap(self, predictions: Sequence[Any]) -> Any:
        """Put predictions back into the shape the request used (for structured codecs)."""
        if self is Envelope.SINGLE:
            return predictions[0]
        if self is Envelope.INSTANCES:
            return {"predictions": list(predictions)}
        return list(predictions)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A request body after decoding.

    ``value`` is the body as the codec sees it (what a user's ``predict_fn`` gets without an
    ``input_fn``); ``instances`` are the items a batching predictor predicts one output for.
    """

    value: Any
    instances: Sequence[Any]
    envelope: Envelope


class Codec(Protocol):
    """Turns bytes of one media type into instances and predictions back into bytes."""

    media_type: str
    aliases: tuple[str, ...]

    def decode(self, body: bytes, charset: str) -> Decoded: ...

    def encode(self, predictions: Sequence[Any], envelope: Envelope) -> bytes: ...

    def encode_value(self, value: Any) -> bytes: ...
