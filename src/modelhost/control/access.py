"""Who may invoke what: the endpoints that require an API key, and the keys, kept in memory.

The front door asks ``check`` on every invocation of a protected endpoint; the controller keeps
the table in step with the store. Keys are compared by their SHA-256 (a dict lookup, constant
time in the key), so the table never holds a key itself.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from modelhost.control.resources import ApiKey

KEY_PREFIX = "mhk_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_sha256(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


class AccessTable:
    def __init__(self) -> None:
        self._protected: set[str] = set()
        self._keys: dict[str, ApiKey] = {}  # by SHA-256

    def set_protected(self, endpoint: str, protected: bool) -> None:
        if protected:
            self._protected.add(endpoint)
        else:
            self._protected.discard(endpoint)

    def replace_keys(self, keys: Iterable[ApiKey]) -> None:
        self._keys = {key.key_sha256: key for key in keys}

    def check(self, endpoint: str, presented: bytes | None) -> tuple[int, str, str] | None:
        """None when the invocation may go on; else (status, error code, message)."""
        if endpoint not in self._protected:
            return None
        if not presented:
            return 401, "MissingAuthenticationToken", f"Endpoint {endpoint} requires an API key (x-api-key header)."
        key = self._keys.get(key_sha256(presented))
        if key is None or (key.endpoints is not None and endpoint not in key.endpoints):
            return 403, "Forbidden", f"This API key may not invoke endpoint {endpoint} (unknown, revoked or scoped)."
        return None
