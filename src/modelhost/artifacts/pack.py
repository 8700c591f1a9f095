"""Packing a local model (folder or file) into ``model.tar.gz``, SageMaker's artifact format.

``deploy`` of a local path uploads this archive, so the endpoint never depends on the user's
working copy. Members are added in sorted order with their times kept, so the same files
give the same archive only when nothing changed.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from modelhost.errors import ArtifactError

_SKIPPED = {"__pycache__", ".git", ".ipynb_checkpoints", ".DS_Store"}


def pack(source: Path, destination: Path) -> int:
    """Write ``source`` as a gzipped tar to ``destination``; the number of files packed.

    A folder's contents go at the archive's root (as SageMaker expects); a single file goes in
    by its own name.
    """
    if not source.exists():
        raise ArtifactError(f"{source}: no such file or folder")
    files = [source] if source.is_file() else sorted(_walk(source))
    if not files:
        raise ArtifactError(f"{source}: the folder is empty")
    root = source.parent if source.is_file() else source
    with tarfile.open(destination, "w:gz", compresslevel=6) as archive:
        for path in files:
            archive.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return len(files)


def _walk(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if any(part in _SKIPPED for part in path.relative_to(folder).parts):
            continue
        if path.is_symlink():
            raise ArtifactError(f"{path}: symbolic links are not packed; copy the file into the folder")
        if path.is_file():
            found.append(path)
    return found
