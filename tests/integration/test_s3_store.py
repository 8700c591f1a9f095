"""S3ArtifactStore against a real S3-compatible server (SeaweedFS, see tests/s3server.py).

One server for the module; every test stores under a prefix of its own. The store finds its
credentials through boto3's default chain, as the platform does, so the environment is pointed at
the test server.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from modelhost.control.artifact_store import S3ArtifactStore, open_artifact_store
from modelhost.errors import ArtifactError
from tests.s3server import SeaweedS3

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

boto3 = pytest.importorskip("boto3")

KEY = "models/sentiment/0123456789abcdef/model.tar.gz"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3: SeaweedS3) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # botocore caches credentials per session
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(aws_env: None, s3: SeaweedS3, prefix: str) -> S3ArtifactStore:
    store = open_artifact_store(f"s3://{s3.bucket}/{prefix}/artifacts/", s3.endpoint_url)
    assert isinstance(store, S3ArtifactStore)
    return store


def keys_under(s3: SeaweedS3, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_put_file_uploads_and_removes_the_local_source(
    store: S3ArtifactStore, s3: SeaweedS3, tmp_path: Path, prefix: str
) -> None:
    source = tmp_path / "upload.tar.gz"
    source.write_bytes(b"archive bytes " * 1000)

    uri = store.put_file(KEY, source)

    assert uri == f"s3://{s3.bucket}/{prefix}/artifacts/{KEY}"
    assert not source.exists()
    stored = s3.client().get_object(Bucket=s3.bucket, Key=f"{prefix}/artifacts/{KEY}")["Body"].read()
    assert stored == b"archive bytes " * 1000
    assert store.owns(uri)


def test_put_bytes_writes_an_object(store: S3ArtifactStore, s3: SeaweedS3, prefix: str) -> None:
    uri = store.put_bytes("capture/ep/record.jsonl", b'{"a": 1}\n')

    assert uri == f"s3://{s3.bucket}/{prefix}/artifacts/capture/ep/record.jsonl"
    body = s3.client().get_object(Bucket=s3.bucket, Key=f"{prefix}/artifacts/capture/ep/record.jsonl")["Body"]
    assert body.read() == b'{"a": 1}\n'


def test_delete_removes_only_the_object_it_owns(
    store: S3ArtifactStore, s3: SeaweedS3, tmp_path: Path, prefix: str
) -> None:
    source = tmp_path / "upload.tar.gz"
    source.write_bytes(b"x")
    uri = store.put_file(KEY, source)
    kept = store.put_bytes("models/other/fedcba9876543210/model.tar.gz", b"y")
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/artifacts-old/{KEY}", Body=b"not the store's")
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/outside.tar.gz", Body=b"not the store's")

    store.delete(uri)
    store.delete(f"s3://{s3.bucket}/{prefix}/artifacts-old/{KEY}")  # not owned: left alone
    store.delete(f"s3://{s3.bucket}/{prefix}/outside.tar.gz")
    store.delete(uri)  # already gone: quiet

    assert keys_under(s3, prefix) == sorted(
        [
            f"{prefix}/artifacts-old/{KEY}",
            f"{prefix}/artifacts/models/other/fedcba9876543210/model.tar.gz",
            f"{prefix}/outside.tar.gz",
        ]
    )
    assert store.owns(kept)


def test_owns_only_uris_under_its_prefix(store: S3ArtifactStore, s3: SeaweedS3, prefix: str) -> None:
    assert store.root_uri == f"s3://{s3.bucket}/{prefix}/artifacts"
    assert store.owns(f"s3://{s3.bucket}/{prefix}/artifacts/{KEY}")
    assert not store.owns(store.root_uri)
    assert not store.owns(f"s3://{s3.bucket}/{prefix}/artifacts-old/{KEY}")
    assert not store.owns(f"s3://{s3.bucket}/{prefix}/{KEY}")
    assert not store.owns(f"s3://other-bucket/{prefix}/artifacts/{KEY}")
    assert not store.owns(f"file:///{prefix}/artifacts/{KEY}")


@pytest.fixture
def refused_store(aws_env: None, s3: SeaweedS3, prefix: str, monkeypatch: pytest.MonkeyPatch) -> S3ArtifactStore:
    """A store whose requests the server refuses (a wrong secret: SignatureDoesNotMatch)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    return S3ArtifactStore(f"s3://{s3.bucket}/{prefix}/artifacts", s3.endpoint_url)


def test_a_refused_put_bytes_is_an_artifact_error(refused_store: S3ArtifactStore, s3: SeaweedS3, prefix: str) -> None:
    with pytest.raises(ArtifactError, match=f"cannot write {KEY} to s3://{s3.bucket}/{prefix}/artifacts"):
        refused_store.put_bytes(KEY, b"x")
    assert keys_under(s3, prefix) == []


def test_a_refused_put_file_stores_nothing_and_still_consumes_the_source(
    refused_store: S3ArtifactStore, s3: SeaweedS3, tmp_path: Path, prefix: str
) -> None:
    source = tmp_path / "upload.tar.gz"
    source.write_bytes(b"x")

    with pytest.raises(Exception, match="SignatureDoesNotMatch"):  # which class: see the test below
        refused_store.put_file(KEY, source)

    assert not source.exists()  # put_file always consumes its source (a scratch upload)
    assert keys_under(s3, prefix) == []


def test_a_refused_put_file_is_an_artifact_error(
    refused_store: S3ArtifactStore, s3: SeaweedS3, tmp_path: Path, prefix: str
) -> None:
    source = tmp_path / "upload.tar.gz"
    source.write_bytes(b"x")

    with pytest.raises(ArtifactError, match=f"cannot store the artifact in s3://{s3.bucket}/{prefix}/artifacts"):
        refused_store.put_file(KEY, source)
