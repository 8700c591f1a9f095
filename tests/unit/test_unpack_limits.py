"""Archive bombs: extraction stops past the unpacked-size limit, the member limit, or the free disk space.

Archives are small and generated here (zeros compress about 1000:1); the limits are made small to
match, through UnpackLimits and through ``MODELHOST_MAX_UNPACKED_GB`` as `modelhost serve` reads it.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modelhost.artifacts import UnpackLimits, resolve_artifact
from modelhost.artifacts.extract import GB, extract_archive
from modelhost.errors import ArtifactError
from tests.unit.test_artifacts import no_leftovers, regular, tar_bytes

MB = 1024 * 1024


def zeros_targz(path: Path, *sizes: int) -> Path:
    """A model.tar.gz of members ``part-0``, ``part-1``… holding ``sizes`` bytes of zeros each."""
    members = [regular(f"part-{index}", bytes(size)) for index, size in enumerate(sizes)]
    path.write_bytes(gzip.compress(tar_bytes(members)))
    return path


def zeros_zip(path: Path, *sizes: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("folder/", b"")
        for index, size in enumerate(sizes):
            bundle.writestr(f"folder/part-{index}", bytes(size))
    return path


def limited(max_bytes: int) -> UnpackLimits:
    return UnpackLimits(max_bytes=max_bytes, disk_margin_bytes=0)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_a_bomb_is_refused_naming_the_limit_and_its_setting(tmp_path: Path, cache: Path) -> None:
    archive = zeros_targz(tmp_path / "model.tar.gz", 4 * MB)
    assert archive.stat().st_size < 64 * 1024  # small upload, large contents

    with pytest.raises(ArtifactError, match="unpacks to more than") as refused:
        resolve_artifact(str(archive), cache, limits=UnpackLimits.of_gb(1 / 1024))  # 1 MB
    assert "model.tar.gz" in str(refused.value)
    assert "0.000977 GB" in str(refused.value)
    assert "MODELHOST_MAX_UNPACKED_GB" in str(refused.value)
    no_leftovers(cache)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_the_running_total_counts_though_each_member_fits(tmp_path: Path, cache: Path, kind: str) -> None:
    make = zeros_targz if kind == "tar.gz" else zeros_zip
    archive = make(tmp_path / f"model.{kind}", 600 * 1024, 600 * 1024)

    with pytest.raises(ArtifactError, match="unpacks to more than"):
        resolve_artifact(str(archive), cache, limits=limited(MB))
    no_leftovers(cache)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_an_archive_within_the_limits_unpacks_whole(tmp_path: Path, kind: str) -> None:
    make = zeros_targz if kind == "tar.gz" else zeros_zip
    archive = make(tmp_path / f"model.{kind}", 300 * 1024, 300 * 1024)

    folder = extract_archive(archive, tmp_path / "out", limited(MB))
    sizes = sorted(path.stat().st_size for path in folder.rglob("part-*"))
    assert sizes == [300 * 1024, 300 * 1024]


def test_a_zip_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    archive = zeros_zip(tmp_path / "code.zip", 2 * MB)
    with pytest.raises(ArtifactError, match="unpacks to more than"):
        extract_archive(archive, tmp_path / "out", limited(MB))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.zip"]  # no staging folder left


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_member_that_would_not_fit_on_the_disk_is_refused(tmp_path: Path, kind: str) -> None:
    """The margin stands for a nearly full disk: more than is free must stay free."""
    make = zeros_targz if kind == "tar.gz" else zeros_zip
    archive = make(tmp_path / f"model.{kind}", 1024)
    stats = os.statvfs(tmp_path)
    nearly_full = UnpackLimits(disk_margin_bytes=stats.f_bavail * stats.f_frsize)

    with pytest.raises(ArtifactError, match="does not fit in the free space"):
        extract_archive(archive, tmp_path / "out", nearly_full)
    assert not (tmp_path / "out").exists()


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = zeros_targz(tmp_path / "model.tar.gz", *[0] * 11)
    with pytest.raises(ArtifactError, match="more than 10 members"):
        extract_archive(archive, tmp_path / "out", UnpackLimits(max_members=10))
    assert not (tmp_path / "out").exists()


def test_the_default_fits_a_large_model() -> None:
    assert UnpackLimits().max_bytes == 50 * GB


def test_serve_reads_the_limit_from_its_environment(tmp_path: Path) -> None:
    """`modelhost serve` of a bomb with MODELHOST_MAX_UNPACKED_GB=0.001: the load fails, saying why."""
    archive = zeros_targz(tmp_path / "model.tar.gz", 4 * MB)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELHOST_", "SAGEMAKER_", "SM_"))}
    env |= {"MODELHOST_MAX_UNPACKED_GB": "0.001", "MODELHOST_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "modelhost", "serve", str(archive), "--port", "0", "--workers", "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "unpacks to more than 0.001 GB" in done.stdout + done.stderr
    no_leftovers(tmp_path / "cache")
