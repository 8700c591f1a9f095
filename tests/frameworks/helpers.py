from pathlib import Path
from typing import Any

import orjson

from modelhost.inference.loader import LoadedModel, load_model
from modelhost.inference.types import Invocation, Rendered
from modelhost.settings import ServerSettings


def load(model_dir: Path, **settings: Any) -> LoadedModel:
    return load_model(model_dir, ServerSettings(model_uri=str(model_dir), **settings))


def invoke(loaded: LoadedModel, body: Any, content_type: str = "application/json", accept: str | None = None) -> Any:
    """One request through the pipeline; the decoded JSON answer (or raw bytes for other types)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    [outcome] = loaded.pipeline.run_batch([Invocation(raw, content_type, accept)])
    if not isinstance(outcome, Rendered):
        raise outcome
    return orjson.loads(outcome.body) if outcome.content_type == "application/json" else outcome.body


def invoke_many(loaded: LoadedModel, bodies: list[Any]) -> list[Any]:
    """Several requests in one merged batch, as the batcher would hand them over."""
    outcomes = loaded.pipeline.run_batch([Invocation(orjson.dumps(b), "application/json", None) for b in bodies])
    return [orjson.loads(o.body) if isinstance(o, Rendered) else o for o in outcomes]
