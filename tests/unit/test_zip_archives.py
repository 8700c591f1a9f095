"""Lambda-style .zip deployment packages unpack like model.tar.gz: safely, or not at all."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from modelhost.artifacts.extract import extract_archive, is_archive
from modelhost.errors import ArtifactError


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_a_zip_is_an_archive_and_unpacks_with_its_folders(tmp_path: Path) -> None:
    package = make_zip(tmp_path / "fn.zip", {"app.py": b"def handler(e, c): return 1\n", "lib/util.py": b"X = 2\n"})
    assert is_archive(package)
    folder = extract_archive(package, tmp_path / "out")
    assert (folder / "app.py").read_bytes() == b"def handler(e, c): return 1\n"
    assert (folder / "lib" / "util.py").read_text() == "X = 2\n"


@pytest.mark.parametrize("name", ["../escape.py", "/etc/evil.py", "lib/../../escape.py", "C:/evil.py"])
def test_members_that_would_escape_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    package = make_zip(tmp_path / "bad.zip", {"ok.py": b"", name: b"boom"})
    with pytest.raises(ArtifactError, match="refused unsafe member"):
        extract_archive(package, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape.py").exists()


def test_a_symlink_member_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "link.zip"
    with zipfile.ZipFile(package, "w") as bundle:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(ArtifactError, match="refused unsafe member 'link'"):
        extract_archive(package, tmp_path / "out")


def test_a_damaged_zip_is_refused(tmp_path: Path) -> None:
    package = make_zip(tmp_path / "fn.zip", {"app.py": b"x" * 5000})
    data = bytearray(package.read_bytes())
    data[60:70] = b"\xff" * 10  # inside the member's compressed bytes
    package.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="fn.zip"):
        extract_archive(package, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_zip_at_all_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "fn.zip"
    package.write_bytes(b"this is not a zip file")
    with pytest.raises(ArtifactError, match="not a readable zip archive"):
        extract_archive(package, tmp_path / "out")
