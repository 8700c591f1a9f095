"""API Gateway's Lambda proxy integration: the event a function gets, and its answer made the client's.

    request ─► proxy_event: a REST API event (payload format 1.0), what the seeds' handlers read
    handler's value ─► function_response: {statusCode, headers, body} honoured, anything else JSON

Pure functions of the request and of the instance's answer; the gateway (gateway.py) does the
routing, the checks and the calls.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from modelhost.control.resources import ApiKey
from modelhost.frontdoor.answers import FrontDoorError, render
from modelhost.frontdoor.upstream import UpstreamResponse

if TYPE_CHECKING:
    from modelhost.frontdoor.gateway import RouteMatch

_TEXT_TYPES = re.compile(rb"^(text/|application/(json|[\w.+-]*\+json|xml|x-www-form-urlencoded|javascript))")
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_HEADER_TEXT = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_NO_BODY = frozenset({204, 304})  # answers HTTP says have no body: a handler's is dropped
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lowercase, as the protocol gives names), or None."""
    return next((value for found, value in headers if found == name), None)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One request for a function's route, as the gateway read it: what the event is made of.

    ``headers`` have lowercase names (the gateway looks them up so); ``names`` are those names as
    the client sent them, one for each header; ``source_ip`` is the peer's address.
    """

    found: RouteMatch
    method: str
    url: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    request_id: str
    key: ApiKey | None = None
    names: Sequence[bytes] = ()
    source_ip: str = ""


def proxy_event(request: RouteRequest) -> dict[str, Any]:
    """API Gateway's Lambda proxy event (REST API, payload format 1.0), as the seeds' handlers read it.

    ``path`` stays percent-encoded, as REST APIs pass it; path parameters and the query are decoded.
    Headers keep the names the client sent (lowercase where those are not known).
    """
    found, method, url, headers, body = request.found, request.method, request.url, request.headers, request.body
    request_id, key, source_ip = request.request_id, request.key, request.source_ip
    path_bytes, _, query_bytes = url.partition(b"?")
    path = path_bytes.decode("utf-8", "replace")
    single, multi = event_headers(headers, request.names)
    content_type = (header(headers, b"content-type") or b"").lower()
    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for field, text in parse_qsl(query_bytes.decode("utf-8", "replace"), keep_blank_values=True):
        query_single[field] = text
        query_multi.setdefault(field, []).append(text)
    encoded = False
    text_body: str | None = None
    if body:
        try:
            text_body = body.decode("utf-8") if (not content_type or _TEXT_TYPES.match(content_type)) else None
        except UnicodeDecodeError:
            text_body = None
        if text_body is None:
            text_body, encoded = base64.b64encode(body).decode(), True
    route = found.route
    now = time.time()
    user_agent = header(headers, b"user-agent")
    host = header(headers, b"host")
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single or None,
        "multiValueQueryStringParameters": query_multi or None,
        "pathParameters": found.parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "000000000000",  # the account of the functions' ARNs (bridge.py)
            "apiId": "modelhost",
            "domainName": host.decode("latin-1") if host is not None else None,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "resourcePath": route.path,
            "httpMethod": method,
            "path": path,
            "stage": "$default",
            "requestTime": _request_time(now),
            "requestTimeEpoch": int(now * 1000),
            "identity": _identity(source_ip, user_agent, key),
        },
        "body": text_body,
        "isBase64Encoded": encoded,
    }


def event_headers(
    headers: Sequence[tuple[bytes, bytes]], names: Sequence[bytes] = ()
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``headers`` and ``multiValueHeaders`` under the names the client sent (API Gateway keeps their case).

    One header sent in two spellings is one entry, under the first; ``headers`` has its last value.
    """
    spelled: dict[bytes, str] = {}
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    sent = names if names else [name for name, _ in headers]
    for (name, value), as_sent in zip(headers, sent, strict=True):
        text_name = spelled.get(name)
        if text_name is None:
            text_name = spelled[name] = as_sent.decode("latin-1")
        text_value = value.decode("latin-1")
        single[text_name] = text_value
        multi.setdefault(text_name, []).append(text_value)
    return single, multi


def _identity(source_ip: str, user_agent: bytes | None, key: ApiKey | None) -> dict[str, str | None]:
    """``requestContext.identity`` of a REST API event: the caller's address, agent and API key.

    The key itself is not passed on (only its prefix), so a handler's log cannot leak it.
    """
    return {
        "cognitoIdentityPoolId": None,
        "accountId": None,
        "cognitoIdentityId": None,
        "caller": None,
        "sourceIp": source_ip or None,
        "principalOrgId": None,
        "accessKey": None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "userArn": None,
        "userAgent": user_agent.decode("latin-1") if user_agent is not None else None,
        "user": None,
        "apiKey": key.key_prefix + "…" if key else None,
        "apiKeyId": key.name if key else None,
        "clientCert": None,
    }


def _request_time(epoch_s: float) -> str:
    """``requestTime`` as API Gateway writes it (CLF, UTC: 04/Dec/2026:02:41:19 +0000), whatever the locale."""
    moment = time.gmtime(epoch_s)
    clock = time.strftime("%H:%M:%S", moment)
    return f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:{clock} +0000"


def function_response(name: str, response: UpstreamResponse, request_id: str) -> bytes:
    """The instance's answer as the client's: a proxy response honoured, any other value as JSON."""
    if response.status == 504:
        raise FrontDoorError(504, "FunctionTimeout", f"Function {name} did not answer within its timeout.")
    if response.status >= 400:
        message = _message_of(response.body)
        if response.status == 503:
            raise FrontDoorError(503, "ServiceUnavailable", f"Function {name} is not ready: {message}")
        raise FrontDoorError(502, "FunctionError", f"Function {name} raised {message}")
    try:
        value = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        raise FrontDoorError(502, "FunctionError", f"Function {name} answered with something not JSON") from None
    request_header = (b"x-amzn-requestid", request_id.encode())
    if not (isinstance(value, dict) and "statusCode" in value):
        return render(200, [(b"content-type", b"application/json"), request_header], response.body)
    return _proxy_response(name, value, request_header)


def _proxy_response(name: str, value: dict[str, Any], request_header: tuple[bytes, bytes]) -> bytes:
    status = value.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise FrontDoorError(502, "FunctionError", f"Function {name} returned statusCode {status!r}: not 200-599")
    headers = _response_headers(name, value)
    if status in _NO_BODY:
        return _render_bodiless(status, [*headers, request_header])
    body = _response_body(name, value)
    if body and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/json"))
    headers.append(request_header)
    return render(status, headers, body)


def _render_bodiless(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 204 or 304: whatever body the handler gave is dropped, and no Content-Length is sent (RFC 9110)."""
    return render(status, headers, b"").removesuffix(b"content-length: 0\r\n\r\n") + b"\r\n"


def _response_headers(name: str, value: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """``headers`` and ``multiValueHeaders`` as API Gateway takes them: strings, numbers or booleans.

    A number or a boolean is sent as its JSON text (``5``, ``true``); a list, an object or null in
    ``headers`` (or anything but a list in ``multiValueHeaders``) is a malformed response, a 502.
    """
    single, multi = value.get("headers") or {}, value.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise FrontDoorError(502, "FunctionError", f"Function {name} returned headers that are not an object")
    given = list(single.items())
    for k, values in multi.items():
        if not isinstance(values, list):
            raise FrontDoorError(
                502, "FunctionError", f"Function {name} returned multiValueHeaders {k!r} that is not a list"
            )
        given += [(k, v) for v in values]
    headers: list[tuple[bytes, bytes]] = []
    for header_name, header_value in given:
        text = _header_text(header_value)
        if text is None:
            raise FrontDoorError(
                502,
                "FunctionError",
                f"Function {name} returned header {header_name!r} with a {type(header_value).__name__} value"
                " (give a string, a number or a boolean)",
            )
        if not isinstance(header_name, str) or not _TOKEN.fullmatch(header_name) or not _HEADER_TEXT.fullmatch(text):
            raise FrontDoorError(502, "FunctionError", f"Function {name} returned a malformed header {header_name!r}")
        if header_name.lower() not in _DROPPED_RESPONSE_HEADERS:
            headers.append((header_name.lower().encode(), text.encode("latin-1", "replace")))
    return headers


def _header_text(value: object) -> str | None:
    """A header value as sent: a string as it is, a boolean or a finite number as JSON writes it; else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    return None


def _response_body(name: str, value: dict[str, Any]) -> bytes:
    body_value = value.get("body")
    if body_value is None:
        return b""
    if not isinstance(body_value, str):
        raise FrontDoorError(502, "FunctionError", f"Function {name} returned a body that is not a string")
    if value.get("isBase64Encoded"):
        try:
            return base64.b64decode(body_value, validate=True)
        except ValueError:
            raise FrontDoorError(502, "FunctionError", f"Function {name} returned a body that is not base64") from None
    return body_value.encode()


def _message_of(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return str(parsed["message"])
    return body.decode("utf-8", "replace")[:500]
