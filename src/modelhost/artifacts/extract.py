"""Unpacking ``model.tar.gz`` safely: no absolute paths, no ``..``, no links out of the folder."""

from __future__ import annotations

import lzma
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from modelhost.errors import ArtifactError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")  # .zip: Lambda's deployment packages


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def _refuse_unsafe(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
    """Python's ``data`` filter, which also refuses ``..``, links pointing outside, device files
    and setuid bits, but would quietly make an absolute name relative: we refuse those too."""
    if member.name.startswith(("/", "\\")):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, destination)


def extract_archive(archive: Path, destination: Path) -> Path:
    """Extract into ``destination`` (created atomically); refuse members that would escape it.

    The whole compressed stream is read, so a damaged archive (bad gzip CRC) is refused rather
    than half-trusted. Errors become ArtifactError naming the member or the damage.
    """
    if destination.is_dir():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=destination.parent))
    try:
        try:
            if archive.name.endswith(".zip"):
                _extract_zip(archive, staging)
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(staging, filter=_refuse_unsafe)
                    while tar.fileobj is not None and tar.fileobj.read(1 << 20):  # reach the CRC check
                        pass
        except tarfile.FilterError as exc:
            raise ArtifactError(f"{archive.name}: refused unsafe member: {exc}") from exc
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
            kind = "zip" if archive.name.endswith(".zip") else "tar"
            raise ArtifactError(f"{archive.name} is not a readable {kind} archive: {exc}") from exc
        try:
            staging.rename(destination)
        except OSError:
            if not destination.is_dir():  # another process won the race with the same content
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _extract_zip(archive: Path, destination: Path) -> None:
    """Regular files and folders only; a member named absolutely, with ``..``, or as a link is refused."""
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            name = member.filename
            parts = Path(name).parts
            is_link = stat.S_ISLNK(member.external_attr >> 16)
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]) or is_link:
                raise ArtifactError(f"{archive.name}: refused unsafe member {name!r}")
        damaged = bundle.testzip()  # every member's CRC, before anything is trusted
        if damaged is not None:
            raise ArtifactError(f"{archive.name}: member {damaged!r} is damaged (CRC mismatch)")
        bundle.extractall(destination)
