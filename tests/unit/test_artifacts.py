"""resolve_artifact on local artifacts: folders, single files, file:// URIs and model.tar.gz.

Archives are built here member by member (tarfile.TarInfo), including the malicious ones; the
gzip around them is written by hand with stored (uncompressed) deflate blocks so that a byte
offset in the archive means the same thing on every zlib version.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from modelhost.artifacts import resolve_artifact
from modelhost.errors import ArtifactError

BLOCK = 4096  # payload bytes per stored deflate block in _gzip_stored
GZIP_HEADER = 10


# -- helpers ---------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that do not compress."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def folder(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def link(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _gzip_stored(raw: bytes) -> bytes:
    """A valid gzip file of ``raw`` in stored deflate blocks of BLOCK bytes (RFC 1951 3.2.4)."""
    out = bytearray(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # no name, mtime 0, OS unknown
    chunks = [raw[i : i + BLOCK] for i in range(0, len(raw), BLOCK)] or [b""]
    for index, chunk in enumerate(chunks):
        out += bytes([index == len(chunks) - 1])  # BFINAL, BTYPE=00 (stored), then byte-aligned
        out += struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk
    out += struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)
    return bytes(out)


def _gz_offset(raw_offset: int) -> int:
    """Where byte ``raw_offset`` of the tar stream sits in the _gzip_stored output."""
    block, within = divmod(raw_offset, BLOCK)
    return GZIP_HEADER + block * (BLOCK + 5) + 5 + within


def write_targz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_gzip_stored(tar_bytes(members)))
    return path


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file (content) and symlink (target) under root: to prove nothing else was written."""
    found: dict[str, bytes | str] = {}
    for base, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            path = Path(base, name)
            key = str(path.relative_to(root))
            found[key] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return found


def no_leftovers(cache: Path) -> None:
    """After a refused archive: no extraction, no staging folder, nothing at all in the cache."""
    assert snapshot(cache) == {}
    extracted = cache / "extracted"
    assert not extracted.exists() or list(extracted.iterdir()) == []


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "deep" / "er" / "cache"  # '../' and '../../' from its staging land inside tmp_path


# -- folders -----------------------------------------------------------------------------------


def test_folder_is_served_in_place_with_a_stable_sha256(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.joblib").write_bytes(b"weights v1")
    (model / "code" / "inference.py").write_text("def model_fn(d):\n    return d\n")

    first = resolve_artifact(str(model), cache)
    second = resolve_artifact(str(model), cache)

    assert first.uri == str(model)
    assert first.path == model.resolve()
    assert len(first.sha256) == 64
    assert int(first.sha256, 16) >= 0
    assert second == first
    assert snapshot(cache) == {}  # a folder is not copied


def test_folder_sha256_changes_when_a_file_changes_or_moves(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"weights v1")
    original = resolve_artifact(str(model), cache).sha256

    (model / "model.joblib").write_bytes(b"weights v2")
    edited = resolve_artifact(str(model), cache).sha256
    (model / "model.joblib").rename(model / "other.joblib")
    renamed = resolve_artifact(str(model), cache).sha256
    (model / "other.joblib").rename(model / "model.joblib")
    (model / "model.joblib").write_bytes(b"weights v1")
    restored = resolve_artifact(str(model), cache).sha256

    assert len({original, edited, renamed}) == 3
    assert restored == original


# -- single files --------------------------------------------------------------------------------


def test_single_model_file_gets_its_own_folder_in_the_cache(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "upload" / "model.joblib"
    source.parent.mkdir()
    (source.parent / "unrelated.txt").write_text("must not come along")
    source.write_bytes(payload(10_000))

    resolved = resolve_artifact(str(source), cache)

    assert resolved.sha256 == sha256_of(source)
    assert resolved.path.is_relative_to(cache.resolve())
    assert sorted(p.name for p in resolved.path.iterdir()) == ["model.joblib"]
    assert (resolved.path / "model.joblib").read_bytes() == source.read_bytes()
    assert resolve_artifact(str(source), cache) == resolved
    assert not list(cache.glob(".stage-*"))


def test_same_bytes_under_another_name_keep_their_name(tmp_path: Path, cache: Path) -> None:
    data = payload(1_000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "model.bin").write_bytes(data)
    (tmp_path / "b" / "model.joblib").write_bytes(data)

    resolve_artifact(str(tmp_path / "a" / "model.bin"), cache)
    second = resolve_artifact(str(tmp_path / "b" / "model.joblib"), cache)

    assert sorted(p.name for p in second.path.iterdir()) == ["model.joblib"]


# -- file:// URIs -------------------------------------------------------------------------------


def test_file_uri_of_a_folder_and_of_a_file(tmp_path: Path, cache: Path) -> None:
    model = tmp_path / "my models" / "v1 (final)"  # percent-encoded in the URI
    model.mkdir(parents=True)
    (model / "model.joblib").write_bytes(b"weights")

    by_path = resolve_artifact(str(model), cache)
    by_uri = resolve_artifact(model.as_uri(), cache)
    by_localhost = resolve_artifact("file://localhost" + model.as_uri().removeprefix("file://"), cache)
    single = resolve_artifact((model / "model.joblib").as_uri(), cache)

    assert "%20" in model.as_uri()
    assert by_uri.uri == model.as_uri()
    assert (by_uri.path, by_uri.sha256) == (by_path.path, by_path.sha256)
    assert (by_localhost.path, by_localhost.sha256) == (by_path.path, by_path.sha256)
    assert single.sha256 == sha256_of(model / "model.joblib")
    assert (single.path / "model.joblib").read_bytes() == b"weights"


def test_file_uri_naming_another_host_is_refused(cache: Path) -> None:
    with pytest.raises(ArtifactError, match="must name a local path"):
        resolve_artifact("file://fileserver/models/model.tar.gz", cache)


# -- model.tar.gz --------------------------------------------------------------------------------

FLAT = [regular("model.joblib", payload(20_000)), folder("code"), regular("code/inference.py", b"# handlers\n")]
DOTTED = [  # what `tar czf model.tar.gz -C model .` writes
    folder("."),
    regular("./model.joblib", payload(20_000)),
    folder("./code"),
    regular("./code/inference.py", b"# handlers\n"),
]


@pytest.mark.parametrize("members", [FLAT, DOTTED], ids=["flat", "dot-prefixed"])
def test_model_tar_gz_is_extracted_into_the_cache_once(
    tmp_path: Path, cache: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    archive = write_targz(tmp_path / "model.tar.gz", members)

    first = resolve_artifact(str(archive), cache)

    assert first.sha256 == sha256_of(archive)  # the archive's hash, as fetched
    assert first.path.is_relative_to(cache.resolve())
    assert (first.path / "model.joblib").read_bytes() == payload(20_000)
    assert (first.path / "code" / "inference.py").read_text() == "# handlers\n"
    assert not list(first.path.parent.glob(".extract-*"))

    (first.path / "sentinel").write_text("left by the test")  # a re-extraction would not have it
    second = resolve_artifact(str(archive), cache)
    assert second == first
    assert (second.path / "sentinel").is_file()


def test_tgz_and_plain_tar_are_archives_too(tmp_path: Path, cache: Path) -> None:
    raw = tar_bytes([regular("model.joblib", b"weights")])
    (tmp_path / "model.tgz").write_bytes(_gzip_stored(raw))
    (tmp_path / "model.tar").write_bytes(raw)

    for name in ("model.tgz", "model.tar"):
        resolved = resolve_artifact(str(tmp_path / name), cache)
        assert (resolved.path / "model.joblib").read_bytes() == b"weights"
        assert resolved.sha256 == sha256_of(tmp_path / name)


def test_archive_wrapping_one_folder_is_served_from_inside_it(tmp_path: Path, cache: Path) -> None:
    archive = write_targz(
        tmp_path / "model.tar.gz",
        [
            folder("sentiment"),
            regular("sentiment/model.joblib", b"weights"),
            regular("sentiment/labels.txt", b"0\n1\n"),
        ],
    )

    resolved = resolve_artifact(str(archive), cache)

    assert resolved.path.name == "sentiment"
    assert sorted(p.name for p in resolved.path.iterdir()) == ["labels.txt", "model.joblib"]


def test_archive_with_a_folder_and_a_file_at_the_top_is_served_from_its_root(tmp_path: Path, cache: Path) -> None:
    archive = write_targz(
        tmp_path / "model.tar.gz", [regular("model.joblib", b"weights"), folder("code"), regular("code/x.py", b"")]
    )

    resolved = resolve_artifact(str(archive), cache)

    assert sorted(p.name for p in resolved.path.iterdir()) == ["code", "model.joblib"]


# -- unsafe archives -----------------------------------------------------------------------------

UNSAFE = {
    "dotdot": ([regular("model.joblib"), regular("../evil.txt", b"pwned")], "'../evil.txt'"),
    "nested-dotdot": ([folder("sub"), regular("sub/../../evil.txt", b"pwned")], "evil.txt"),
    "symlink-absolute": ([regular("model.joblib"), link("link", "/etc/passwd")], "'link'"),
    "symlink-relative-outside": ([link("link", "../../x")], "'link'"),
    "symlink-then-write-through-it": ([link("escape", ".."), regular("escape/evil.txt", b"pwned")], "'escape'"),
    "hardlink-outside": ([regular("model.joblib"), link("hard", "../../etc/passwd", hard=True)], "'hard'"),
    "hardlink-absolute": ([link("hard", "/etc/passwd", hard=True)], "'hard'"),
}


@pytest.mark.parametrize(("members", "named"), list(UNSAFE.values()), ids=list(UNSAFE))
def test_unsafe_member_is_refused_and_nothing_is_written(
    tmp_path: Path, cache: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], named: str
) -> None:
    archive = write_targz(tmp_path / "upload" / "model.tar.gz", members)
    before = snapshot(tmp_path)

    for _ in range(2):  # a refusal is not cached as a success
        with pytest.raises(ArtifactError, match="refused unsafe member") as refused:
            resolve_artifact(str(archive), cache)
        assert named in str(refused.value)
        assert "model.tar.gz" in str(refused.value)

    assert snapshot(tmp_path) == before
    no_leftovers(cache)


def test_absolute_member_is_never_written_at_its_absolute_path(tmp_path: Path, cache: Path) -> None:
    target = tmp_path / "outside" / "evil.txt"
    archive = write_targz(tmp_path / "model.tar.gz", [regular(str(target), b"pwned")])

    try:
        resolved = resolve_artifact(str(archive), cache)
    except ArtifactError:
        no_leftovers(cache)
    else:  # tarfile's data filter strips the leading '/': the file stays inside the extraction
        assert resolved.path.is_relative_to(cache.resolve())
    assert not target.exists()
    assert not (tmp_path / "outside").exists()


def test_absolute_member_is_refused(tmp_path: Path, cache: Path) -> None:
    archive = write_targz(tmp_path / "model.tar.gz", [regular(str(tmp_path / "outside" / "evil.txt"), b"pwned")])

    with pytest.raises(ArtifactError, match="refused unsafe member"):
        resolve_artifact(str(archive), cache)


# -- broken archives -----------------------------------------------------------------------------


def _valid_archive_bytes() -> bytes:
    return _gzip_stored(tar_bytes([regular("model.joblib", payload(64 * 1024)), regular("labels.txt", b"0\n1\n")]))


BROKEN = {
    "not-gzip-not-tar": b"this is not an archive\n" * 10,
    "empty": b"",
    "gzip-of-text": zlib.compress(b"hello world", wbits=31),
    "truncated": _valid_archive_bytes()[: len(_valid_archive_bytes()) // 2],
    "bad-gzip-header": b"\x1f\x8b\x09" + _valid_archive_bytes()[3:],  # compression method 9 does not exist
}


@pytest.mark.parametrize("data", list(BROKEN.values()), ids=list(BROKEN))
def test_unreadable_archive_is_refused(tmp_path: Path, cache: Path, data: bytes) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(data)

    for _ in range(2):
        with pytest.raises(ArtifactError, match=r"model\.tar\.gz is not a readable tar archive"):
            resolve_artifact(str(archive), cache)
    no_leftovers(cache)


def test_the_valid_archive_behind_the_broken_ones_is_fine(tmp_path: Path, cache: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_valid_archive_bytes())

    resolved = resolve_artifact(str(archive), cache)

    assert (resolved.path / "model.joblib").read_bytes() == payload(64 * 1024)


def _corrupted(how: str) -> bytes:
    data = bytearray(_valid_archive_bytes())
    if how == "flipped-data-byte":  # inside model.joblib, which starts after its 512-byte header
        data[_gz_offset(512 + 40_000)] ^= 0xFF
    elif how == "flipped-crc":
        data[-8] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("how", ["flipped-data-byte", "flipped-crc"])
def test_corrupted_archive_is_refused(tmp_path: Path, cache: Path, how: str) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_corrupted(how))

    with pytest.raises(ArtifactError, match="not a readable tar archive"):
        resolve_artifact(str(archive), cache)


def test_archive_broken_mid_stream_raises_artifact_error(tmp_path: Path, cache: Path) -> None:
    data = bytearray(_valid_archive_bytes())
    nlen = _gz_offset(8 * BLOCK) - 2  # NLEN of stored block 8: must be ~LEN
    data[nlen] ^= 0xFF
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(bytes(data))

    try:
        with pytest.raises(ArtifactError, match="not a readable tar archive"):
            resolve_artifact(str(archive), cache)
    finally:
        no_leftovers(cache)  # holds either way: the staging folder is removed


# -- not there, not supported --------------------------------------------------------------------


def test_missing_path_is_refused(tmp_path: Path, cache: Path) -> None:
    missing = tmp_path / "nowhere" / "model.tar.gz"

    with pytest.raises(ArtifactError, match="no model at") as refused:
        resolve_artifact(str(missing), cache)
    assert str(missing) in str(refused.value)

    with pytest.raises(ArtifactError, match="no model at"):
        resolve_artifact(missing.as_uri(), cache)


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("http://example.com/model.tar.gz", "http"),
        ("https://example.com/model.tar.gz", "https"),
        ("gs://bucket/model.tar.gz", "gs"),
        ("ftp://host/model.tar.gz", "ftp"),
    ],
)
def test_unsupported_scheme_is_refused(cache: Path, uri: str, scheme: str) -> None:
    with pytest.raises(ArtifactError, match=f"unsupported scheme '{scheme}'") as refused:
        resolve_artifact(uri, cache)
    assert uri in str(refused.value)


# -- s3:// without a server (the real server is in tests/integration/test_s3.py) -------------------


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # botocore caches credentials per session
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unused")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unused")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("fake_aws")
def test_s3_uri_without_a_bucket_is_refused(cache: Path) -> None:
    with pytest.raises(ArtifactError, match="names no bucket"):
        resolve_artifact("s3:///model.tar.gz", cache, "http://127.0.0.1:9")


@pytest.mark.usefixtures("fake_aws")
def test_unreachable_s3_endpoint_is_an_artifact_error(cache: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(ArtifactError, match="cannot reach the S3 store for s3://bucket/model.tar.gz"):
            resolve_artifact("s3://bucket/model.tar.gz", cache, endpoint)
    assert not list(cache.glob("download-*"))  # the scratch folder is gone
