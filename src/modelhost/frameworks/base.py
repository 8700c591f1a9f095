"""The contract between the server and a framework: an Adapter loads, a Predictor predicts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from modelhost.manifest import Manifest


class Predictor(ABC):
    """A loaded model that returns one output per input instance.

    ``batchable`` says whether instances of several requests may be predicted together;
    ``worker_started`` runs in each worker process after fork.
    """

    batchable: ClassVar[bool] = True

    def __init__(self, model: Any) -> None:
        self.model = model

    @abstractmethod
    def predict(self, instances: Sequence[Any]) -> Sequence[Any]:
        """Predict; ``len(result) == len(instances)``. Raise InvalidInput for bad instances."""

    def worker_started(self, threads: int) -> None:  # noqa: B027 (optional hook)
        """Called once in each worker process after fork, with the CPU threads it may use."""


class Adapter(Protocol):
    """Recognises a framework's files, loads them, and wraps a loaded model in a Predictor."""

    name: str

    def matches(self, model_dir: Path) -> bool: ...

    def load(self, model_dir: Path, manifest: Manifest) -> Any: ...

    def predictor(self, model: Any, manifest: Manifest) -> Predictor: ...

    def thread_started(self) -> None:
        """Framework-wide tuning, run once in the inference thread (also for a user's handlers)."""
