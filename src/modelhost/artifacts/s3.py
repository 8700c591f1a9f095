"""Fetching artifacts from S3 or any S3-compatible store (boto3; endpoint URL configurable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelhost.errors import ArtifactError


def split_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ArtifactError(f"{uri!r} names no bucket; expected s3://bucket/key")
    return bucket, key


def _client(endpoint_url: str | None) -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ArtifactError("s3:// artifacts need boto3: pip install boto3") from exc
    return boto3.client("s3", endpoint_url=endpoint_url)


def exists(uri: str, endpoint_url: str | None) -> bool:
    """Whether ``uri`` names an object, or a prefix with objects under it; nothing is downloaded."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    client = _client(endpoint_url)
    try:
        if key and not key.endswith("/"):
            try:
                client.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
        prefix = key if not key or key.endswith("/") else key + "/"
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return bool(listed.get("KeyCount", len(listed.get("Contents", []))))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return False
        raise ArtifactError(f"cannot look up {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise ArtifactError(f"cannot reach the S3 store for {uri}: {exc}") from exc


def _check_size(uri: str, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise ArtifactError(f"{uri} holds {size} bytes, more than the {max_bytes} allowed; refused")


def download(uri: str, destination: Path, endpoint_url: str | None, *, max_bytes: int | None = None) -> Path:
    """Download one object, or every object under a prefix, into ``destination``.

    Returns the file for an object and the folder for a prefix. With ``max_bytes``, sizes are
    checked from the object's head or the listing before anything is downloaded.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    client = _client(endpoint_url)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if key and not key.endswith("/"):
            try:
                head = client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
            else:
                _check_size(uri, int(head.get("ContentLength", 0)), max_bytes)
                target = destination / Path(key).name
                client.download_file(bucket, key, str(target))
                return target
        prefix = key if not key or key.endswith("/") else key + "/"
        folder = destination / "prefix"
        items = [
            item
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if item["Key"][len(prefix) :] and not item["Key"].endswith("/")
        ]
        if not items:
            raise ArtifactError(f"nothing found at {uri}")
        _check_size(uri, sum(int(item.get("Size", 0)) for item in items), max_bytes)
        for item in items:
            target = (folder / item["Key"][len(prefix) :]).resolve()
            if not target.is_relative_to(folder.resolve()):
                raise ArtifactError(f"refused object key {item['Key']!r}: it escapes the folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(target))
        return folder
    except ClientError as exc:
        raise ArtifactError(f"cannot fetch {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise ArtifactError(f"cannot reach the S3 store for {uri}: {exc}") from exc
