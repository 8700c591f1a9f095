"""modelhost.runtime.invoke_endpoint's credentials: which one it sends, and that a signature verifies.

Signatures are made by botocore's signer and checked by the platform's own verifier
(modelhost.sagemaker.sigv4), over the headers httpx sends; the HTTP side is in
tests/platform/test_gateway_api_extras.py.
"""

from __future__ import annotations

import pytest

from modelhost.runtime import authenticated
from modelhost.sagemaker import sigv4

URL = "http://127.0.0.1:7070/endpoints/churn/invocations"
BODY = b'{"x": 1}'
HEADERS = {"content-type": "application/json"}
PLATFORM = {"MODELHOST_ACCESS_KEY_ID": "modelhost-functions", "MODELHOST_SECRET_ACCESS_KEY": "platform-secret"}
AWS = {"AWS_ACCESS_KEY_ID": "MHKABCDEFGHIJKLMNOPQ", "AWS_SECRET_ACCESS_KEY": "mhk_the-key"}
SECRETS = {"modelhost-functions": "platform-secret", "MHKABCDEFGHIJKLMNOPQ": "mhk_the-key"}


def verified_as(headers: dict[str, str], body: bytes = BODY) -> str:
    sent = [("host", "127.0.0.1:7070"), *headers.items()]
    return sigv4.verify("POST", "/endpoints/churn/invocations", sent, body, SECRETS.get).access_key_id


def test_an_api_key_is_sent_as_x_api_key_and_wins_over_signing() -> None:
    assert authenticated(URL, BODY, HEADERS, "mhk_given", PLATFORM)["x-api-key"] == "mhk_given"
    from_env = authenticated(URL, BODY, HEADERS, None, {**PLATFORM, "MODELHOST_API_KEY": "mhk_env"})
    assert from_env == {**HEADERS, "x-api-key": "mhk_env"}


def test_a_function_signs_with_the_platforms_credential_before_any_aws_credentials() -> None:
    headers = authenticated(URL, BODY, HEADERS, None, {**AWS, **PLATFORM})
    assert "x-api-key" not in headers
    assert verified_as(headers) == "modelhost-functions"


def test_without_the_platforms_credential_it_signs_with_aws_credentials_as_boto3_would() -> None:
    headers = authenticated(URL, BODY, HEADERS, None, {**AWS, "AWS_DEFAULT_REGION": "eu-west-1"})
    assert verified_as(headers) == "MHKABCDEFGHIJKLMNOPQ"
    assert "/eu-west-1/sagemaker/" in headers["Authorization"]


def test_a_signature_covers_the_body() -> None:
    headers = authenticated(URL, BODY, HEADERS, None, PLATFORM)
    with pytest.raises(sigv4.SignatureError):
        verified_as(headers, b'{"x": 2}')


def test_with_no_credentials_the_request_goes_as_it_is() -> None:
    assert authenticated(URL, BODY, HEADERS, None, {}) == HEADERS
