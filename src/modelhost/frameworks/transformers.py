"""Hugging Face transformers folders (``config.json`` + weights), read from local files only.

Tasks: ``text-classification`` -> ``{"label", "score"}`` per text; ``token-classification`` ->
``[{"text", "label", "start", "end", "score"}, ...]`` per text (entities aggregated). The task comes
from modelhost.yaml or the model's architecture name. Loading happens before fork with torch
limited to one thread, so no thread pool exists to be broken by fork; each worker then gets
its share of the cores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelhost.errors import ModelLoadError
from modelhost.frameworks.base import Predictor
from modelhost.frameworks.spacy import text_of
from modelhost.manifest import Manifest

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
TASKS = ("text-classification", "token-classification")


def _task_from_config(model_dir: Path) -> str:
    import json

    config = json.loads((model_dir / "config.json").read_text())
    for architecture in config.get("architectures") or []:
        if architecture.endswith("ForSequenceClassification"):
            return "text-classification"
        if architecture.endswith("ForTokenClassification"):
            return "token-classification"
    raise ModelLoadError(
        f"cannot tell the task from architectures {config.get('architectures')}; "
        f"set task in modelhost.yaml to one of: {', '.join(TASKS)}"
    )


class TransformersPredictor(Predictor):
    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._task: str = model.task

    def worker_started(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    def predict(self, instances: Sequence[Any]) -> Sequence[Any]:
        texts = [text_of(item) for item in instances]
        outputs = self.model(texts, batch_size=len(texts))
        if self._task == "token-classification":
            return [
                [
                    {
                        "text": text[e["start"] : e["end"]],
                        "label": e["entity_group"],
                        "start": int(e["start"]),
                        "end": int(e["end"]),
                        "score": float(e["score"]),
                    }
                    for e in entities
                ]
                for text, entities in zip(texts, outputs, strict=True)
            ]
        return [{"label": o["label"], "score": float(o["score"])} for o in outputs]


class TransformersAdapter:
    name = "transformers"

    def matches(self, model_dir: Path) -> bool:
        return (model_dir / "config.json").is_file() and any((model_dir / f).is_file() for f in WEIGHT_FILES)

    def load(self, model_dir: Path, manifest: Manifest) -> Any:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise ModelLoadError("this is a transformers model: pip install 'modelhost[transformers]'") from exc
        task = manifest.task or _task_from_config(model_dir)
        if task not in TASKS:
            raise ModelLoadError(f"task {task!r} is not served yet; supported: {', '.join(TASKS)}")
        torch.set_num_threads(1)
        options: dict[str, Any] = {"aggregation_strategy": "simple"} if task == "token-classification" else {}
        try:
            return transformers.pipeline(
                task,
                model=str(model_dir),
                tokenizer=str(model_dir),
                device="cpu",
                **options,
            )
        except Exception as exc:
            raise ModelLoadError(f"transformers could not load the model: {type(exc).__name__}: {exc}") from exc

    def thread_started(self) -> None:
        pass

    def predictor(self, model: Any, manifest: Manifest) -> Predictor:
        return TransformersPredictor(model)
