"""A function's artifacts (functions/artifacts.py): regular files and folders only, a size cap, private copies.

Real files, a real FIFO, a real Unix socket and the real /dev/zero; the caps are made small.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhost.errors import ArtifactError
from modelhost.functions.artifacts import check_local, fetch, measure

KB = 1024


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "listener.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


def test_files_and_folders_are_copied_readable_by_their_owner_only(tmp_path: Path) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text("group-readable")
    shared.chmod(0o640)
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    folder = tmp_path / "vocab"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "words.txt").write_text("a b c")
    (folder / "inner" / "words.txt").chmod(0o644)
    destination = tmp_path / "run" / "artifacts"

    fetch({"shared": str(shared), "tool": tool.as_uri(), "vocab": str(folder)}, destination, 10 * KB, None)

    assert (destination / "shared").read_text() == "group-readable"
    assert mode_of(destination) == 0o700
    assert mode_of(destination / "shared") == 0o600  # was 0640: not widened, not even for the group
    assert mode_of(destination / "tool") == 0o700  # the owner keeps execute
    assert (destination / "vocab" / "inner" / "words.txt").read_text() == "a b c"
    assert mode_of(destination / "vocab") == 0o700
    assert mode_of(destination / "vocab" / "inner") == 0o700
    assert mode_of(destination / "vocab" / "inner" / "words.txt") == 0o600


def test_a_character_device_is_refused_by_name_before_anything_is_read(tmp_path: Path) -> None:
    destination = tmp_path / "artifacts"
    with pytest.raises(ArtifactError, match=r"artifact 'ok': /dev/zero is a character device"):
        fetch({"ok": "/dev/zero"}, destination, 10 * KB, None)
    assert list(destination.iterdir()) == []


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(ArtifactError, match=r"artifact 'p': .*pipe is a named pipe"):
        check_local({"p": str(pipe)}, 10 * KB)
    with pytest.raises(ArtifactError, match="is a named pipe"):
        fetch({"p": str(pipe)}, tmp_path / "artifacts", 10 * KB, None)


def test_a_socket_and_a_device_inside_a_folder_are_refused(tmp_path: Path, unix_socket: Path) -> None:
    with pytest.raises(ArtifactError, match=r"artifact 's': .*listener.sock is a socket"):
        measure("s", unix_socket)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "fine.txt").write_text("fine")
    (folder / "zero").symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match=r"artifact 'f': .*zero is a character device"):
        fetch({"f": str(folder)}, tmp_path / "artifacts", 10 * KB, None)


def test_artifacts_over_the_cap_together_are_refused_before_a_byte_is_copied(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_bytes(bytes(600))
    two.write_bytes(bytes(600))
    destination = tmp_path / "artifacts"
    with pytest.raises(ArtifactError, match=r"more than .* GB \(the limit; MODELHOST_MAX_FUNCTION_ARTIFACTS_GB"):
        fetch({"one": str(one), "two": str(two)}, destination, KB, None)
    assert list(destination.iterdir()) == []
    fetch({"one": str(one)}, destination, KB, None)  # alone it fits
    assert (destination / "one").stat().st_size == 600


def test_the_cap_counts_what_is_read_not_what_the_file_claims(tmp_path: Path) -> None:
    """/proc files say they are empty; the copy stops at the cap all the same."""
    status = Path("/proc/self/status")
    assert status.stat().st_size == 0
    assert measure("status", status) == 0
    with pytest.raises(ArtifactError, match="the limit"):
        fetch({"status": str(status)}, tmp_path / "artifacts", 100, None)


def test_a_missing_local_artifact_is_left_to_the_instance(tmp_path: Path) -> None:
    check_local({"later": str(tmp_path / "made-later")}, KB)  # may appear before the function starts
    with pytest.raises(ArtifactError, match="artifact 'later': cannot copy"):
        fetch({"later": str(tmp_path / "made-later")}, tmp_path / "artifacts", KB, None)
