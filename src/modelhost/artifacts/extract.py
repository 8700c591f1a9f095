"""Unpacking ``model.tar.gz`` safely: no absolute paths, no ``..``, no links out of the folder, no bombs.

A small archive may unpack to anything (gzip reaches about 1000:1), so what is written is counted as
it is written: past ``UnpackLimits.max_bytes`` in all, or past the destination's free space less a
margin, the extraction stops and what it wrote is removed.
"""

from __future__ import annotations

import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modelhost.errors import ArtifactError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")  # .zip: Lambda's deployment packages
GB = 1024**3
MAX_UNPACKED_ENV = "MODELHOST_MAX_UNPACKED_GB"  # the setting that raises UnpackLimits.max_bytes
_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class UnpackLimits:
    """How much an archive may unpack to: ``max_bytes`` in all (a large transformer fits in the
    default), never leaving less than ``disk_margin_bytes`` free where it is unpacked, and at most
    ``max_members`` entries (a million empty files cost inodes, not bytes)."""

    max_bytes: int = 50 * GB
    disk_margin_bytes: int = GB
    max_members: int = 200_000

    @classmethod
    def of_gb(cls, max_gb: float) -> UnpackLimits:
        return cls(max_bytes=int(max_gb * GB))


class _Budget:
    """The running total of one extraction, checked before each member and as its bytes are written."""

    def __init__(self, archive: Path, destination: Path, limits: UnpackLimits) -> None:
        self._archive = archive
        self._destination = destination
        self._limits = limits
        self.written = 0
        self.members = 0

    def admit(self, name: str, size: int) -> None:
        """A member about to be written, ``size`` bytes as its header declares."""
        self.members += 1
        self._check_count(self.members)
        self._check_total(self.written + size)
        self._check_disk(f"member {name!r}", size)

    def declare(self, members: int, size: int) -> None:
        """What the whole archive says it holds (a zip's central directory), before anything is read."""
        self._check_count(members)
        self._check_total(size)
        self._check_disk("its contents", size)

    def spend(self, count: int) -> None:
        """``count`` more bytes were written."""
        self.written += count
        self._check_total(self.written)

    def _check_count(self, members: int) -> None:
        if members > self._limits.max_members:
            raise ArtifactError(f"{self._archive.name}: holds more than {self._limits.max_members} members; refused")

    def _check_disk(self, what: str, size: int) -> None:
        free = _free_bytes(self._destination)
        if size > free - self._limits.disk_margin_bytes:
            raise ArtifactError(
                f"{self._archive.name}: {what} ({size} bytes) does not fit in the free space of "
                f"{self._destination.parent} ({free} bytes free, {self._limits.disk_margin_bytes} kept free)"
            )

    def _check_total(self, total: int) -> None:
        if total > self._limits.max_bytes:
            limit = f"{self._limits.max_bytes / GB:.3g} GB"
            raise ArtifactError(
                f"{self._archive.name}: unpacks to more than {limit} (the limit); refused. "
                f"Set {MAX_UNPACKED_ENV} to allow more"
            )


def _free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def _refuse_unsafe(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
    """Python's ``data`` filter, which also refuses ``..``, links pointing outside, device files
    and setuid bits, but would quietly make an absolute name relative: we refuse those too."""
    if member.name.startswith(("/", "\\")):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, destination)


def _budgeted(budget: _Budget) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """The tar filter that also counts: tarfile writes exactly the size a member declares (or fails),
    so admitting that size before the member is written bounds what is written."""

    def refuse(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        filtered = _refuse_unsafe(member, destination)
        if filtered is not None:
            size = filtered.size if filtered.isreg() else 0
            budget.admit(filtered.name, size)
            budget.spend(size)
        return filtered

    return refuse


def extract_archive(archive: Path, destination: Path, limits: UnpackLimits | None = None) -> Path:
    """Extract into ``destination`` (created atomically); refuse members that would escape it, and
    archives that unpack past ``limits`` (nothing of them is left behind).

    The whole compressed stream is read, so a damaged archive (bad gzip CRC) is refused rather
    than half-trusted. Errors become ArtifactError naming the member, the damage or the limit.
    """
    limits = limits or UnpackLimits()
    if destination.is_dir():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=destination.parent))
    budget = _Budget(archive, staging, limits)
    try:
        try:
            if archive.name.endswith(".zip"):
                _extract_zip(archive, staging, budget)
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(staging, filter=_budgeted(budget))
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


def _extract_zip(archive: Path, destination: Path, budget: _Budget) -> None:
    """Regular files and folders only; a member named absolutely, with ``..``, or as a link is refused.

    Declared sizes are checked first (before anything is decompressed), then the bytes actually
    written are counted, since a header may lie."""
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            name = member.filename
            parts = Path(name).parts
            is_link = stat.S_ISLNK(member.external_attr >> 16)
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]) or is_link:
                raise ArtifactError(f"{archive.name}: refused unsafe member {name!r}")
        budget.declare(len(bundle.infolist()), sum(member.file_size for member in bundle.infolist()))
        damaged = bundle.testzip()  # every member's CRC, before anything is trusted
        if damaged is not None:
            raise ArtifactError(f"{archive.name}: member {damaged!r} is damaged (CRC mismatch)")
        for member in bundle.infolist():
            budget.admit(member.filename, 0 if member.is_dir() else member.file_size)
            target = destination / member.filename
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(member) as source, target.open("wb") as sink:
                _copy_counted(source, sink, budget)


def _copy_counted(source: IO[bytes], sink: IO[bytes], budget: _Budget) -> None:
    while chunk := source.read(_CHUNK):
        budget.spend(len(chunk))
        sink.write(chunk)
