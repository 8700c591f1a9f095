"""A function's artifacts: checked, then copied into a private folder of its instance, within a size cap.

An artifact is a regular file or a folder of regular files. A device (``/dev/zero`` reads forever), a
named pipe or a socket is refused with the artifact's name, when the function is made (the platform
checks local paths) and again when the instance copies it. The cap counts what is actually read, so
a file that grows, or one that reports no size (``/proc``), stops at it too. Copies are readable by
their owner only (0600, 0700 for folders and executables): a copy never widens who may read a file.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelhost.errors import ArtifactError

GB = 1024**3
DEFAULT_MAX_BYTES = 5 * GB
MAX_BYTES_ENV = "MODELHOST_FUNCTION_MAX_ARTIFACT_BYTES"  # set by the platform from its setting
_CHUNK = 1 << 20
_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
}


class _Allowance:
    """Bytes the function's artifacts may still take; spent as they are copied."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.left = max_bytes

    def spend(self, name: str, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise ArtifactError(
                f"artifact {name!r}: the function's artifacts take more than {self.max_bytes / GB:.3g} GB "
                "(the limit; MODELHOST_MAX_FUNCTION_ARTIFACTS_GB on the platform raises it)"
            )


def local_source(uri: str) -> Path | None:
    """The path an artifact URI names on this machine; None for ``s3://``."""
    if uri.startswith("s3://"):
        return None
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)


def _refusal(name: str, path: Path, mode: int) -> ArtifactError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return ArtifactError(f"artifact {name!r}: {path} is {kind}; an artifact is a regular file or a folder of them")


def measure(name: str, source: Path) -> int:
    """The bytes artifact ``name`` holds at ``source`` (links followed to files), refusing anything
    in it that is not a regular file or a folder; ArtifactError naming the artifact."""
    try:
        mode = os.stat(source).st_mode
        if stat.S_ISREG(mode):
            return os.stat(source).st_size
        if not stat.S_ISDIR(mode):
            raise _refusal(name, source, mode)
        total = 0
        for base, folders, files in os.walk(source, onerror=_raise):
            for folder in folders:
                if os.path.islink(os.path.join(base, folder)):
                    raise ArtifactError(f"artifact {name!r}: {os.path.join(base, folder)} links to a folder; refused")
            for file in files:
                path = Path(base, file)
                info = os.stat(path)
                if not stat.S_ISREG(info.st_mode):
                    raise _refusal(name, path, info.st_mode)
                total += info.st_size
        return total
    except OSError as exc:
        raise ArtifactError(f"artifact {name!r}: cannot read {source}: {exc.strerror or exc}") from exc


def _raise(error: OSError) -> None:
    raise error


def check_local(artifacts: Mapping[str, str], max_bytes: int) -> None:
    """At create time: the local artifacts that exist are regular files or folders, within the cap
    together (one that does not exist yet is the instance's to report when it starts)."""
    allowance = _Allowance(max_bytes)
    for name, uri in artifacts.items():
        source = local_source(uri)
        if source is not None and os.path.lexists(source):
            allowance.spend(name, measure(name, source))


def _private(mode: int) -> int:
    """The owner's bits only: read and write, and execute where the source had it."""
    return 0o600 | (mode & stat.S_IXUSR)


def _copy_file(name: str, source: Path, target: Path, allowance: _Allowance) -> None:
    """Copy by content from the opened file (a swap for a device after the check is caught by fstat)."""
    reader = os.open(source, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting for a writer
    try:
        info = os.fstat(reader)
        if not stat.S_ISREG(info.st_mode):
            raise _refusal(name, source, info.st_mode)
        writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(writer, _private(info.st_mode))
            while chunk := os.read(reader, _CHUNK):
                allowance.spend(name, len(chunk))
                view = memoryview(chunk)
                while view:
                    view = view[os.write(writer, view) :]
        finally:
            os.close(writer)
    finally:
        os.close(reader)


def _copy_local(name: str, source: Path, target: Path, allowance: _Allowance) -> None:
    if not source.is_dir():
        _copy_file(name, source, target, allowance)
        return
    target.mkdir(mode=0o700, exist_ok=True)
    for base, folders, files in os.walk(source, onerror=_raise):
        here = target / Path(base).relative_to(source)
        for folder in folders:
            if os.path.islink(os.path.join(base, folder)):
                raise ArtifactError(f"artifact {name!r}: {os.path.join(base, folder)} links to a folder; refused")
            (here / folder).mkdir(mode=0o700, exist_ok=True)
        for file in files:
            _copy_file(name, Path(base, file), here / file, allowance)


def _fetch_s3(name: str, uri: str, destination: Path, allowance: _Allowance, endpoint_url: str | None) -> None:
    """Downloaded (refused first if the listing is over the cap), then counted and made private."""
    from modelhost.artifacts.s3 import download

    scratch = destination / f".{name}.download"
    try:
        downloaded = download(uri, scratch, endpoint_url, max_bytes=allowance.left)
        files = [downloaded] if downloaded.is_file() else [p for p in downloaded.rglob("*") if p.is_file()]
        allowance.spend(name, sum(p.stat().st_size for p in files))
        for path in [downloaded, *downloaded.rglob("*")] if downloaded.is_dir() else [downloaded]:
            path.chmod(0o700 if path.is_dir() else 0o600)
        downloaded.replace(destination / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch(artifacts: Mapping[str, str], destination: Path, max_bytes: int, s3_endpoint_url: str | None) -> None:
    """Copy every artifact to ``destination/NAME`` (made, if it is new, for its owner only).

    Local artifacts are measured first, so one over the cap is refused before a byte is copied.
    """
    destination.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_local(artifacts, max_bytes)
    allowance = _Allowance(max_bytes)
    for name, uri in artifacts.items():
        target = destination / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        source = local_source(uri)
        if source is None:
            _fetch_s3(name, uri, destination, allowance, s3_endpoint_url)
        else:
            try:
                _copy_local(name, source, target, allowance)
            except OSError as exc:
                raise ArtifactError(f"artifact {name!r}: cannot copy {source}: {exc.strerror or exc}") from exc
