"""The two benchmark workloads: their model files (built on demand) and their reference code.

The models are built by the shared ``make_models.py``, run as its own process when files are
missing, and never copied or forked here: every peer then measures the very same model bytes.
``workloads.py`` beside it is the reference predict code, imported through ``sys.path``.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

WORKLOAD_NAMES = ("sentiment", "ner")


@dataclass(frozen=True)
class Workload:
    """A workload's folder, its held-out request texts and the reference outputs of the first ones."""

    name: str
    directory: Path
    texts: tuple[str, ...]
    expected: tuple[tuple[str, Any], ...]  # (text, reference output)

    def expected_batch(self, count: int) -> tuple[list[str], list[Any]]:
        """The first ``count`` texts with a known answer, and those answers."""
        if count > len(self.expected):
            raise ValueError(f"{self.name}: only {len(self.expected)} expected outputs, {count} asked")
        chosen = self.expected[:count]
        return [text for text, _ in chosen], [output for _, output in chosen]

    def chunks(self, size: int) -> list[list[str]]:
        """The request texts cut into consecutive groups of ``size`` (a short tail is dropped)."""
        return [list(self.texts[start : start + size]) for start in range(0, len(self.texts) - size + 1, size)]


def ensure_built(source_dir: Path, cache_dir: Path) -> None:
    """Run make_models.py when a workload is missing; it skips what is already up to date."""
    missing = [name for name in WORKLOAD_NAMES if not (cache_dir / name / "expected.json").is_file()]
    if not missing:
        return
    script = source_dir / "make_models.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: pass --workloads-src")
    print(f"building the {', '.join(missing)} workload model(s) into {cache_dir} ...", flush=True)
    subprocess.run([sys.executable, str(script), "--out", str(cache_dir)], check=True)


def load_workload(name: str, cache_dir: Path) -> Workload:
    directory = cache_dir / name
    with (directory / "requests.jsonl").open() as handle:
        texts = tuple(json.loads(line) for line in handle if line.strip())
    expected = json.loads((directory / "expected.json").read_text())
    return Workload(name, directory, texts, tuple((item["text"], item["output"]) for item in expected))


def reference_module(source_dir: Path) -> ModuleType:
    """``workloads.py``: the reference predict code both the baselines and the checks rely on."""
    if str(source_dir) not in sys.path:
        sys.path.insert(0, str(source_dir))
    return importlib.import_module("workloads")
