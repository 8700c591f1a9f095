"""LocalArtifactStore on real files in tmp_path, and open_artifact_store's choice of store.

S3ArtifactStore against a real server is in tests/integration/test_s3_store.py; here only what it
decides without a network (its root and which URIs it owns).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhost.control.artifact_store import LocalArtifactStore, S3ArtifactStore, open_artifact_store
from modelhost.errors import ArtifactError

KEY = "models/sentiment/0123456789abcdef/model.tar.gz"


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# -- LocalArtifactStore ------------------------------------------------------------------------------


def test_the_root_is_created_and_named_by_its_uri(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "a" / "b" / "artifacts")

    assert store.root == (tmp_path / "a" / "b" / "artifacts").resolve()
    assert store.root.is_dir()
    assert store.root_uri == store.root.as_uri()
    assert store.root_uri.startswith("file:///")


def test_put_file_moves_the_file_under_its_key(store: LocalArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "upload.partial"
    source.write_bytes(b"archive bytes")

    uri = store.put_file(KEY, source)

    assert uri == (store.root / KEY).as_uri()
    assert (store.root / KEY).read_bytes() == b"archive bytes"
    assert not source.exists()  # moved, not copied
    assert store.owns(uri)


def test_put_file_replaces_an_object_with_the_same_key(store: LocalArtifactStore, tmp_path: Path) -> None:
    for content in (b"first", b"second"):
        source = tmp_path / "upload"
        source.write_bytes(content)
        uri = store.put_file(KEY, source)

    assert (store.root / KEY).read_bytes() == b"second"
    assert uri == (store.root / KEY).as_uri()


def test_put_bytes_writes_without_leaving_a_partial_file(store: LocalArtifactStore) -> None:
    uri = store.put_bytes("capture/ep/2024/01/record.jsonl", b'{"a": 1}\n')

    assert uri == (store.root / "capture/ep/2024/01/record.jsonl").as_uri()
    assert (store.root / "capture/ep/2024/01/record.jsonl").read_bytes() == b'{"a": 1}\n'
    assert files_under(store.root / "capture/ep/2024/01") == ["record.jsonl"]

    store.put_bytes("capture/ep/2024/01/record.jsonl", b"replaced")
    assert (store.root / "capture/ep/2024/01/record.jsonl").read_bytes() == b"replaced"


@pytest.mark.parametrize(
    "key", ["../outside.tar.gz", "models/../../outside.tar.gz", "a/b/../../../outside", "/etc/modelhost-test"]
)
def test_a_key_escaping_the_root_is_refused(store: LocalArtifactStore, tmp_path: Path, key: str) -> None:
    source = tmp_path / "upload"
    source.write_bytes(b"x")

    with pytest.raises(ArtifactError, match="does not name a file inside the store"):
        store.put_file(key, source)
    with pytest.raises(ArtifactError, match="does not name a file inside the store"):
        store.put_bytes(key, b"x")

    assert source.read_bytes() == b"x"  # left where it was
    assert not (tmp_path / "outside.tar.gz").exists()
    assert not (tmp_path / "outside").exists()
    assert files_under(store.root) == []


def test_a_key_with_dot_dot_that_stays_inside_is_allowed(store: LocalArtifactStore) -> None:
    uri = store.put_bytes("models/x/../y/model.tar.gz", b"ok")

    assert uri == (store.root / "models/y/model.tar.gz").as_uri()
    assert files_under(store.root) == ["models", "models/y", "models/y/model.tar.gz"]


def test_owns_only_uris_inside_the_root(store: LocalArtifactStore, tmp_path: Path) -> None:
    inside = store.put_bytes(KEY, b"x")
    sibling = tmp_path / "artifacts-other" / "model.tar.gz"  # shares the root's name as a prefix

    assert store.owns(inside)
    assert store.owns((store.root / "not-written-yet.tar.gz").as_uri())
    assert not store.owns(sibling.as_uri())
    assert not store.owns((tmp_path / "model.tar.gz").as_uri())
    assert not store.owns((store.root / ".." / "escape.tar.gz").as_uri())
    assert not store.owns(str(store.root / KEY))  # a plain path is not a URI the store handed out
    assert not store.owns(f"s3://bucket/{store.root}/{KEY}")
    assert not store.owns(f"https://example.com{store.root}/{KEY}")


def test_uris_of_keys_with_spaces_and_percent_round_trip(store: LocalArtifactStore) -> None:
    uri = store.put_bytes("models/my model/100% v2/model.tar.gz", b"x")

    assert " " not in uri
    assert store.owns(uri)
    store.delete(uri)
    assert files_under(store.root) == []


def test_delete_removes_the_file_and_the_folders_it_emptied_but_not_the_root(store: LocalArtifactStore) -> None:
    uri = store.put_bytes(KEY, b"x")

    store.delete(uri)

    assert store.root.is_dir()
    assert files_under(store.root) == []


def test_delete_stops_at_a_folder_that_is_still_in_use(store: LocalArtifactStore) -> None:
    first = store.put_bytes("models/sentiment/aaaa/model.tar.gz", b"1")
    store.put_bytes("models/sentiment/bbbb/model.tar.gz", b"2")
    store.put_bytes("models/other/cccc/model.tar.gz", b"3")

    store.delete(first)

    assert files_under(store.root) == [
        "models",
        "models/other",
        "models/other/cccc",
        "models/other/cccc/model.tar.gz",
        "models/sentiment",
        "models/sentiment/bbbb",
        "models/sentiment/bbbb/model.tar.gz",
    ]


def test_delete_of_a_file_at_the_root(store: LocalArtifactStore) -> None:
    uri = store.put_bytes("model.tar.gz", b"x")

    store.delete(uri)

    assert store.root.is_dir()
    assert files_under(store.root) == []


def test_delete_of_a_missing_object_is_quiet(store: LocalArtifactStore) -> None:
    uri = store.put_bytes(KEY, b"x")
    store.delete(uri)

    store.delete(uri)  # again: nothing there
    store.delete((store.root / "never" / "written.tar.gz").as_uri())

    assert store.root.is_dir()


def test_delete_leaves_uris_it_does_not_own_alone(store: LocalArtifactStore, tmp_path: Path) -> None:
    outside = tmp_path / "user-model" / "model.tar.gz"
    outside.parent.mkdir()
    outside.write_bytes(b"the user's own file")
    sibling = tmp_path / "artifacts-other" / "model.tar.gz"
    sibling.parent.mkdir()
    sibling.write_bytes(b"not the store's")

    store.delete(outside.as_uri())
    store.delete(sibling.as_uri())
    store.delete(str(outside))

    assert outside.read_bytes() == b"the user's own file"
    assert sibling.read_bytes() == b"not the store's"


def test_a_store_opened_through_a_symlink_works_on_the_real_folder(tmp_path: Path) -> None:
    real = tmp_path / "real-artifacts"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    store = LocalArtifactStore(link)

    uri = store.put_bytes(KEY, b"x")

    assert store.root == real.resolve()
    assert uri == (real / KEY).resolve().as_uri()
    assert store.owns((link / KEY).as_uri())
    store.delete(uri)
    assert files_under(real) == []


# -- open_artifact_store -------------------------------------------------------------------------------


def test_open_a_plain_path(tmp_path: Path) -> None:
    store = open_artifact_store(str(tmp_path / "store"))

    assert isinstance(store, LocalArtifactStore)
    assert store.root == (tmp_path / "store").resolve()
    assert store.root.is_dir()


def test_open_a_path_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    store = open_artifact_store("~/modelhost/artifacts")

    assert isinstance(store, LocalArtifactStore)
    assert store.root == (tmp_path / "home" / "modelhost" / "artifacts").resolve()


def test_open_a_file_uri(tmp_path: Path) -> None:
    folder = tmp_path / "with space" / "store"

    store = open_artifact_store(folder.as_uri())

    assert isinstance(store, LocalArtifactStore)
    assert store.root == folder.resolve()
    assert store.root_uri == folder.resolve().as_uri()
    assert folder.is_dir()


def test_open_an_s3_uri_makes_an_s3_store_without_touching_the_network() -> None:
    store = open_artifact_store("s3://my-bucket/platform/artifacts/", "http://127.0.0.1:1")

    assert isinstance(store, S3ArtifactStore)
    assert (store.bucket, store.prefix, store.root_uri) == ("my-bucket", "platform/artifacts", store.root_uri)
    assert store.root_uri == "s3://my-bucket/platform/artifacts"
    assert store.owns("s3://my-bucket/platform/artifacts/models/x/model.tar.gz")
    assert not store.owns("s3://my-bucket/platform/artifacts")
    assert not store.owns("s3://my-bucket/platform/artifacts-old/models/x/model.tar.gz")
    assert not store.owns("s3://other-bucket/platform/artifacts/models/x/model.tar.gz")
    assert not store.owns("file:///platform/artifacts/models/x/model.tar.gz")


def test_an_s3_store_at_a_bucket_root_owns_the_whole_bucket() -> None:
    store = open_artifact_store("s3://my-bucket")

    assert isinstance(store, S3ArtifactStore)
    assert store.root_uri == "s3://my-bucket"
    assert store.owns("s3://my-bucket/models/x/model.tar.gz")
    assert not store.owns("s3://my-bucket-2/models/x/model.tar.gz")


def test_an_s3_uri_without_a_bucket_is_refused() -> None:
    with pytest.raises(ArtifactError, match="names no bucket"):
        open_artifact_store("s3:///prefix")


@pytest.mark.parametrize("location", ["gs://bucket/prefix", "https://example.com/artifacts", "hdfs://x/y"])
def test_an_unsupported_scheme_is_refused(location: str) -> None:
    with pytest.raises(ArtifactError, match="use a folder, file:// or s3://"):
        open_artifact_store(location)


# -- keys and URIs naming the root itself -----------------------------------------------------------


@pytest.mark.parametrize("key", ["", ".", "models/.."])
def test_a_key_naming_the_root_itself_is_refused(store: LocalArtifactStore, tmp_path: Path, key: str) -> None:
    source = tmp_path / "upload"
    source.write_bytes(b"x")

    with pytest.raises(ArtifactError, match="does not name a file inside the store"):
        store.put_bytes(key, b"x")
    with pytest.raises(ArtifactError, match="does not name a file inside the store"):
        store.put_file(key, source)

    assert not store.root.with_name(store.root.name + ".partial").exists()  # nothing written beside the store
    assert source.read_bytes() == b"x"
    assert files_under(store.root) == []


def test_delete_of_the_root_or_a_folder_uri_is_harmless(store: LocalArtifactStore) -> None:
    store.put_bytes(KEY, b"x")

    assert not store.owns(store.root_uri)  # as S3ArtifactStore: the root itself is not an object
    store.delete(store.root_uri)
    store.delete((store.root / "models").as_uri())  # a folder: the store only hands out files
    store.delete((store.root / "models" / "..").as_uri())

    assert (store.root / KEY).read_bytes() == b"x"
    assert store.root.is_dir()
