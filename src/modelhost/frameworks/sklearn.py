"""scikit-learn (and anything else saved with joblib/pickle that has ``predict``).

Loading a pickle runs code from the artifact: only serve artifacts you trust. Request bodies are
never unpickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelhost.errors import ArtifactError, InvalidInput, ModelLoadError
from modelhost.frameworks.base import Predictor
from modelhost.frameworks.sklearn_fast import fast_predict
from modelhost.manifest import Manifest

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle", ".sav")


def pickle_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)


def _chosen_file(model_dir: Path, manifest: Manifest) -> Path:
    if manifest.model_file:
        path = model_dir / manifest.model_file
        if not path.is_file():
            raise ArtifactError(f"modelhost.yaml names model_file {manifest.model_file!r}, which is not there")
        return path
    files = pickle_files(model_dir)
    if not files:
        raise ArtifactError(f"no {'/'.join(PICKLE_SUFFIXES)} file in the artifact")
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise ArtifactError(
            f"the artifact has several pickles ({names}); add an inference.py whose model_fn wires "
            "them together, or name one with model_file in modelhost.yaml"
        )
    return files[0]


class SklearnPredictor(Predictor):
    """Texts go in as a list, dicts as a DataFrame (named columns), numbers as a 2-D array."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        if not callable(getattr(model, "predict", None)):
            raise ModelLoadError(f"the loaded object ({type(model).__name__}) has no predict method")
        self._predict = fast_predict(model) or model.predict
        self._n_features: int | None = getattr(model, "n_features_in_", None)
        self._columns: list[str] | None = _column_names(model)

    def predict(self, instances: Sequence[Any]) -> Sequence[Any]:
        matrix = self._matrix(instances)
        try:
            result = self._predict(matrix)
        except (ValueError, TypeError, AttributeError) as exc:
            # A fitted estimator that rejects its input (text where numbers belong, unknown
            # columns, ...) is answering about the request, not failing.
            raise InvalidInput(f"the model rejected the input: {exc}") from exc
        return result.tolist() if isinstance(result, np.ndarray) else list(result)

    def _matrix(self, instances: Sequence[Any]) -> Any:
        if all(isinstance(item, str) for item in instances):
            return list(instances)
        if all(isinstance(item, dict) for item in instances):
            return self._objects(instances)
        try:
            matrix = np.asarray(instances)
        except ValueError as exc:
            raise InvalidInput(f"instances must be rows of equal length: {exc}") from exc
        if matrix.dtype == object:
            raise InvalidInput("instances must be rows of numbers of equal length (or texts, or objects)")
        if matrix.ndim == 1:
            if self._n_features not in (None, 1):
                raise InvalidInput(
                    f"each instance must be a row of {self._n_features} features: send [[x1, x2, ...], ...]"
                )
            return matrix.reshape(-1, 1)
        if self._n_features is not None and matrix.ndim == 2 and matrix.shape[1] != self._n_features:
            raise InvalidInput(f"each instance must have {self._n_features} features, got {matrix.shape[1]}")
        return matrix

    def _objects(self, records: Sequence[dict[str, Any]]) -> Any:
        """Objects are rows of a DataFrame for a model fitted on named columns, ``{"text": ...}``
        is a text for any other model; anything else would be silently misread, so it is refused."""
        if self._columns is not None:
            missing = sorted({name for name in self._columns for record in records if name not in record})
            if missing:
                raise InvalidInput(f"missing fields: {', '.join(missing)} (the model reads {', '.join(self._columns)})")
            return _frame(records, self._columns)
        texts = [record.get("text") for record in records]
        if all(isinstance(text, str) for text in texts):
            return texts
        raise InvalidInput(
            'this model was not fitted on named columns: send texts, {"text": ...} objects or rows of numbers'
        )


def _column_names(model: Any) -> list[str] | None:
    try:
        names = model.feature_names_in_
    except AttributeError:  # a Pipeline delegates to its first step, which may not have them
        return None
    return [str(name) for name in names]


def _frame(records: Sequence[dict[str, Any]], columns: list[str]) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise InvalidInput("object instances need pandas installed on the server; send rows instead") from exc
    return pd.DataFrame.from_records(list(records), columns=columns)


class SklearnAdapter:
    name = "sklearn"

    def matches(self, model_dir: Path) -> bool:
        return bool(pickle_files(model_dir))

    def load(self, model_dir: Path, manifest: Manifest) -> Any:
        import joblib

        path = _chosen_file(model_dir, manifest)
        try:
            return joblib.load(path)
        except Exception as exc:
            raise ModelLoadError(f"could not unpickle {path.name}: {type(exc).__name__}: {exc}") from exc

    def thread_started(self) -> None:
        # Validating the estimator's parameters costs more than predicting one short row, and they
        # were validated when it was fitted. (Inputs are still checked: NaN must stay an error
        # for models that cannot take it.) scikit-learn keeps this config per thread.
        try:
            import sklearn
        except ImportError:
            return
        sklearn.set_config(skip_parameter_validation=True)

    def predictor(self, model: Any, manifest: Manifest) -> Predictor:
        return SklearnPredictor(model)
