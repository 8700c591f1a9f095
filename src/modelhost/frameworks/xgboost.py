"""XGBoost boosters, like SageMaker's built-in XGBoost: rows of numbers in, one score per row out.

Recognised files: ``xgboost-model`` (SageMaker's name), ``*.ubj``, ``*.bst``, ``*.xgb`` and a
``*.json`` that holds a booster. A model saved with the scikit-learn API through joblib is served
by the sklearn adapter instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelhost.errors import ArtifactError, InvalidInput, ModelLoadError
from modelhost.frameworks.base import Predictor
from modelhost.manifest import Manifest

BOOSTER_SUFFIXES = (".ubj", ".bst", ".xgb")


def booster_files(model_dir: Path) -> list[Path]:
    found = []
    for path in sorted(model_dir.iterdir()):
        if not path.is_file():
            continue
        if path.name == "xgboost-model" or path.suffix.lower() in BOOSTER_SUFFIXES:
            found.append(path)
        elif path.suffix.lower() == ".json":
            with path.open("rb") as handle:
                if b'"learner"' in handle.read(256):
                    found.append(path)
    return found


class XGBoostPredictor(Predictor):
    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._n_features = int(model.num_features())

    def worker_started(self, threads: int) -> None:
        self.model.set_param({"nthread": threads})

    def predict(self, instances: Sequence[Any]) -> Sequence[Any]:
        import xgboost

        try:
            rows = np.asarray(instances, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"instances must be rows of numbers: {exc}") from exc
        if rows.ndim == 1:  # one number per instance: a model of one feature
            rows = rows.reshape(-1, 1)
        if rows.ndim != 2 or rows.shape[1] != self._n_features:
            got = rows.shape[1] if rows.ndim == 2 else rows.shape
            raise InvalidInput(f"each row must have {self._n_features} features, got {got}")
        try:
            scores = self.model.predict(xgboost.DMatrix(rows))
        except (ValueError, xgboost.core.XGBoostError) as exc:
            raise InvalidInput(f"the model rejected the input: {exc}") from exc
        return scores.tolist()  # type: ignore[no-any-return]


class XGBoostAdapter:
    name = "xgboost"

    def matches(self, model_dir: Path) -> bool:
        return bool(booster_files(model_dir))

    def load(self, model_dir: Path, manifest: Manifest) -> Any:
        try:
            import xgboost
        except ImportError as exc:
            raise ModelLoadError("this is an XGBoost model: pip install 'modelhost[xgboost]'") from exc
        if manifest.model_file:
            path = model_dir / manifest.model_file
        else:
            files = booster_files(model_dir)
            if len(files) != 1:
                raise ArtifactError(f"expected one booster file, found {len(files)}; set model_file")
            path = files[0]
        booster = xgboost.Booster()
        try:
            # From bytes, so the format is read from the content: SageMaker's "xgboost-model" has
            # no extension to tell it by.
            booster.load_model(bytearray(path.read_bytes()))
        except xgboost.core.XGBoostError as exc:
            raise ModelLoadError(f"XGBoost could not load {path.name}: {exc}") from exc
        return booster

    def thread_started(self) -> None:
        pass

    def predictor(self, model: Any, manifest: Manifest) -> Predictor:
        return XGBoostPredictor(model)
