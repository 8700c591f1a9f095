"""SageMaker's control API over AWS JSON 1.1, as boto3's ``sagemaker`` client speaks it.

    POST /   X-Amz-Target: SageMaker.<Operation>   Content-Type: application/x-amz-json-1.1
             body: the operation's input as JSON ─► 200 + its output as JSON
             errors: 400 {"__type": "ValidationException", "Message": ...} (botocore reads __type, and
             fills the modeled Message of ResourceInUse and the like from "Message" only)

Access: when the platform has a token, a request must be signed (SigV4) with access key id
``modelhost`` and the token as the secret key, or carry ``Authorization: Bearer <token>``. Without
a token (bound to loopback) signatures are accepted unchecked, as every other call is.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import orjson

from modelhost.control.access import ADMIN_ACCESS_KEY_ID
from modelhost.control.controller import Controller
from modelhost.errors import (
    InvalidTransition,
    ModelhostError,
    ResourceExists,
    ResourceInUse,
    ResourceLimitExceeded,
    ResourceNotFound,
)
from modelhost.sagemaker import service, sigv4
from modelhost.sagemaker.operations import OPERATIONS, SageMakerOperations

log = logging.getLogger("modelhost.sagemaker")

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "SageMaker."
DEFAULT_REGION = "local"  # for ARNs, when a request is not signed (and so names no region)
_SCOPE_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")

Response = tuple[int, list[tuple[str, str]], bytes]


class SageMakerError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _from(error: ModelhostError) -> SageMakerError:
    """SageMaker's error for one of modelhost's: a missing or existing resource is a ValidationException
    (as SageMaker answers: the endpoint_deleted waiter waits for exactly that)."""
    if isinstance(error, (ResourceNotFound, ResourceExists, InvalidTransition)):
        return SageMakerError("ValidationException", error.message)
    if isinstance(error, ResourceInUse):
        return SageMakerError("ResourceInUse", error.message)
    if isinstance(error, ResourceLimitExceeded):
        return SageMakerError("ResourceLimitExceeded", error.message)
    if error.status < 500:
        return SageMakerError("ValidationException", error.message)
    return SageMakerError("InternalFailure", error.message, 500)


class SageMakerApi:
    def __init__(self, controller: Controller, *, token: str | None) -> None:
        self._controller = controller
        self._token = token
        self._ids = itertools.count(1)
        self._id_prefix = f"sm{os.getpid():x}-"

    async def handle(self, method: str, raw_target: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        """Answer one request to ``/`` (method, target as received, lower-case headers, body)."""
        request_id = f"{self._id_prefix}{next(self._ids):x}"
        try:
            answer = await self._answer(method, raw_target, headers, body)
            return 200, self._headers(request_id), orjson.dumps(answer)
        except SageMakerError as exc:
            if exc.status >= 500:
                log.error("%s: %s", exc.code, exc.message)
            return exc.status, self._headers(request_id), orjson.dumps({"__type": exc.code, "Message": exc.message})

    @staticmethod
    def _headers(request_id: str) -> list[tuple[str, str]]:
        return [("content-type", CONTENT_TYPE), ("x-amzn-requestid", request_id)]

    async def _answer(
        self, method: str, raw_target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> dict[str, Any]:
        found = dict(headers)
        if method != "POST":
            raise SageMakerError("UnknownOperationException", "the SageMaker API takes POST / with X-Amz-Target")
        region = self._authenticate(raw_target, headers, body)
        target = found.get("x-amz-target", "")
        if not target.startswith(TARGET_PREFIX):
            raise SageMakerError(
                "UnknownOperationException",
                f"X-Amz-Target must be {TARGET_PREFIX}<Operation>, got {target!r}"
                if target
                else "X-Amz-Target is missing",
            )
        name = target.removeprefix(TARGET_PREFIX)
        operation = OPERATIONS.get(name)
        if operation is None:
            known = name in service.service_model().operation_names
            raise SageMakerError(
                "UnknownOperationException",
                f"modelhost does not implement SageMaker's {name}; it implements {', '.join(OPERATIONS)}"
                if known
                else f"SageMaker has no operation {name!r}",
            )
        try:
            request = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise SageMakerError("SerializationException", f"the body is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise SageMakerError("SerializationException", "the body must be a JSON object")
        try:
            service.validate(name, request)
            return await operation(SageMakerOperations(self._controller, region), request)
        except ModelhostError as exc:
            raise _from(exc) from None

    def _authenticate(self, raw_target: str, headers: Sequence[tuple[str, str]], body: bytes) -> str:
        """The region the request was signed for; refuses it when a token is set and it is not signed with it."""
        authorization = dict(headers).get("authorization", "")
        scope = _SCOPE_REGION.search(authorization)
        region = scope.group(1) if scope else DEFAULT_REGION
        if self._token is None:
            return region
        if authorization.startswith("Bearer ") and hmac.compare_digest(
            authorization.encode(), f"Bearer {self._token}".encode()
        ):
            return region
        if not sigv4.is_signed(authorization):
            raise SageMakerError(
                "MissingAuthenticationTokenException",
                f"sign the request (access key id {ADMIN_ACCESS_KEY_ID!r}, the platform's token as the secret "
                "access key) or send Authorization: Bearer <token>",
                403,
            )
        try:
            sigv4.verify("POST", raw_target, headers, body, self._admin_secret)
        except sigv4.SignatureError as exc:
            raise SageMakerError(exc.code, exc.message, exc.status) from None
        return region

    def _admin_secret(self, access_key_id: str) -> str | None:
        return self._token if access_key_id == ADMIN_ACCESS_KEY_ID else None
