"""pack(): a local model folder or file into model.tar.gz, and back out with extract_archive."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from modelhost.artifacts.extract import extract_archive
from modelhost.artifacts.pack import pack
from modelhost.errors import ArtifactError


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def model_folder(root: Path) -> Path:
    folder = root / "model"
    write(folder / "model.joblib", b"\x80\x04weights" * 1000)
    write(folder / "config.json", '{"labels": ["neg", "pos"]}')
    write(folder / "code" / "inference.py", "def model_fn(model_dir):\n    return None\n")
    write(folder / "code" / "requirements.txt", "")  # an empty file is still a file
    write(folder / "vocab" / "nested" / "words.txt", "good\nbad\n")
    return folder


def members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getmembers()


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_folder_packs_its_files_at_the_archive_root_in_sorted_order(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    archive = tmp_path / "model.tar.gz"

    count = pack(folder, archive)

    names = [m.name for m in members(archive)]
    assert count == 5
    assert names == [
        "code/inference.py",
        "code/requirements.txt",
        "config.json",
        "model.joblib",
        "vocab/nested/words.txt",
    ]
    assert names == sorted(names, key=lambda name: name.split("/"))
    assert all(m.isfile() for m in members(archive))  # files only, no folder entries, no "model/" prefix
    with tarfile.open(archive, "r:gz") as tar:
        extracted = tar.extractfile("model.joblib")
        assert extracted is not None
        assert extracted.read() == (folder / "model.joblib").read_bytes()


def test_sorting_is_by_path_so_the_order_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    for name in ["z.bin", "b/2.txt", "a.txt", "b/1.txt", "B.txt", "a-b.txt", "a/b.txt"]:
        write(folder / name, name)
    archive = tmp_path / "model.tar.gz"

    pack(folder, archive)

    names = [m.name for m in members(archive)]
    assert names == sorted(names, key=lambda name: name.split("/"))
    assert sorted(names) == sorted(["z.bin", "b/2.txt", "a.txt", "b/1.txt", "B.txt", "a-b.txt", "a/b.txt"])


def test_modification_times_and_modes_are_kept(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    os.utime(folder / "config.json", (1_600_000_000, 1_600_000_000))
    (folder / "code" / "inference.py").chmod(0o750)
    archive = tmp_path / "model.tar.gz"

    pack(folder, archive)

    by_name = {m.name: m for m in members(archive)}
    assert by_name["config.json"].mtime == 1_600_000_000
    assert by_name["code/inference.py"].mode & 0o777 == 0o750


@pytest.mark.parametrize("skipped", ["__pycache__", ".git", ".ipynb_checkpoints"])
def test_tool_folders_are_skipped_wherever_they_are(tmp_path: Path, skipped: str) -> None:
    folder = model_folder(tmp_path)
    write(folder / skipped / "junk.bin", b"junk")
    write(folder / "code" / skipped / "deeper" / "junk.bin", b"junk")
    archive = tmp_path / "model.tar.gz"

    count = pack(folder, archive)

    names = [m.name for m in members(archive)]
    assert count == 5
    assert not [n for n in names if skipped in n.split("/")]


def test_ds_store_files_are_skipped_but_similar_names_are_not(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    write(folder / ".DS_Store", b"finder")
    write(folder / "code" / ".DS_Store", b"finder")
    write(folder / "my.git", "kept")
    write(folder / "git" / "kept.txt", "kept")
    archive = tmp_path / "model.tar.gz"

    pack(folder, archive)

    names = [m.name for m in members(archive)]
    assert ".DS_Store" not in {n.split("/")[-1] for n in names}
    assert "my.git" in names
    assert "git/kept.txt" in names


def test_a_symlinked_file_is_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    target = write(tmp_path / "outside.bin", b"weights elsewhere")
    (folder / "linked.bin").symlink_to(target)
    archive = tmp_path / "model.tar.gz"

    with pytest.raises(ArtifactError, match=r"linked\.bin: symbolic links are not packed"):
        pack(folder, archive)


def test_a_symlinked_folder_is_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    outside = tmp_path / "shared"
    write(outside / "tokenizer.json", "{}")
    (folder / "code" / "shared").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ArtifactError, match="symbolic links are not packed"):
        pack(folder, tmp_path / "model.tar.gz")


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    (folder / "gone.bin").symlink_to(tmp_path / "does-not-exist")

    with pytest.raises(ArtifactError, match="symbolic links are not packed"):
        pack(folder, tmp_path / "model.tar.gz")


def test_a_symlink_inside_a_skipped_folder_does_not_matter(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    (folder / ".git").mkdir()
    (folder / ".git" / "link").symlink_to(tmp_path)

    assert pack(folder, tmp_path / "model.tar.gz") == 5


@pytest.mark.parametrize("contents", ["nothing", "only-folders", "only-skipped"])
def test_an_empty_folder_is_refused(tmp_path: Path, contents: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    if contents == "only-folders":
        (folder / "a" / "b").mkdir(parents=True)
    elif contents == "only-skipped":
        write(folder / "__pycache__" / "x.pyc", b"\0")
        write(folder / ".DS_Store", b"\0")

    with pytest.raises(ArtifactError, match="the folder is empty"):
        pack(folder, tmp_path / "model.tar.gz")


def test_a_single_file_is_packed_by_its_own_name(tmp_path: Path) -> None:
    source = write(tmp_path / "somewhere" / "deep" / "model.joblib", b"weights")
    archive = tmp_path / "model.tar.gz"

    assert pack(source, archive) == 1

    [member] = members(archive)
    assert member.name == "model.joblib"
    assert member.isfile()
    assert member.size == len(b"weights")


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"

    with pytest.raises(ArtifactError, match="no such file or folder"):
        pack(tmp_path / "not-there", archive)
    assert not archive.exists()


def test_a_packed_folder_extracts_to_the_same_files(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    write(folder / "__pycache__" / "x.pyc", b"\0")
    archive = tmp_path / "model.tar.gz"
    pack(folder, archive)

    extracted = extract_archive(archive, tmp_path / "extracted")

    assert extracted == tmp_path / "extracted"
    expected = {name: data for name, data in tree(folder).items() if not name.startswith("__pycache__/")}
    assert tree(extracted) == expected


def test_a_packed_file_extracts_to_a_folder_holding_it(tmp_path: Path) -> None:
    source = write(tmp_path / "model.joblib", bytes(range(256)) * 512)
    archive = tmp_path / "model.tar.gz"
    pack(source, archive)

    extracted = extract_archive(archive, tmp_path / "extracted")

    assert tree(extracted) == {"model.joblib": source.read_bytes()}


def test_packing_into_the_folder_being_packed_does_not_pack_the_archive(tmp_path: Path) -> None:
    """The file list is taken before the archive is created, so the archive never contains itself."""
    folder = model_folder(tmp_path)
    archive = folder / "model.tar.gz"

    assert pack(folder, archive) == 5
    assert "model.tar.gz" not in [m.name for m in members(archive)]
