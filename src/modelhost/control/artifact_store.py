"""Where the platform keeps artifacts it was given: a local folder by default, an S3 bucket by URI.

Uploaded models are stored by content (``models/<name>/<sha256[:16]>/model.tar.gz``), so the same
upload twice is one object and an endpoint's artifact never changes under it. Instances read the
stored URI (``file://`` or ``s3://``) through the model server's own artifact resolution.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from modelhost.artifacts.s3 import split_s3_uri
from modelhost.errors import ArtifactError


class ArtifactStore(Protocol):
    root_uri: str

    def put_file(self, key: str, source: Path) -> str:
        """Store ``source`` under ``key`` (moving or copying it); the stored object's URI."""
        ...

    def owns(self, uri: str) -> bool:
        """Whether ``uri`` is inside this store (the platform may delete it)."""
        ...

    def delete(self, uri: str) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> str: ...


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root_uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ArtifactError(f"artifact key {key!r} does not name a file inside the store")
        return path

    def put_file(self, key: str, source: Path) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), target)
        return target.as_uri()

    def put_bytes(self, key: str, data: bytes) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)
        return target.as_uri()

    def owns(self, uri: str) -> bool:
        """A file inside the store (not the store's root itself)."""
        if not uri.startswith("file://"):
            return False
        path = Path(unquote(urlparse(uri).path)).resolve()
        return path.is_relative_to(self.root) and path != self.root

    def delete(self, uri: str) -> None:
        """Delete a stored file (a folder is left alone: the store only ever hands out files)."""
        if not self.owns(uri):
            return
        path = Path(unquote(urlparse(uri).path))
        if path.is_dir():
            return
        path.unlink(missing_ok=True)
        # Remove folders the deletion left empty, up to the store's root.
        for folder in path.parents:
            if folder == self.root or not folder.is_relative_to(self.root):
                break
            try:
                folder.rmdir()
            except OSError:
                break


class S3ArtifactStore:
    def __init__(self, root_uri: str, endpoint_url: str | None) -> None:
        self.bucket, prefix = split_s3_uri(root_uri)
        self.prefix = prefix.strip("/")
        self.root_uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._endpoint_url = endpoint_url
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError as exc:
                raise ArtifactError("an s3:// artifact store needs boto3: pip install boto3") from exc
            self._client = boto3.client("s3", endpoint_url=self._endpoint_url)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, source: Path) -> str:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3().upload_file(str(source), self.bucket, self._key(key))
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise ArtifactError(f"cannot store the artifact in {self.root_uri}: {exc}") from exc
        finally:
            source.unlink(missing_ok=True)
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_bytes(self, key: str, data: bytes) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise ArtifactError(f"cannot write {key} to {self.root_uri}: {exc}") from exc
        return f"s3://{self.bucket}/{self._key(key)}"

    def owns(self, uri: str) -> bool:
        return uri.startswith(self.root_uri + "/")

    def delete(self, uri: str) -> None:
        if self.owns(uri):
            bucket, key = split_s3_uri(uri)
            self._s3().delete_object(Bucket=bucket, Key=key)


def open_artifact_store(location: str, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """``s3://bucket/prefix`` or a local folder (path or ``file://``)."""
    if location.startswith("s3://"):
        return S3ArtifactStore(location, s3_endpoint_url)
    if location.startswith("file://"):
        return LocalArtifactStore(Path(unquote(urlparse(location).path)))
    if "://" in location:
        raise ArtifactError(f"artifact store {location!r}: use a folder, file:// or s3://")
    return LocalArtifactStore(Path(location).expanduser())
