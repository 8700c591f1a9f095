"""Where endpoints run: the local runtime keeps each instance as a model-server process.

For a function's code, ``invoke_endpoint`` calls an endpoint of the platform it runs on in one line
(the same request boto3's ``sagemaker-runtime`` client makes, which works too). It authenticates
the way a Lambda's SDK does, with what the environment holds, so a function reaches endpoints that
require an API key without a key in its code: see ``invoke_endpoint``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from modelhost.errors import ModelhostError

# The credential the platform hands each function: access key id and secret (SigV4), in
# variables of their own so that AWS credentials a function has for other services stay usable.
ACCESS_KEY_ID_VARIABLE = "MODELHOST_ACCESS_KEY_ID"
SECRET_VARIABLE = "MODELHOST_SECRET_ACCESS_KEY"


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
    ``$MODELHOST_URL`` (set for functions), else the local default.

    Credentials, first found wins: ``api_key`` or ``$MODELHOST_API_KEY`` as ``x-api-key``; else a
    SigV4 signature with ``$MODELHOST_ACCESS_KEY_ID`` / ``$MODELHOST_SECRET_ACCESS_KEY`` (the
    platform sets them for its functions), else with ``$AWS_ACCESS_KEY_ID`` /
    ``$AWS_SECRET_ACCESS_KEY`` (an API key's access key id and the key, as boto3 would sign).
    Endpoints that require no key ignore all of them.
    """
    import httpx

    from modelhost.platform.defaults import DEFAULT_URL

    base = (url or os.environ.get("MODELHOST_URL") or DEFAULT_URL).rstrip("/")
    target = f"{base}/endpoints/{quote(endpoint, safe='')}/invocations"  # a "/" in a name stays in the name
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
    headers = authenticated(target, data, headers, api_key, os.environ)
    response = httpx.post(target, content=data, headers=headers, timeout=timeout_s)
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


def authenticated(
    url: str, body: bytes, headers: dict[str, str], api_key: str | None, environment: Mapping[str, str]
) -> dict[str, str]:
    """``headers`` plus the request's credentials (see ``invoke_endpoint``), or as they are without any."""
    key = api_key or environment.get("MODELHOST_API_KEY")
    if key:
        return {**headers, "x-api-key": key}
    for id_variable, secret_variable in (
        (ACCESS_KEY_ID_VARIABLE, SECRET_VARIABLE),
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ):
        access_key_id, secret = environment.get(id_variable), environment.get(secret_variable)
        if access_key_id and secret:
            token = environment.get("AWS_SESSION_TOKEN") if id_variable.startswith("AWS_") else None
            region = environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION") or "us-east-1"
            return _signed(url, body, headers, (access_key_id, secret, token), region)
    return headers


def _signed(
    url: str, body: bytes, headers: dict[str, str], credentials: tuple[str, str, str | None], region: str
) -> dict[str, str]:
    """SigV4 by botocore's own signer, so the request is exactly what boto3 would send."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(*credentials), "sagemaker", region).add_auth(request)
    return dict(request.headers.items())
