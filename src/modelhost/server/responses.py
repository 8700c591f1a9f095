"""Response bodies of the model server; errors become JSON here and nowhere else."""

from __future__ import annotations

from typing import Any

import orjson

JSON = b"application/json"


def json_body(value: Any) -> bytes:
    return orjson.dumps(value)


def error_body(code: str, message: str, request_id: str | None = None) -> bytes:
    """``{"error": code, "message": ..., "request_id": ...}``: what every failed request gets."""
    body: dict[str, str] = {"error": code, "message": message}
    if request_id is not None:
        body["request_id"] = request_id
    return orjson.dumps(body)
