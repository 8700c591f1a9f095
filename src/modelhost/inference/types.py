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


Outcome = Rendered | InvocationError


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a user's handler gets as its optional last ``context`` argument."""

    model_dir: Path
    request_id: str | None = None
    custom_attributes: str | None = None
