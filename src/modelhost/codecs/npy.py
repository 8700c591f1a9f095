"""``application/x-npy``: a NumPy array (never pickled objects); rows are instances."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelhost.codecs.convert import to_plain
from modelhost.codecs.types import Decoded, Envelope
from modelhost.errors import InvalidInput, NotAcceptable


class NpyCodec:
    media_type = "application/x-npy"
    aliases: tuple[str, ...] = ("application/npy",)

    def decode(self, body: bytes, charset: str) -> Decoded:
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except ValueError as exc:
            # allow_pickle=False makes object arrays (which would run code) a ValueError too.
            raise InvalidInput(f"not a loadable .npy array (object arrays are refused): {exc}") from exc
        except (OSError, EOFError) as exc:
            raise InvalidInput(f"not a .npy array: {exc}") from exc
        if not isinstance(array, np.ndarray):
            raise InvalidInput("expected a single .npy array, not an .npz archive")
        if array.ndim == 0:
            return Decoded(array, [array.item()], Envelope.SINGLE)
        return Decoded(array, list(array), Envelope.ROWS)

    def encode(self, predictions: Sequence[Any], envelope: Envelope) -> bytes:
        return self.encode_value(predictions if envelope is not Envelope.SINGLE else predictions[0])

    def encode_value(self, value: Any) -> bytes:
        try:
            array = np.asarray(value if isinstance(value, np.ndarray) else to_plain(value))
        except ValueError as exc:
            raise NotAcceptable(f"the prediction is not a rectangular array: {exc}") from exc
        if array.dtype == object:
            raise NotAcceptable("the prediction cannot be written as application/x-npy; accept application/json")
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
