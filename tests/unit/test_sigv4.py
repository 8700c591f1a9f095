"""sigv4.verify against requests signed by botocore's own SigV4Auth (what boto3 sends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelhost.sagemaker import sigv4
from modelhost.sagemaker.sigv4 import SignatureError, Signed, verify

ACCESS_KEY_ID = "MHKABCDEFGHIJKLMNOPQ"
SECRET = "mhk_the-secret-behind-the-access-key-id"
PORT = 7070
REGION = "eu-west-1"


def secret_for(access_key_id: str) -> str | None:
    return SECRET if access_key_id == ACCESS_KEY_ID else None


@dataclass
class SignedRequest:
    method: str
    target: str  # path and query, as received
    headers: list[tuple[str, str]]  # lower-case names, as the server sees them
    body: bytes
    signed_at: datetime

    def header(self, name: str) -> str:
        return next(value for key, value in self.headers if key == name)

    def with_header(self, name: str, value: str) -> list[tuple[str, str]]:
        return [(key, value if key == name else old) for key, old in self.headers]


def sign(
    path: str = "/",
    body: bytes = b"{}",
    *,
    method: str = "POST",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    service: str = "sagemaker",
    secret: str = SECRET,
    access_key_id: str = ACCESS_KEY_ID,
    scheme: str = "http",
    unsigned_payload: bool = False,
) -> SignedRequest:
    """Sign ``method path`` as boto3 would; give back what the server receives."""
    url = f"{scheme}://127.0.0.1:{PORT}{path}"
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers.items() if isinstance(headers, dict) else headers or []:
        request.headers[name] = value  # HTTPHeaders: a second assignment adds a repeated header
    if unsigned_payload:
        request.context["payload_signing_enabled"] = False
    SigV4Auth(Credentials(access_key_id, secret), service, REGION).add_auth(request)
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    received = [(name.lower(), value) for name, value in request.headers.items()]
    received.append(("host", parts.netloc))  # botocore signs the host from the URL
    signed_at = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return SignedRequest(method, target, received, body, signed_at)


def check(
    request: SignedRequest,
    *,
    method: str | None = None,
    target: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    now: datetime | None = None,
) -> Signed:
    return verify(
        method or request.method,
        request.target if target is None else target,
        request.headers if headers is None else headers,
        request.body if body is None else body,
        secret_for,
        now=now or request.signed_at,
    )


def refused(request: SignedRequest, **changes: object) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        check(request, **changes)  # type: ignore[arg-type]
    return caught.value


# -- what botocore signs verifies -------------------------------------------------------------------
def test_a_control_plane_request_verifies_and_names_who_signed_it() -> None:
    request = sign("/", b'{"ModelName": "m"}', headers={"X-Amz-Target": "SageMaker.DescribeModel"})

    assert check(request) == Signed(ACCESS_KEY_ID, REGION, "sagemaker")


def test_a_sagemaker_runtime_invocation_verifies() -> None:
    request = sign(
        "/endpoints/sentiment/invocations",
        b'{"instances": [[1, 2, 3]]}',
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        service="sagemaker-runtime",
    )

    assert check(request) == Signed(ACCESS_KEY_ID, REGION, "sagemaker-runtime")


def test_an_empty_body_verifies() -> None:
    assert check(sign("/ping", b"", method="GET")).service == "sagemaker"
    assert check(sign("/", b"")).access_key_id == ACCESS_KEY_ID


def test_the_method_is_compared_upper_case() -> None:
    assert check(sign("/ping", b"", method="GET"), method="get").region == REGION


def test_a_query_with_several_unsorted_parameters_verifies() -> None:
    request = sign("/endpoints/e/invocations?zeta=1&alpha=2&mid=x&alpha=1&flag", b"{}")

    assert check(request).access_key_id == ACCESS_KEY_ID


def test_a_percent_encoded_query_verifies() -> None:
    request = sign("/x?name=a%2Fb%20c&arn=arn%3Aaws%3Asagemaker&empty=", b"")

    assert check(request).access_key_id == ACCESS_KEY_ID


def test_a_percent_encoded_path_verifies() -> None:
    request = sign("/endpoints/my%20endpoint/invocations", b"{}", service="sagemaker-runtime")

    assert check(request).service == "sagemaker-runtime"


def test_a_path_with_reserved_characters_escaped_verifies() -> None:
    request = sign("/tags/arn%3Aaws%3Asagemaker%3Aeu-west-1%3A000000000000%3Amodel%2Fm", b"")

    assert check(request).access_key_id == ACCESS_KEY_ID


def test_a_path_with_dot_segments_verifies_as_botocore_normalises_it() -> None:
    assert check(sign("/endpoints/./e/../e/invocations", b"{}")).access_key_id == ACCESS_KEY_ID


def test_a_path_with_consecutive_slashes_verifies_as_botocore_normalises_it() -> None:
    # botocore's remove_dot_segments also collapses empty segments ("AWS services require
    # consecutive slashes to be removed"), so it signs /endpoints/e/invocations here.
    assert check(sign("/endpoints//e/invocations", b"{}")).access_key_id == ACCESS_KEY_ID


def test_a_header_with_repeated_spaces_is_trimmed_as_botocore_does() -> None:
    request = sign("/", b"{}", headers={"X-Custom": "  several   spaces \t between   words  "})

    assert "x-custom" in request.header("authorization")
    assert check(request).access_key_id == ACCESS_KEY_ID


def test_a_repeated_header_is_joined_in_order() -> None:
    request = sign("/", b"{}", headers=[("X-Multi", "first"), ("X-Multi", "second   value")])

    assert check(request).access_key_id == ACCESS_KEY_ID
    swapped = [h for h in request.headers if h[0] != "x-multi"] + [("x-multi", "second value"), ("x-multi", "first")]
    assert refused(request, headers=swapped).code == "InvalidSignatureException"


def test_a_header_that_was_not_signed_may_be_added() -> None:
    request = sign("/", b"{}")

    assert check(request, headers=[*request.headers, ("user-agent", "anything")]).access_key_id == ACCESS_KEY_ID


def test_a_session_token_is_signed_like_any_header() -> None:
    url = f"http://127.0.0.1:{PORT}/"
    request = AWSRequest(method="POST", url=url, data=b"{}")
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET, "session-token"), "sagemaker", REGION).add_auth(request)
    headers = [(k.lower(), v) for k, v in request.headers.items()] + [("host", f"127.0.0.1:{PORT}")]
    signed_at = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    assert verify("POST", "/", headers, b"{}", secret_for, now=signed_at).access_key_id == ACCESS_KEY_ID


# -- payload hashes ----------------------------------------------------------------------------------
def test_an_unsigned_payload_verifies_whatever_the_body() -> None:
    request = sign("/", b"original", scheme="https", unsigned_payload=True)

    assert request.header("x-amz-content-sha256") == sigv4.UNSIGNED_PAYLOAD
    assert check(request).access_key_id == ACCESS_KEY_ID
    assert check(request, body=b"another body").access_key_id == ACCESS_KEY_ID


def test_a_content_sha256_header_that_does_not_match_the_body_is_refused() -> None:
    body = b'{"a": 1}'
    request = sign("/", body, headers={"X-Amz-Content-SHA256": "0" * 64})

    error = refused(request)
    assert error.code == "InvalidSignatureException"
    assert "x-amz-content-sha256" in error.message


def test_a_content_sha256_header_matching_the_body_verifies() -> None:
    import hashlib

    body = b'{"a": 1}'
    request = sign("/", body, headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})

    assert check(request).access_key_id == ACCESS_KEY_ID


def test_claiming_an_unsigned_payload_after_signing_the_hash_is_refused() -> None:
    request = sign("/", b"original")
    headers = [*request.headers, ("x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD)]

    assert refused(request, headers=headers, body=b"replaced").code == "InvalidSignatureException"


# -- tampering ---------------------------------------------------------------------------------------
def test_a_tampered_body_is_refused() -> None:
    request = sign("/", b'{"ModelName": "keep"}', headers={"X-Amz-Target": "SageMaker.DescribeModel"})

    error = refused(request, body=b'{"ModelName": "other"}')
    assert (error.code, error.status) == ("InvalidSignatureException", 403)
    assert "does not match" in error.message


def test_a_body_emptied_after_signing_is_refused() -> None:
    assert refused(sign("/", b"{}"), body=b"").code == "InvalidSignatureException"


def test_a_tampered_signed_header_is_refused() -> None:
    request = sign("/", b"{}", headers={"X-Amz-Target": "SageMaker.DescribeModel"})

    headers = request.with_header("x-amz-target", "SageMaker.DeleteModel")
    assert refused(request, headers=headers).code == "InvalidSignatureException"


def test_a_removed_signed_header_is_refused() -> None:
    request = sign("/", b"{}", headers={"X-Amz-Target": "SageMaker.DescribeModel"})

    headers = [h for h in request.headers if h[0] != "x-amz-target"]
    assert refused(request, headers=headers).code == "InvalidSignatureException"


def test_another_host_is_refused() -> None:
    request = sign("/", b"{}")

    headers = request.with_header("host", "127.0.0.1:9999")
    assert refused(request, headers=headers).code == "InvalidSignatureException"


def test_a_tampered_path_is_refused() -> None:
    request = sign("/endpoints/a/invocations", b"{}", service="sagemaker-runtime")

    assert refused(request, target="/endpoints/b/invocations").code == "InvalidSignatureException"


def test_a_tampered_query_is_refused() -> None:
    request = sign("/x?a=1&b=2", b"")

    assert refused(request, target="/x?a=1&b=3").code == "InvalidSignatureException"
    assert refused(request, target="/x?a=1").code == "InvalidSignatureException"
    assert refused(request, target="/x").code == "InvalidSignatureException"


def test_another_method_is_refused() -> None:
    assert refused(sign("/", b""), method="PUT").code == "InvalidSignatureException"


def test_a_tampered_scope_is_refused() -> None:
    request = sign("/", b"{}")
    authorization = request.header("authorization").replace(f"/{REGION}/", "/us-east-1/")

    headers = request.with_header("authorization", authorization)
    assert refused(request, headers=headers).code == "InvalidSignatureException"


# -- credentials -------------------------------------------------------------------------------------
def test_an_unknown_access_key_id_is_unrecognized() -> None:
    request = sign("/", b"{}", access_key_id="MHKNOBODYKNOWSTHIS12")

    error = refused(request)
    assert (error.code, error.status) == ("UnrecognizedClientException", 403)


def test_the_wrong_secret_is_refused() -> None:
    request = sign("/", b"{}", secret="mhk_not-the-secret")

    error = refused(request)
    assert (error.code, error.status) == ("InvalidSignatureException", 403)
    assert "Secret Access Key" in error.message


def test_secret_for_is_asked_with_the_credential_access_key_id() -> None:
    asked: list[str] = []
    request = sign("/", b"{}")

    def recording(access_key_id: str) -> str | None:
        asked.append(access_key_id)
        return SECRET

    verify("POST", request.target, request.headers, request.body, recording, now=request.signed_at)
    assert asked == [ACCESS_KEY_ID]


# -- time --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("skew", [timedelta(minutes=-15), timedelta(minutes=14, seconds=59), timedelta(minutes=15)])
def test_a_request_within_fifteen_minutes_verifies(skew: timedelta) -> None:
    request = sign("/", b"{}")

    assert check(request, now=request.signed_at + skew).access_key_id == ACCESS_KEY_ID


@pytest.mark.parametrize("skew", [timedelta(minutes=15, seconds=1), timedelta(minutes=-16), timedelta(days=1)])
def test_a_request_beyond_fifteen_minutes_has_expired(skew: timedelta) -> None:
    request = sign("/", b"{}")

    error = refused(request, now=request.signed_at + skew)
    assert (error.code, error.status) == ("InvalidSignatureException", 403)
    assert "expired" in error.message


def test_an_expired_request_is_refused_before_the_key_is_looked_up() -> None:
    request = sign("/", b"{}", access_key_id="MHKNOBODYKNOWSTHIS12")

    error = refused(request, now=request.signed_at + timedelta(hours=1))
    assert error.code == "InvalidSignatureException"
    assert "expired" in error.message


def test_the_default_clock_is_now() -> None:
    request = sign("/", b"{}")  # signed a moment ago

    assert verify("POST", "/", request.headers, b"{}", secret_for).access_key_id == ACCESS_KEY_ID


def test_a_malformed_amz_date_is_incomplete() -> None:
    request = sign("/", b"{}")

    error = refused(request, headers=request.with_header("x-amz-date", "2024-01-01T00:00:00Z"))
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)


def test_a_missing_amz_date_is_incomplete() -> None:
    request = sign("/", b"{}")

    error = refused(request, headers=[h for h in request.headers if h[0] != "x-amz-date"])
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)


def test_a_credential_date_other_than_the_amz_date_is_refused() -> None:
    request = sign("/", b"{}")
    date = request.signed_at.strftime("%Y%m%d")
    other = (request.signed_at - timedelta(days=1)).strftime("%Y%m%d")
    authorization = request.header("authorization").replace(f"/{date}/", f"/{other}/")

    error = refused(request, headers=request.with_header("authorization", authorization))
    assert error.code == "InvalidSignatureException"
    assert "date" in error.message


# -- malformed Authorization -------------------------------------------------------------------------
def malformed(request: SignedRequest, authorization: str | None) -> SignatureError:
    headers = [h for h in request.headers if h[0] != "authorization"]
    if authorization is not None:
        headers.append(("authorization", authorization))
    return refused(request, headers=headers)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer some-token",
        "AWS4-HMAC-SHA256 Credential=MHKABCDEFGHIJKLMNOPQ/20240101/eu-west-1/sagemaker/aws4_request",
        "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=MHKABCDEFGHIJKLMNOPQ/20240101/eu-west-1/sagemaker/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=not-hex",
        "AWS4-HMAC-SHA256 Credential=MHKABCDEFGHIJKLMNOPQ/20240101/eu-west-1/sagemaker/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 63,
        "AWS4-HMAC-SHA1 Credential=MHKABCDEFGHIJKLMNOPQ/20240101/eu-west-1/sagemaker/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    ],
)
def test_a_malformed_authorization_is_incomplete(authorization: str | None) -> None:
    error = malformed(sign("/", b"{}"), authorization)

    assert (error.code, error.status) == ("IncompleteSignatureException", 400)


@pytest.mark.parametrize(
    "credential",
    [
        "MHKABCDEFGHIJKLMNOPQ/20240101/eu-west-1/sagemaker",
        "MHKABCDEFGHIJKLMNOPQ/20240101/eu-west-1/sagemaker/aws5_request",
        "MHKABCDEFGHIJKLMNOPQ/20240101/eu-west-1/sagemaker/aws4_request/extra",
    ],
)
def test_a_malformed_credential_is_incomplete(credential: str) -> None:
    authorization = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, Signature={'0' * 64}"

    error = malformed(sign("/", b"{}"), authorization)
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)
    assert credential in error.message


def test_an_authorization_without_the_host_signed_is_refused() -> None:
    request = sign("/", b"{}")
    authorization = request.header("authorization")
    assert "SignedHeaders=host;x-amz-date," in authorization

    error = malformed(request, authorization.replace("SignedHeaders=host;x-amz-date,", "SignedHeaders=x-amz-date,"))
    assert (error.code, error.status) == ("InvalidSignatureException", 403)
    assert "Host" in error.message


def test_a_request_signed_without_the_host_is_refused_even_when_the_signature_matches() -> None:
    # Sign by hand with only x-amz-date signed: the signature is right, the request is still refused.
    import hashlib
    import hmac

    request = sign("/", b"{}")
    amz_date = request.header("x-amz-date")
    scope = f"{amz_date[:8]}/{REGION}/sagemaker/aws4_request"
    canonical = "\n".join(
        ["POST", "/", "", f"x-amz-date:{amz_date}\n", "x-amz-date", hashlib.sha256(b"{}").hexdigest()]
    )
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = sigv4.signing_key(SECRET, amz_date[:8], REGION, "sagemaker")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, SignedHeaders=x-amz-date, Signature={signature}"
    )

    error = malformed(request, authorization)
    assert error.code == "InvalidSignatureException"
    assert "Host" in error.message


def test_is_signed() -> None:
    assert sigv4.is_signed(sign("/", b"").header("authorization"))
    assert not sigv4.is_signed(None)
    assert not sigv4.is_signed("")
    assert not sigv4.is_signed("Bearer token")
