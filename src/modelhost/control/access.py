"""Who may invoke what: the endpoints that require an API key, and the keys, kept in memory.

The front door asks ``check`` on every invocation of a protected endpoint; the controller keeps
the table in step with the store. Keys are compared by their SHA-256 (a dict lookup, constant
time in the key), so the table never holds a key itself.

A key also works as AWS credentials (boto3 signs with SigV4): its access key id is public and
the key is the secret. Verifying a signature needs the secret, yet the store keeps only hashes;
so a key is not random but derived, ``HMAC(signing master, access key id)``, and the platform
recomputes it from the master (a file in the state dir, never in the database) when a signed
request arrives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable

from modelhost.control.resources import ApiKey

KEY_PREFIX = "mhk_"
ACCESS_KEY_PREFIX = "MHK"
ADMIN_ACCESS_KEY_ID = "modelhost"  # signs with the platform's token as the secret: may do anything
# The platform's own functions sign with this id (and a secret derived from the master): they may
# invoke every endpoint, as a Lambda's role may, and nothing else (the control API refuses it).
FUNCTIONS_ACCESS_KEY_ID = "modelhost-functions"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_access_key_id() -> str:
    """20 characters, like an AWS access key id."""
    return ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(11)).decode()[:17]


def derive_key(master: bytes, access_key_id: str) -> str:
    digest = hmac.new(master, access_key_id.encode(), hashlib.sha256).digest()
    return KEY_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def key_sha256(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


class AccessTable:
    def __init__(self, signing_master: bytes | None = None, admin_token: str | None = None) -> None:
        self._admin_token = admin_token
        self._protected: set[str] = set()
        self._keys: dict[str, ApiKey] = {}  # by SHA-256
        self._by_access_key_id: dict[str, ApiKey] = {}
        self._master = signing_master
        # Told when an endpoint starts requiring a key: connections handed to its workers come back
        # to the front door, which checks keys (workers do not).
        self.on_protected: Callable[[str], None] | None = None

    def set_protected(self, endpoint: str, protected: bool) -> None:
        if protected:
            if endpoint not in self._protected and self.on_protected is not None:
                self.on_protected(endpoint)
            self._protected.add(endpoint)
        else:
            self._protected.discard(endpoint)

    def is_protected(self, endpoint: str) -> bool:
        return endpoint in self._protected

    def replace_keys(self, keys: Iterable[ApiKey]) -> None:
        keys = list(keys)
        self._keys = {key.key_sha256: key for key in keys}
        self._by_access_key_id = {key.access_key_id: key for key in keys if key.access_key_id}

    def new_key(self) -> tuple[str, str | None]:
        """A new key, and its access key id when signed requests can be verified (a master is set)."""
        if self._master is None:
            return new_key(), None
        access_key_id = new_access_key_id()
        return derive_key(self._master, access_key_id), access_key_id

    def function_credentials(self) -> tuple[str, str] | None:
        """(access key id, secret) the platform gives its functions: may invoke endpoints, nothing else."""
        if self._master is None:
            return None
        return FUNCTIONS_ACCESS_KEY_ID, derive_key(self._master, FUNCTIONS_ACCESS_KEY_ID)

    def secret_for(self, access_key_id: str) -> str | None:
        """The key behind ``access_key_id``, to verify a signature with (None: unknown or revoked)."""
        if access_key_id == ADMIN_ACCESS_KEY_ID:
            return self._admin_token
        if access_key_id == FUNCTIONS_ACCESS_KEY_ID:
            credentials = self.function_credentials()
            return credentials[1] if credentials else None
        if self._master is None or access_key_id not in self._by_access_key_id:
            return None
        return derive_key(self._master, access_key_id)

    def check(self, endpoint: str, presented: bytes | None) -> tuple[int, str, str] | None:
        """None when the invocation may go on; else (status, error code, message)."""
        if endpoint not in self._protected:
            return None
        if not presented:
            return (
                401,
                "MissingAuthenticationToken",
                f"Endpoint {endpoint} requires an API key (x-api-key header, or a request signed with its "
                "access key id).",
            )
        return self._in_scope(endpoint, self._keys.get(key_sha256(presented)))

    def key_for(self, presented: bytes) -> ApiKey | None:
        """The (unrevoked) key presented as ``x-api-key``, whatever its scope (the gateway's routes)."""
        return self._keys.get(key_sha256(presented))

    def check_signed(self, endpoint: str, access_key_id: str) -> tuple[int, str, str] | None:
        """Like ``check``, for a request whose signature by ``access_key_id`` has been verified."""
        if endpoint not in self._protected or (access_key_id == ADMIN_ACCESS_KEY_ID and self._admin_token):
            return None
        if access_key_id == FUNCTIONS_ACCESS_KEY_ID and self._master is not None:
            return None  # verified against the derived secret: one of the platform's functions
        return self._in_scope(endpoint, self._by_access_key_id.get(access_key_id))

    @staticmethod
    def _in_scope(endpoint: str, key: ApiKey | None) -> tuple[int, str, str] | None:
        if key is None or (key.endpoints is not None and endpoint not in key.endpoints):
            return 403, "Forbidden", f"This API key may not invoke endpoint {endpoint} (unknown, revoked or scoped)."
        return None
