"""s3:// artifacts against a real S3-compatible server (SeaweedFS, see tests/s3server.py).

One server per module; every test writes under a key prefix of its own, so tests do not see each
other's objects. The `serve` tests run the real `python -m modelhost serve s3://...` process with
the credentials and endpoint in its environment, as a deployment would.
"""

from __future__ import annotations

import hashlib
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest

from modelhost.artifacts import artifact_exists, resolve_artifact
from modelhost.errors import ArtifactError
from tests.conftest import Serve
from tests.models import sklearn_text_pipeline
from tests.s3server import SeaweedS3

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

boto3 = pytest.importorskip("boto3")


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3: SeaweedS3) -> None:
    """This process's boto3 default chain points at the test server (for resolve_artifact in-process)."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # botocore caches credentials per session
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)


def model_tar_gz(tmp_path: Path) -> Path:
    """model.tar.gz holding model.joblib at its root, as SageMaker training jobs write it."""
    model = sklearn_text_pipeline(tmp_path / "model")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload_folder(s3: SeaweedS3, folder: Path, key_prefix: str) -> list[str]:
    client = s3.client()
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{key_prefix}/{path.relative_to(folder).as_posix()}"
        client.upload_file(str(path), s3.bucket, key)
        keys.append(key)
    return keys


# -- the real server process -------------------------------------------------------------------


def test_serves_a_model_tar_gz_from_s3(serve: Serve, s3: SeaweedS3, tmp_path: Path, prefix: str) -> None:
    archive = model_tar_gz(tmp_path)
    s3.client().upload_file(str(archive), s3.bucket, f"{prefix}/sentiment/model.tar.gz")
    uri = f"s3://{s3.bucket}/{prefix}/sentiment/model.tar.gz"

    server = serve(uri, "--workers", "1", env=s3.env())

    response = httpx.post(f"{server.url}/invocations", json=["great amazing day", "awful broken app"], timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == [1, 0]
    log = server.log()
    assert f"sha256={sha256_of(archive)}" in log
    assert uri in log


def test_serves_a_prefix_of_files_from_s3(serve: Serve, s3: SeaweedS3, tmp_path: Path, prefix: str) -> None:
    model = sklearn_text_pipeline(tmp_path / "model")
    upload_folder(s3, model, f"{prefix}/sentiment")

    server = serve(f"s3://{s3.bucket}/{prefix}/sentiment", "--workers", "1", env=s3.env())

    response = httpx.post(f"{server.url}/invocations", json=["love this wonderful app"], timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == [1]
    assert "sha256=" in server.log()


def test_missing_key_exits_non_zero_and_says_what_is_missing(serve: Serve, s3: SeaweedS3, prefix: str) -> None:
    uri = f"s3://{s3.bucket}/{prefix}/missing/model.tar.gz"

    server = serve(uri, "--workers", "1", env=s3.env(), ready=False)

    returncode = server.process.wait(timeout=90)
    log = server.log()
    assert returncode != 0, log
    assert f"nothing found at {uri}" in log
    assert "Traceback" not in log


# -- resolve_artifact in this process, against the same server ----------------------------------


@pytest.mark.usefixtures("aws_env")
def test_resolve_downloads_and_extracts_an_archive(s3: SeaweedS3, tmp_path: Path, prefix: str) -> None:
    archive = model_tar_gz(tmp_path)
    s3.client().upload_file(str(archive), s3.bucket, f"{prefix}/model.tar.gz")
    cache = tmp_path / "cache"
    uri = f"s3://{s3.bucket}/{prefix}/model.tar.gz"

    first = resolve_artifact(uri, cache, s3.endpoint_url)

    assert first.uri == uri
    assert first.sha256 == sha256_of(archive)
    assert first.path.is_relative_to((cache / "extracted").resolve())
    assert (first.path / "model.joblib").read_bytes() == (tmp_path / "model" / "model.joblib").read_bytes()
    assert not list(cache.glob("download-*"))  # the download's scratch folder is removed

    (first.path / "sentinel").write_text("a re-extraction would not have this")
    second = resolve_artifact(uri, cache, s3.endpoint_url)
    assert second == first
    assert (second.path / "sentinel").is_file()


@pytest.mark.usefixtures("aws_env")
def test_resolve_downloads_a_single_model_file(s3: SeaweedS3, tmp_path: Path, prefix: str) -> None:
    model = sklearn_text_pipeline(tmp_path / "model")
    s3.client().upload_file(str(model / "model.joblib"), s3.bucket, f"{prefix}/model.joblib")

    resolved = resolve_artifact(f"s3://{s3.bucket}/{prefix}/model.joblib", tmp_path / "cache", s3.endpoint_url)

    assert resolved.sha256 == sha256_of(model / "model.joblib")
    assert sorted(p.name for p in resolved.path.iterdir()) == ["model.joblib"]


@pytest.mark.usefixtures("aws_env")
def test_resolve_downloads_every_object_under_a_prefix(s3: SeaweedS3, tmp_path: Path, prefix: str) -> None:
    source = tmp_path / "source"
    (source / "code").mkdir(parents=True)
    (source / "model.joblib").write_bytes(b"weights")
    (source / "code" / "inference.py").write_text("# handlers\n")
    upload_folder(s3, source, f"{prefix}/model")
    # a sibling whose name starts the same must not come along
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/model-v2/other.bin", Body=b"not mine")
    cache = tmp_path / "cache"

    plain = resolve_artifact(f"s3://{s3.bucket}/{prefix}/model", cache, s3.endpoint_url)
    slashed = resolve_artifact(f"s3://{s3.bucket}/{prefix}/model/", cache, s3.endpoint_url)

    assert plain.path == slashed.path
    assert plain.sha256 == slashed.sha256
    assert plain.path.is_relative_to((cache / "s3").resolve())
    files = sorted(p.relative_to(plain.path).as_posix() for p in plain.path.rglob("*") if p.is_file())
    assert files == ["code/inference.py", "model.joblib"]
    assert (plain.path / "code" / "inference.py").read_text() == "# handlers\n"
    # the folder hash is of the contents, whichever way they arrived
    assert plain.sha256 == resolve_artifact(str(source), tmp_path / "other-cache").sha256


@pytest.mark.usefixtures("aws_env")
def test_resolve_serves_a_prefix_wrapping_one_folder_from_inside_it(s3: SeaweedS3, tmp_path: Path, prefix: str) -> None:
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/bundle/sentiment/model.joblib", Body=b"weights")

    resolved = resolve_artifact(f"s3://{s3.bucket}/{prefix}/bundle", tmp_path / "cache", s3.endpoint_url)

    assert resolved.path.name == "sentiment"
    assert (resolved.path / "model.joblib").read_bytes() == b"weights"


@pytest.mark.usefixtures("aws_env")
def test_resolve_missing_key_and_missing_bucket(s3: SeaweedS3, tmp_path: Path, prefix: str) -> None:
    cache = tmp_path / "cache"
    missing_key = f"s3://{s3.bucket}/{prefix}/nothing/model.tar.gz"
    missing_bucket = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/model.tar.gz"

    with pytest.raises(ArtifactError, match=f"nothing found at {missing_key}"):
        resolve_artifact(missing_key, cache, s3.endpoint_url)
    with pytest.raises(ArtifactError, match="cannot fetch s3://no-such-bucket-") as refused:
        resolve_artifact(missing_bucket, cache, s3.endpoint_url)
    assert "NoSuchBucket" in str(refused.value)
    assert not list(cache.glob("download-*"))


@pytest.mark.usefixtures("aws_env")
def test_resolve_with_a_wrong_secret_is_an_artifact_error(
    s3: SeaweedS3, tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/model.joblib", Body=b"weights")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")

    with pytest.raises(ArtifactError, match=f"cannot fetch s3://{s3.bucket}/{prefix}/model.joblib"):
        resolve_artifact(f"s3://{s3.bucket}/{prefix}/model.joblib", tmp_path / "cache", s3.endpoint_url)


def test_the_test_server_checks_signatures(s3: SeaweedS3) -> None:
    """Guards the tests above: a server that let anyone in would prove nothing about credentials."""
    from botocore.exceptions import ClientError

    client = boto3.session.Session(
        aws_access_key_id=s3.access_key, aws_secret_access_key="wrong", region_name="us-east-1"
    ).client("s3", endpoint_url=s3.endpoint_url)
    with pytest.raises(ClientError, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        client.list_objects_v2(Bucket=s3.bucket)


def test_artifact_exists_looks_objects_and_prefixes_up_without_fetching(
    aws_env: None, s3: SeaweedS3, tmp_path: Path, prefix: str
) -> None:
    archive = model_tar_gz(tmp_path)
    s3.client().upload_file(str(archive), s3.bucket, f"{prefix}/models/a.tar.gz")
    base = f"s3://{s3.bucket}/{prefix}"
    endpoint_url = s3.endpoint_url
    assert artifact_exists(f"{base}/models/a.tar.gz", endpoint_url)  # an object
    assert artifact_exists(f"{base}/models", endpoint_url)  # a prefix with objects under it
    assert artifact_exists(f"{base}/models/", endpoint_url)
    assert not artifact_exists(f"{base}/models/nope.tar.gz", endpoint_url)
    assert not artifact_exists(f"{base}/mod", endpoint_url)  # a prefix of a key's text, not of a folder
    assert not artifact_exists(f"s3://no-such-bucket-{prefix}/a.tar.gz", endpoint_url)
    assert artifact_exists(str(archive))
    assert not artifact_exists(f"file://{tmp_path}/nope")
    with pytest.raises(ArtifactError):
        artifact_exists("ftp://example/a.tar.gz")


@pytest.mark.usefixtures("aws_env")
def test_a_function_artifact_over_the_cap_is_refused_before_it_is_downloaded(
    s3: SeaweedS3, tmp_path: Path, prefix: str
) -> None:
    """The object's head (or the prefix's listing) tells its size: nothing is fetched past the cap."""
    from modelhost.functions.artifacts import fetch

    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/big.bin", Body=bytes(2048))
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/folder/a.bin", Body=bytes(600))
    client.put_object(Bucket=s3.bucket, Key=f"{prefix}/folder/b.bin", Body=bytes(600))
    destination = tmp_path / "artifacts"

    for uri in (f"s3://{s3.bucket}/{prefix}/big.bin", f"s3://{s3.bucket}/{prefix}/folder"):
        with pytest.raises(ArtifactError, match="more than the 1024 allowed"):
            fetch({"data": uri}, destination, 1024, s3.endpoint_url)
        assert list(destination.iterdir()) == []

    fetch({"data": f"s3://{s3.bucket}/{prefix}/folder/a.bin"}, destination, 1024, s3.endpoint_url)
    assert (destination / "data").read_bytes() == bytes(600)
    assert destination.stat().st_mode & 0o777 == 0o700
    assert (destination / "data").stat().st_mode & 0o777 == 0o600
