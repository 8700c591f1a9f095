"""Unpacking ``model.tar.gz`` safely: no absolute paths, no ``..``, no links out of the folder."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from modelhost.errors import ArtifactError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, destination: Path) -> Path:
    """Extract into ``destination`` (created atomically); refuse members that would escape it.

    Python's ``data`` filter refuses absolute names, ``..``, links pointing outside, device files
    and setuid bits; its errors are turned into ArtifactError that name the member.
    """
    if destination.is_dir():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=destination.parent))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except tarfile.FilterError as exc:
            raise ArtifactError(f"{archive.name}: refused unsafe member: {exc}") from exc
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArtifactError(f"{archive.name} is not a readable tar archive: {exc}") from exc
        try:
            staging.rename(destination)
        except OSError:
            if not destination.is_dir():  # another process won the race with the same content
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination
