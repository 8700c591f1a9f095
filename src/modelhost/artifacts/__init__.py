"""Where a model comes from: a folder, a file, ``model.tar.gz``, ``file://`` or ``s3://``.

Every artifact ends up as a local folder with a recorded SHA-256 (of the archive as fetched, or of
the folder's contents). Archives and downloads are cached under ``cache_dir`` by that hash.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelhost.artifacts.digest import file_sha256, tree_sha256
from modelhost.artifacts.extract import UnpackLimits, extract_archive, is_archive
from modelhost.errors import ArtifactError

__all__ = ["ResolvedArtifact", "UnpackLimits", "artifact_exists", "resolve_artifact"]


@dataclass(frozen=True)
class ResolvedArtifact:
    uri: str
    path: Path  # the local folder holding the model files
    sha256: str


def _local_path(uri: str) -> Path:
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise ArtifactError(f"{uri!r}: file:// URIs must name a local path")
        return Path(unquote(parsed.path))
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ArtifactError(f"{uri!r}: unsupported scheme {scheme!r}; use a path, file:// or s3://")
    return Path(uri).expanduser()


def _from_file(uri: str, file: Path, cache_dir: Path, limits: UnpackLimits | None) -> ResolvedArtifact:
    digest = file_sha256(file)
    if is_archive(file):
        folder = extract_archive(file, cache_dir / "extracted" / digest, limits)
    else:  # a single model file: give it a folder of its own, keeping its name (adapters go by it)
        folder = cache_dir / "single" / f"{digest}-{file.name}"
        if not folder.is_dir():
            staging = Path(tempfile.mkdtemp(prefix=".stage-", dir=cache_dir))
            shutil.copy2(file, staging / file.name)
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                staging.rename(folder)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
    return ResolvedArtifact(uri, _model_root(folder).resolve(), digest)


def _model_root(folder: Path) -> Path:
    """An archive that holds one folder and nothing else is served from inside that folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def artifact_exists(uri: str, s3_endpoint_url: str | None = None) -> bool:
    """Whether anything is at ``uri`` (a file or folder; an S3 object or prefix), without fetching it.

    ArtifactError: the URI is not one modelhost takes, or its store cannot be asked.
    """
    if uri.startswith("s3://"):
        from modelhost.artifacts.s3 import exists

        return exists(uri, s3_endpoint_url)
    return _local_path(uri).exists()


def resolve_artifact(
    uri: str, cache_dir: Path, s3_endpoint_url: str | None = None, limits: UnpackLimits | None = None
) -> ResolvedArtifact:
    """Make the artifact at ``uri`` available as a local folder and hash it (an archive unpacked
    within ``limits``, by default UnpackLimits())."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    if uri.startswith("s3://"):
        from modelhost.artifacts.s3 import download

        with tempfile.TemporaryDirectory(prefix="download-", dir=cache_dir) as scratch:
            fetched = download(uri, Path(scratch), s3_endpoint_url)
            if fetched.is_dir():
                digest = tree_sha256(fetched)
                folder = cache_dir / "s3" / digest
                if not folder.is_dir():
                    folder.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(fetched), folder)
                return ResolvedArtifact(uri, _model_root(folder).resolve(), digest)
            return _from_file(uri, fetched, cache_dir, limits)
    path = _local_path(uri)
    if path.is_dir():
        return ResolvedArtifact(uri, path.resolve(), tree_sha256(path))
    if path.is_file():
        return _from_file(uri, path, cache_dir, limits)
    raise ArtifactError(f"no model at {uri!r}: not a folder or a file")
