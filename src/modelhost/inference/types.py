"""Vocabulary of the inference core: what goes into a prediction and what comes out.

The core knows nothing of HTTP: the server turns a request into an Invocation and a Rendered (or
an InvocationError) back into a response.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelhost.errors import InvocationError


@dataclass(frozen=True, slots=True)
class Invocation:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None = None
    request_id: str = "-"


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    custom_attributes: str | None = None  # what the handler set: X-Amzn-SageMaker-Custom-Attributes


Outcome = Rendered | InvocationError


@dataclass(slots=True)
class HandlerContext:
    """What a user's handler gets as its optional last ``context`` argument.

    The request's fields, and one a handler may set: ``response_custom_attributes`` goes back to
    the client as ``X-Amzn-SageMaker-Custom-Attributes`` (boto3's ``CustomAttributes``), the way
    SageMaker lets inference code answer with attributes of its own. Not frozen for that field.
    """

    model_dir: Path
    request_id: str | None = None
    custom_attributes: str | None = None
    response_custom_attributes: str | None = None
