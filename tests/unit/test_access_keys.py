"""API keys as AWS credentials: derived keys, access key ids, and the AccessTable's answers."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelhost.control.access import (
    ACCESS_KEY_PREFIX,
    ADMIN_ACCESS_KEY_ID,
    FUNCTIONS_ACCESS_KEY_ID,
    KEY_PREFIX,
    AccessTable,
    derive_key,
    key_sha256,
    new_access_key_id,
    new_key,
)
from modelhost.control.resources import ApiKey
from modelhost.sagemaker import sigv4

MASTER = b"m" * 32
ADMIN_TOKEN = "the-platform-token"


def api_key(name: str, secret: str, access_key_id: str | None, endpoints: tuple[str, ...] | None = None) -> ApiKey:
    return ApiKey(name, key_sha256(secret), secret[: len(KEY_PREFIX) + 4], endpoints, access_key_id=access_key_id)


def table_with_key(
    endpoints: tuple[str, ...] | None = None, *, admin_token: str | None = ADMIN_TOKEN
) -> tuple[AccessTable, str, str]:
    """A table with a master, one key (scoped to ``endpoints``) and the endpoints a, b protected."""
    table = AccessTable(MASTER, admin_token)
    secret, access_key_id = table.new_key()
    assert access_key_id is not None
    table.replace_keys([api_key("ci", secret, access_key_id, endpoints)])
    table.set_protected("a", True)
    table.set_protected("b", True)
    return table, secret, access_key_id


# -- keys and access key ids ---------------------------------------------------------------------------
def test_new_access_key_id_looks_like_an_aws_one() -> None:
    access_key_id = new_access_key_id()

    assert len(access_key_id) == 20
    assert ACCESS_KEY_PREFIX == "MHK"
    assert access_key_id.startswith(ACCESS_KEY_PREFIX)
    assert re.fullmatch(r"MHK[A-Z2-7]{17}", access_key_id)


def test_new_access_key_ids_differ() -> None:
    assert len({new_access_key_id() for _ in range(1000)}) == 1000


def test_new_keys_are_prefixed_and_differ() -> None:
    keys = {new_key() for _ in range(100)}

    assert len(keys) == 100
    assert all(key.startswith(KEY_PREFIX) and len(key) > len(KEY_PREFIX) + 40 for key in keys)


def test_derive_key_is_deterministic() -> None:
    assert derive_key(MASTER, "MHKAAAAAAAAAAAAAAAAA") == derive_key(MASTER, "MHKAAAAAAAAAAAAAAAAA")


def test_derive_key_depends_on_the_master_and_the_access_key_id() -> None:
    key = derive_key(MASTER, "MHKAAAAAAAAAAAAAAAAA")

    assert derive_key(b"n" * 32, "MHKAAAAAAAAAAAAAAAAA") != key
    assert derive_key(MASTER, "MHKAAAAAAAAAAAAAAAAB") != key


def test_derive_key_is_a_url_safe_key_without_padding() -> None:
    key = derive_key(MASTER, "MHKAAAAAAAAAAAAAAAAA")

    assert key.startswith(KEY_PREFIX)
    body = key.removeprefix(KEY_PREFIX)
    assert len(body) == 43
    assert "=" not in body
    assert re.fullmatch(r"[A-Za-z0-9_-]+", body)
    assert len(base64.urlsafe_b64decode(body + "=")) == 32  # the whole HMAC-SHA256


def test_key_sha256_takes_text_or_bytes() -> None:
    assert key_sha256("mhk_abc") == key_sha256(b"mhk_abc")
    assert len(key_sha256("mhk_abc")) == 64


# -- AccessTable.new_key / secret_for ------------------------------------------------------------------
def test_without_a_master_new_key_is_random_and_has_no_access_key_id() -> None:
    secret, access_key_id = AccessTable().new_key()

    assert secret.startswith(KEY_PREFIX)
    assert access_key_id is None


def test_with_a_master_new_key_is_derived_from_its_access_key_id() -> None:
    table = AccessTable(MASTER)

    secret, access_key_id = table.new_key()

    assert access_key_id is not None
    assert len(access_key_id) == 20
    assert secret == derive_key(MASTER, access_key_id)


def test_secret_for_a_known_access_key_id_is_the_key_new_key_gave() -> None:
    table, secret, access_key_id = table_with_key()

    assert table.secret_for(access_key_id) == secret


def test_secret_for_the_admin_id_is_the_platform_token() -> None:
    assert ADMIN_ACCESS_KEY_ID == "modelhost"
    assert AccessTable(MASTER, ADMIN_TOKEN).secret_for("modelhost") == ADMIN_TOKEN
    assert AccessTable(None, ADMIN_TOKEN).secret_for("modelhost") == ADMIN_TOKEN


def test_secret_for_the_admin_id_without_a_token_is_none() -> None:
    assert AccessTable(MASTER).secret_for("modelhost") is None


def test_secret_for_an_unknown_access_key_id_is_none() -> None:
    table, _, _ = table_with_key()

    assert table.secret_for(new_access_key_id()) is None
    assert table.secret_for("") is None


def test_secret_for_a_revoked_key_is_none() -> None:
    table, _, access_key_id = table_with_key()

    table.replace_keys([])

    assert table.secret_for(access_key_id) is None


def test_secret_for_without_a_master_is_none_even_for_a_listed_key() -> None:
    table = AccessTable(None, ADMIN_TOKEN)
    table.replace_keys([api_key("ci", "mhk_" + "x" * 43, "MHKAAAAAAAAAAAAAAAAA")])

    assert table.secret_for("MHKAAAAAAAAAAAAAAAAA") is None


def test_keys_made_before_access_key_ids_are_not_found_by_id() -> None:
    table = AccessTable(MASTER)
    old = "mhk_" + "o" * 43
    table.replace_keys([api_key("old", old, None)])
    table.set_protected("a", True)

    assert table.secret_for("None") is None
    assert table.check("a", old.encode()) is None  # still an x-api-key


def test_a_signature_made_with_the_key_verifies_with_secret_for() -> None:
    table, secret, access_key_id = table_with_key()
    url = "http://127.0.0.1:7070/endpoints/a/invocations"
    request = AWSRequest(method="POST", url=url, data=b"[1]", headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(access_key_id, secret), "sagemaker-runtime", "us-east-1").add_auth(request)
    headers = [(name.lower(), value) for name, value in request.headers.items()] + [("host", urlsplit(url).netloc)]
    now = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    signed = sigv4.verify("POST", urlsplit(url).path, headers, b"[1]", table.secret_for, now=now)

    assert signed.access_key_id == access_key_id
    assert table.check_signed("a", signed.access_key_id) is None
    table.replace_keys([])
    with pytest.raises(sigv4.SignatureError) as caught:
        sigv4.verify("POST", urlsplit(url).path, headers, b"[1]", table.secret_for, now=now)
    assert caught.value.code == "UnrecognizedClientException"


# -- check / check_signed ------------------------------------------------------------------------------
def test_an_unprotected_endpoint_lets_anyone_in() -> None:
    table, _, _ = table_with_key(("a",))

    assert table.check("open", None) is None
    assert table.check_signed("open", "MHKNOBODY") is None
    assert table.check_signed("open", ADMIN_ACCESS_KEY_ID) is None


def test_check_wants_a_key_on_a_protected_endpoint() -> None:
    table, secret, _ = table_with_key()

    status, code, message = table.check("a", None)  # type: ignore[misc]
    assert (status, code) == (401, "MissingAuthenticationToken")
    assert "Endpoint a requires an API key" in message
    assert table.check("a", secret.encode()) is None
    assert table.check("a", b"mhk_wrong")[:2] == (403, "Forbidden")  # type: ignore[index]


def test_an_unscoped_key_may_sign_for_every_protected_endpoint() -> None:
    table, _, access_key_id = table_with_key(None)

    assert table.check_signed("a", access_key_id) is None
    assert table.check_signed("b", access_key_id) is None


def test_a_scoped_key_may_sign_only_for_its_endpoints() -> None:
    table, secret, access_key_id = table_with_key(("a",))

    assert table.check_signed("a", access_key_id) is None
    refused = table.check_signed("b", access_key_id)
    assert refused is not None
    status, code, message = refused
    assert (status, code) == (403, "Forbidden")
    assert "endpoint b" in message
    # the same scope applies to the key sent as x-api-key
    assert table.check("a", secret.encode()) is None
    assert table.check("b", secret.encode())[:2] == (403, "Forbidden")  # type: ignore[index]


def test_an_unknown_or_revoked_access_key_id_may_not_sign_for_a_protected_endpoint() -> None:
    table, _, access_key_id = table_with_key()

    assert table.check_signed("a", new_access_key_id())[:2] == (403, "Forbidden")  # type: ignore[index]
    table.replace_keys([])
    assert table.check_signed("a", access_key_id)[:2] == (403, "Forbidden")  # type: ignore[index]


def test_the_admin_may_sign_for_every_endpoint_when_a_token_is_set() -> None:
    table, _, _ = table_with_key(("a",))

    assert table.check_signed("a", ADMIN_ACCESS_KEY_ID) is None
    assert table.check_signed("b", ADMIN_ACCESS_KEY_ID) is None


def test_the_admin_id_without_a_token_is_refused_on_a_protected_endpoint() -> None:
    table, _, _ = table_with_key(admin_token=None)

    assert table.check_signed("a", ADMIN_ACCESS_KEY_ID)[:2] == (403, "Forbidden")  # type: ignore[index]


def test_functions_get_a_credential_derived_from_the_master_that_may_invoke_every_endpoint() -> None:
    table, _, _ = table_with_key(("a",), admin_token=None)
    credentials = table.function_credentials()
    assert credentials == (FUNCTIONS_ACCESS_KEY_ID, derive_key(MASTER, FUNCTIONS_ACCESS_KEY_ID))
    assert table.secret_for(FUNCTIONS_ACCESS_KEY_ID) == credentials[1]
    assert credentials[1] != derive_key(b"o" * 32, FUNCTIONS_ACCESS_KEY_ID)  # another state dir, another secret
    assert table.check_signed("a", FUNCTIONS_ACCESS_KEY_ID) is None
    assert table.check_signed("b", FUNCTIONS_ACCESS_KEY_ID) is None


def test_without_a_master_functions_have_no_credential() -> None:
    table = AccessTable(None, ADMIN_TOKEN)
    table.set_protected("a", True)
    assert table.function_credentials() is None
    assert table.secret_for(FUNCTIONS_ACCESS_KEY_ID) is None
    assert table.check_signed("a", FUNCTIONS_ACCESS_KEY_ID)[:2] == (403, "Forbidden")  # type: ignore[index]


def test_unprotecting_an_endpoint_opens_it() -> None:
    table, _, _ = table_with_key(("a",))
    table.set_protected("b", False)

    assert not table.is_protected("b")
    assert table.is_protected("a")
    assert table.check_signed("b", "MHKNOBODY") is None
    table.set_protected("never-protected", False)  # no error
