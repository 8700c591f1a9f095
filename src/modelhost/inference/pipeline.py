"""decode -> predict -> encode for a batch of invocations, with errors kept per invocation.

Two paths:
- merged: the instances of all invocations are predicted in one call (the adapter's default, or a
  user's handlers that opted in to batching); if that call fails, each invocation is retried alone
  so one bad input fails only its own request;
- toolkit: a user's ``inference.py`` handlers with the SageMaker toolkit's exact semantics, one
  invocation at a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelhost.codecs import CodecTable, Decoded, Envelope
from modelhost.codecs.json import dumps
from modelhost.codecs.negotiation import parse_content_type
from modelhost.errors import InvocationError, ModelLoadError, ModelRaised
from modelhost.frameworks.base import Adapter, Predictor
from modelhost.inference.handlers import UserHandlers
from modelhost.inference.types import HandlerContext, Invocation, Outcome, Rendered

log = logging.getLogger("modelhost.inference")

_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")  # what may be sent back as Content-Type
MAX_CUSTOM_ATTRIBUTES = 1024  # SageMaker's limit on X-Amzn-SageMaker-Custom-Attributes

# The toolkit hands the body to input_fn/transform_fn as text for these types, as bytes otherwise.
TEXT_TYPES = frozenset({"application/json", "text/csv"})


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One decoded invocation waiting for its share of a merged prediction."""

    instances: Any  # a sequence (or an array, from a user's input_fn)
    write: Callable[[Sequence[Any]], Rendered]


def user_error(exc: BaseException, request_id: str) -> InvocationError:
    """An exception from model or handler code, as the error its client sees.

    Our own InvocationErrors keep their status; an exception with an integer ``status_code``
    (the toolkit's BaseInferenceToolkitError does) keeps that; anything else is a 500 that carries
    the exception's message. The traceback goes to the log, never to the client.
    """
    if isinstance(exc, InvocationError):
        return exc
    status = getattr(exc, "status_code", None)
    if not (isinstance(status, int) and 400 <= status <= 599):
        status = None
    log.error("request %s: the model raised %s", request_id, type(exc).__name__, exc_info=exc)
    return ModelRaised(f"{type(exc).__name__}: {exc}", status=status)


def _merge(parts: list[Any]) -> Any:
    """One sequence of instances from several requests' (arrays stay arrays for user code)."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, np.ndarray) for part in parts):
        return np.concatenate(parts)
    return [instance for part in parts for instance in part]


class Pipeline:
    def __init__(
        self,
        *,
        model: Any,
        model_dir: Path,
        predictor: Predictor | None,
        adapter: Adapter | None,
        handlers: UserHandlers | None,
        codecs: CodecTable,
        batchable: bool,
        default_accept: str = "application/json",
    ) -> None:
        if predictor is None and (handlers is None or (handlers.predict_fn is None and handlers.transform_fn is None)):
            raise ModelLoadError("no framework recognised and inference.py defines neither predict_fn nor transform_fn")
        self.model = model
        self.model_dir = model_dir
        self.predictor = predictor
        self.adapter = adapter
        self.handlers = handlers
        self.codecs = codecs
        self.batchable = batchable
        self._default_accept = default_accept
        self._toolkit_path = (
            handlers is not None
            and not batchable
            and (handlers.transform_fn or handlers.input_fn or handlers.predict_fn or handlers.output_fn) is not None
        )

    # -- hooks -----------------------------------------------------------------------------
    def worker_started(self, threads: int) -> None:
        if self.predictor is not None:
            self.predictor.worker_started(threads)

    def thread_started(self) -> None:
        if self.adapter is not None:
            self.adapter.thread_started()

    # -- entry point -------------------------------------------------------------------------
    def run_batch(self, invocations: Sequence[Invocation]) -> list[Outcome]:
        if self._toolkit_path:
            return [self._run_toolkit(inv) for inv in invocations]
        return self._run_merged(invocations)

    # -- merged path -------------------------------------------------------------------------
    def _run_merged(self, invocations: Sequence[Invocation]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(invocations)
        prepared: list[tuple[int, _Prepared]] = []
        for index, inv in enumerate(invocations):
            try:
                prepared.append((index, self._prepare(inv)))
            except Exception as exc:
                outcomes[index] = user_error(exc, inv.request_id)
        if prepared:
            self._predict_prepared(invocations, prepared, outcomes)
        return [o if o is not None else ModelRaised("no outcome") for o in outcomes]

    def _predict_prepared(
        self, invocations: Sequence[Invocation], prepared: list[tuple[int, _Prepared]], outcomes: list[Outcome | None]
    ) -> None:
        flat = _merge([item.instances for _, item in prepared])
        try:
            predictions = self._predict(flat)
        except Exception as exc:
            if len(prepared) == 1:
                index = prepared[0][0]
                outcomes[index] = user_error(exc, invocations[index].request_id)
                return
            for single in prepared:  # isolate the failing request(s)
                self._predict_prepared(invocations, [single], outcomes)
            return
        start = 0
        for index, item in prepared:
            end = start + len(item.instances)
            try:
                outcomes[index] = item.write(predictions[start:end])
            except Exception as exc:
                outcomes[index] = user_error(exc, invocations[index].request_id)
            start = end

    def _predict(self, instances: Any) -> Sequence[Any]:
        if not len(instances):
            return []
        if self.handlers is not None and self.handlers.predict_fn is not None:
            predictions = self.handlers.predict_fn(instances, self.model, HandlerContext(self.model_dir))
        else:
            assert self.predictor is not None
            predictions = self.predictor.predict(instances)
        if isinstance(predictions, np.ndarray):
            predictions = list(predictions)
        if len(predictions) != len(instances):
            raise ModelRaised(f"predict returned {len(predictions)} outputs for {len(instances)} instances")
        return predictions  # type: ignore[no-any-return]

    def _prepare(self, inv: Invocation) -> _Prepared:
        handlers = self.handlers
        context = HandlerContext(self.model_dir, inv.request_id, inv.custom_attributes)
        request_codec = None
        envelope = Envelope.LIST
        if handlers is not None and handlers.input_fn is not None:
            data = handlers.input_fn(self._user_body(inv), inv.content_type or "application/json", context)
            if not isinstance(data, (list, tuple, np.ndarray)):
                raise ModelRaised(
                    f"with batching on, input_fn must return a list of instances, not {type(data).__name__}"
                )
            instances: Any = data
        else:
            request_codec, media = self.codecs.for_request(inv.content_type)
            decoded = request_codec.decode(inv.body, media.charset)
            instances, envelope = decoded.instances, decoded.envelope
        if handlers is not None and handlers.output_fn is not None:
            output_fn, accept = handlers.output_fn, self._user_accept(inv)
            return _Prepared(
                instances, lambda p: _with_attributes(self._user_output(output_fn(p, accept, context), accept), context)
            )
        if request_codec is None:
            request_codec = self.codecs.by_media_type(parse_content_type(inv.content_type).type) or self.codecs.json
        codec = self.codecs.for_response(inv.accept, request_codec)
        return _Prepared(
            instances, lambda p: _with_attributes(Rendered(codec.encode(p, envelope), codec.media_type), context)
        )

    # -- toolkit path ------------------------------------------------------------------------
    def _run_toolkit(self, inv: Invocation) -> Outcome:
        context = HandlerContext(self.model_dir, inv.request_id, inv.custom_attributes)
        try:
            return _with_attributes(self._toolkit_answer(inv, context), context)
        except Exception as exc:
            return user_error(exc, inv.request_id)

    def _toolkit_answer(self, inv: Invocation, context: HandlerContext) -> Rendered:
        handlers = self.handlers
        assert handlers is not None
        accept = self._user_accept(inv)
        content_type = inv.content_type or "application/json"
        if handlers.transform_fn is not None:
            result = handlers.transform_fn(self.model, self._user_body(inv), content_type, accept, context)
            return self._user_output(result, accept)
        request_codec = None
        if handlers.input_fn is not None:
            data = handlers.input_fn(self._user_body(inv), content_type, context)
        else:
            request_codec, media = self.codecs.for_request(inv.content_type)
            decoded = request_codec.decode(inv.body, media.charset)
            data = decoded.value if handlers.predict_fn is not None else decoded
        if handlers.predict_fn is not None:
            prediction = handlers.predict_fn(data, self.model, context)
        else:
            prediction = self._default_predict(data)
        if handlers.output_fn is not None:
            return self._user_output(handlers.output_fn(prediction, accept, context), accept)
        if request_codec is None:
            request_codec = self.codecs.by_media_type(parse_content_type(inv.content_type).type) or self.codecs.json
        codec = self.codecs.for_response(inv.accept, request_codec)
        return Rendered(codec.encode_value(prediction), codec.media_type)

    def _default_predict(self, data: Any) -> Any:
        assert self.predictor is not None
        if isinstance(data, Decoded):
            return data.envelope.wrap(self.predictor.predict(data.instances))
        if isinstance(data, (list, tuple)):
            return self.predictor.predict(data)
        if isinstance(data, np.ndarray):
            return self.predictor.predict(list(data) if data.ndim else [data.item()])
        return self.predictor.predict([data])[0]

    # -- helpers shared by both paths ----------------------------------------------------------
    @staticmethod
    def _user_body(inv: Invocation) -> bytes | str:
        media = parse_content_type(inv.content_type or "application/json")
        if media.type in TEXT_TYPES:
            return inv.body.decode(media.charset)
        return inv.body

    def _user_accept(self, inv: Invocation) -> str:
        if not inv.accept or inv.accept.strip() == "*/*":
            return self._default_accept
        return inv.accept

    @staticmethod
    def _user_output(result: Any, accept: str) -> Rendered:
        content_type = accept
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result
        if not isinstance(content_type, str) or not _HEADER_VALUE.fullmatch(content_type):
            raise ModelRaised(f"the handler answered with an invalid content type: {content_type!r}")
        if isinstance(result, str):
            return Rendered(result.encode(), content_type)
        if isinstance(result, (bytes, bytearray, memoryview)):
            return Rendered(bytes(result), content_type)
        return Rendered(dumps(result), "application/json")


def _with_attributes(rendered: Rendered, context: HandlerContext) -> Rendered:
    """``rendered`` with the custom attributes a handler set on its context; checked here, since
    they go out as a header: visible US-ASCII, at most 1024 characters, as SageMaker requires."""
    attributes = context.response_custom_attributes
    if attributes is None or attributes == "":
        return rendered
    if (
        not isinstance(attributes, str)
        or len(attributes) > MAX_CUSTOM_ATTRIBUTES
        or not _HEADER_VALUE.fullmatch(attributes)
    ):
        raise ModelRaised(
            "the handler set response_custom_attributes to something other than at most "
            f"{MAX_CUSTOM_ATTRIBUTES} visible US-ASCII characters: {str(attributes)[:80]!r}"
        )
    return Rendered(rendered.body, rendered.content_type, attributes)
