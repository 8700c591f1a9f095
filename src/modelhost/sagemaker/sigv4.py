"""Verifying AWS Signature Version 4, the way boto3 signs every request.

A signed request carries ``Authorization: AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
SignedHeaders=..., Signature=...``. The server rebuilds the canonical request from what it received
(method, path, query, the signed headers, the body's SHA-256), derives the signing key from the
secret behind the access key id, and compares signatures in constant time. A request older or newer
than ``MAX_SKEW_S`` is refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


class SignatureError(Exception):
    """Why a signed request is refused: AWS's error code and message (status 403 unless said)."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Signed:
    """Who signed a verified request, and the scope they signed it for."""

    access_key_id: str
    region: str
    service: str


def is_signed(authorization: str | None) -> bool:
    return bool(authorization) and authorization.startswith(ALGORITHM)  # type: ignore[union-attr]


def verify(
    method: str,
    raw_target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    secret_for: Callable[[str], str | None],
    *,
    now: datetime | None = None,
) -> Signed:
    """Check the request's SigV4 signature; ``secret_for`` maps an access key id to its secret.

    ``raw_target`` is the request target as received (path and query, still percent-encoded);
    ``headers`` are (lower-case name, value) pairs, repeated names in the order received.
    """
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    authorization = ",".join(values.get("authorization", []))
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' (AWS4-HMAC-SHA256).",
            status=400,
        )
    credential = match["credential"].split("/")
    if len(credential) != 5 or credential[4] != "aws4_request":
        raise SignatureError("IncompleteSignatureException", f"malformed Credential {match['credential']!r}", 400)
    access_key_id, date, region, service, _ = credential
    signed_names = match["signed"].split(";")
    if "host" not in signed_names:
        raise SignatureError("InvalidSignatureException", "the Host header must be signed")
    amz_date = (values.get("x-amz-date") or [""])[0]
    _check_time(amz_date, date, now or datetime.now(UTC))

    secret = secret_for(access_key_id)
    if secret is None:
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is invalid.")

    path, _, query = raw_target.partition("?")
    payload = (values.get("x-amz-content-sha256") or [hashlib.sha256(body).hexdigest()])[0]
    if payload != UNSIGNED_PAYLOAD and payload != hashlib.sha256(body).hexdigest():
        raise SignatureError("InvalidSignatureException", "x-amz-content-sha256 does not match the body")
    canonical = "\n".join(
        [
            method.upper(),
            quote(_remove_dot_segments(path), safe="/~"),
            _canonical_query(query),
            "".join(f"{name}:{_canonical_value(values.get(name, []))}\n" for name in signed_names),
            match["signed"],
            payload,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret, date, region, service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return Signed(access_key_id, region, service)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _check_time(amz_date: str, scope_date: str, now: datetime) -> None:
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            "IncompleteSignatureException", "X-Amz-Date must be given as YYYYMMDDTHHMMSSZ", 400
        ) from None
    if not amz_date.startswith(scope_date):
        raise SignatureError("InvalidSignatureException", "the Credential's date is not the date of X-Amz-Date")
    skew = abs((now - signed_at).total_seconds())
    if skew > MAX_SKEW_S:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is more than {MAX_SKEW_S // 60} minutes from the server's time "
            f"{now:%Y%m%dT%H%M%SZ}.",
        )


def _canonical_value(values: list[str]) -> str:
    return ",".join(" ".join(value.split()) for value in values)


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = [pair.partition("=") for pair in query.split("&")]
    return "&".join(f"{key}={value}" for key, _, value in sorted((k, s, v) for k, s, v in pairs))


def _remove_dot_segments(path: str) -> str:
    """Dot segments resolved and empty segments dropped, exactly as botocore normalises before signing."""
    if not path:
        return "/"
    output: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
            continue
        output.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last
