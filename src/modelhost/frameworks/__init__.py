"""Framework adapters, tried in this order when the artifact does not name its framework."""

from __future__ import annotations

from pathlib import Path

from modelhost.errors import ArtifactError
from modelhost.frameworks.base import Adapter, Predictor
from modelhost.frameworks.sklearn import SklearnAdapter
from modelhost.frameworks.spacy import SpacyAdapter
from modelhost.frameworks.transformers import TransformersAdapter
from modelhost.frameworks.xgboost import XGBoostAdapter

__all__ = ["ADAPTERS", "Adapter", "Predictor", "adapter_named", "detect_adapter"]

# A spaCy or transformers folder may also hold pickles or JSON files, so those are asked first.
ADAPTERS: tuple[Adapter, ...] = (SpacyAdapter(), TransformersAdapter(), XGBoostAdapter(), SklearnAdapter())


def detect_adapter(model_dir: Path) -> Adapter | None:
    for adapter in ADAPTERS:
        if adapter.matches(model_dir):
            return adapter
    return None


def adapter_named(name: str) -> Adapter:
    for adapter in ADAPTERS:
        if adapter.name == name:
            return adapter
    raise ArtifactError(f"unknown framework {name!r}; known: {', '.join(a.name for a in ADAPTERS)}")
