"""spaCy pipeline folders (``config.cfg`` + ``meta.json``), spacy-transformers ones included.

Each text becomes ``{"entities": [{"text", "label", "start", "end"}, ...]}`` plus ``"cats"``
(label -> score) when the pipeline has a text categorizer. Batches go through ``nlp.pipe``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelhost.errors import InvalidInput, ModelLoadError
from modelhost.frameworks.base import Predictor
from modelhost.manifest import Manifest


def text_of(instance: Any) -> str:
    """A text instance is a string or an object with a ``text`` field."""
    if isinstance(instance, str):
        return instance
    text = instance.get("text") if isinstance(instance, dict) else None
    if isinstance(text, str):
        return text
    raise InvalidInput('each instance must be a text or an object with a "text" field')


def spacy_dir(model_dir: Path) -> Path | None:
    """The pipeline folder: the artifact itself or its single sub-folder (``nlp.to_disk`` layout)."""
    for candidate in (model_dir, *sorted(p for p in model_dir.iterdir() if p.is_dir())):
        if (candidate / "config.cfg").is_file() and (candidate / "meta.json").is_file():
            return candidate
    return None


class SpacyPredictor(Predictor):
    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._has_cats = any(name in ("textcat", "textcat_multilabel") for name in model.pipe_names)

    def predict(self, instances: Sequence[Any]) -> Sequence[Any]:
        texts = [text_of(item) for item in instances]
        if len(texts) == 1:
            return [self._render(self.model(texts[0]))]
        return [self._render(doc) for doc in self.model.pipe(texts, batch_size=len(texts))]

    def _render(self, doc: Any) -> dict[str, Any]:
        result: dict[str, Any] = {
            "entities": [
                {"text": e.text, "label": e.label_, "start": e.start_char, "end": e.end_char} for e in doc.ents
            ]
        }
        if self._has_cats:
            result["cats"] = dict(doc.cats)
        return result


class SpacyAdapter:
    name = "spacy"

    def matches(self, model_dir: Path) -> bool:
        return spacy_dir(model_dir) is not None

    def load(self, model_dir: Path, manifest: Manifest) -> Any:
        try:
            import spacy
        except ImportError as exc:
            raise ModelLoadError("this is a spaCy pipeline: pip install 'modelhost[spacy]'") from exc
        folder = spacy_dir(model_dir)
        if folder is None:
            raise ModelLoadError("no spaCy pipeline (config.cfg + meta.json) in the artifact")
        try:
            return spacy.load(folder)
        except Exception as exc:
            raise ModelLoadError(f"spaCy could not load {folder.name}: {type(exc).__name__}: {exc}") from exc

    def thread_started(self) -> None:
        pass

    def predictor(self, model: Any, manifest: Manifest) -> Predictor:
        return SpacyPredictor(model)
