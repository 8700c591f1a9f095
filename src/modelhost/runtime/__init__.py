"""Where endpoints run: the local runtime keeps each instance as a model-server process.

For a function's code, ``invoke_endpoint`` calls an endpoint of the platform it runs on in one line
(the same request boto3's ``sagemaker-runtime`` client makes, which works too).
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from modelhost.errors import ModelhostError


class InvocationFailed(ModelhostError):
    """The endpoint answered with an error: its status, SageMaker error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status=status)
        self.code = code


def invoke_endpoint(
    endpoint: str,
    body: Any,
    *,
    content_type: str = "application/json",
    accept: str | None = None,
    custom_attributes: str | None = None,
    target_variant: str | None = None,
    api_key: str | None = None,
    url: str | None = None,
    timeout_s: float = 60.0,
) -> Any:
    """Invoke ``endpoint`` and return its answer: parsed JSON, text for text/*, bytes otherwise.

    ``body`` may be bytes, text, or a value sent as JSON. The platform is ``url``, else
    ``$MODELHOST_URL`` (set for functions), else the local default. An endpoint that requires a key
    gets ``api_key``, else ``$MODELHOST_API_KEY`` when set.
    """
    import httpx

    from modelhost.platform.defaults import DEFAULT_URL

    base = (url or os.environ.get("MODELHOST_URL") or DEFAULT_URL).rstrip("/")
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = {"content-type": content_type}
    if accept:
        headers["accept"] = accept
    if custom_attributes:
        headers["x-amzn-sagemaker-custom-attributes"] = custom_attributes
    if target_variant:
        headers["x-amzn-sagemaker-target-variant"] = target_variant
    key = api_key or os.environ.get("MODELHOST_API_KEY")
    if key:
        headers["x-api-key"] = key
    response = httpx.post(f"{base}/endpoints/{endpoint}/invocations", content=data, headers=headers, timeout=timeout_s)
    answer_type = response.headers.get("content-type", "")
    if response.status_code >= 400:
        try:
            error = response.json()
            code, message = str(error.get("error", "Error")), str(error.get("Message", response.text))
        except ValueError:
            code, message = "Error", response.text
        raise InvocationFailed(response.status_code, code, message)
    if "json" in answer_type:
        return orjson.loads(response.content)
    if answer_type.startswith("text/"):
        return response.text
    return response.content
