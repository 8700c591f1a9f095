"""The run plan: which servers start, which scenarios each is loaded with, and in what order.

A server step starts one server, checks one live answer per scenario against ``expected.json``,
loads it with wrk at each connection count, then reads its memory. Step names are what
``--only`` selects; ``inprocess`` and ``cold-start`` are steps without a long-running server.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from dialects import BARE, MODELHOST_NER, MODELHOST_SENTIMENT, SEED_NER, SEED_SENTIMENT, Dialect
from servers import ServerSpec
from vocabulary import NER_1, NO_MODEL, SENTIMENT_1, SENTIMENT_32, Scenario

APPS_DIR = Path(__file__).parent / "apps"
SENTIMENT_STEP, SENTIMENT_1W_STEP = "sentiment", "sentiment-1worker"
STEP_ORDER = (
    "inprocess",
    "cold-start",
    "bare",
    "flask-sentiment",
    "flask-ner",
    SENTIMENT_STEP,
    SENTIMENT_1W_STEP,
    "sentiment-seed",
    "ner",
)


@dataclass(frozen=True)
class Load:
    """One scenario sent to a server in the body shape that server expects."""

    scenario: Scenario
    dialect: Dialect


@dataclass(frozen=True)
class ServerStep:
    name: str
    server: ServerSpec
    loads: tuple[Load, ...]


@dataclass(frozen=True)
class Models:
    """Where the served models are: the workload folders and the artifacts built from them."""

    workloads_src: Path  # make_models.py and workloads.py
    sentiment_dir: Path  # the workload's two pickles
    ner_dir: Path  # the workload's folder; its spaCy pipeline is ner_dir/model
    sentiment_pipeline: Path  # artifact: one joblib'd Pipeline
    sentiment_seed: Path  # artifact: two pickles + inference.py + modelhost.yaml
    modelhost_cache: Path


def modelhost(key: str, label: str, artifact: Path, workers: int, cache: Path) -> ServerSpec:
    args = (sys.executable, "-m", "modelhost", "serve", str(artifact), "--port", "{port}", "--workers", str(workers))
    return ServerSpec(key, label, args, workers, {"MODELHOST_CACHE_DIR": str(cache)})


def flask_gunicorn(workload: str, model_dir: Path, workloads_src: Path, workers: int) -> ServerSpec:
    """The seed stack: gunicorn sync workers, each importing the Flask app and loading the model."""
    args = (
        sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync",
        "--bind", "127.0.0.1:{port}", "--chdir", str(APPS_DIR), "--log-level", "warning", "flask_app:app",
    )  # fmt: skip
    env = {"WORKLOADS_DIR": str(workloads_src), "WORKLOAD": workload, "MODEL_DIR": str(model_dir)}
    return ServerSpec("flask", f"flask+gunicorn, {workers} sync", args, workers, env)


def bare_uvicorn(workers: int) -> ServerSpec:
    args = (
        sys.executable, "-m", "uvicorn", "hello_asgi:app", "--app-dir", str(APPS_DIR), "--host", "127.0.0.1",
        "--port", "{port}", "--workers", str(workers), "--http", "httptools", "--loop", "uvloop",
        "--lifespan", "off", "--no-access-log", "--log-level", "warning",
    )  # fmt: skip
    return ServerSpec("bare", f"bare uvicorn, {workers}w", args, workers)


def sentiment_default(models: Models, workers: int, key: str = "modelhost") -> ServerSpec:
    """modelhost serving the single-Pipeline folder with no code: the headline server."""
    label = f"modelhost default, {workers}w"
    return modelhost(key, label, models.sentiment_pipeline, workers, models.modelhost_cache)


def server_steps(models: Models, workers: int) -> dict[str, ServerStep]:
    sentiment_loads = (Load(SENTIMENT_1, MODELHOST_SENTIMENT), Load(SENTIMENT_32, MODELHOST_SENTIMENT))
    seed = modelhost(
        "modelhost-seed", f"modelhost inference.py, {workers}w", models.sentiment_seed, workers, models.modelhost_cache
    )
    ner = modelhost(
        "modelhost", f"modelhost default, {workers}w", models.ner_dir / "model", workers, models.modelhost_cache
    )
    steps = (
        ServerStep("bare", bare_uvicorn(workers), (Load(NO_MODEL, BARE),)),
        ServerStep(
            "flask-sentiment",
            flask_gunicorn("sentiment", models.sentiment_dir, models.workloads_src, workers),
            (Load(SENTIMENT_1, SEED_SENTIMENT), Load(SENTIMENT_32, SEED_SENTIMENT)),
        ),
        ServerStep(
            "flask-ner",
            flask_gunicorn("ner", models.ner_dir, models.workloads_src, workers),
            (Load(NER_1, SEED_NER),),
        ),
        ServerStep(SENTIMENT_STEP, sentiment_default(models, workers), sentiment_loads),
        ServerStep(SENTIMENT_1W_STEP, sentiment_default(models, 1, "modelhost-1w"), sentiment_loads),
        ServerStep("sentiment-seed", seed, (Load(SENTIMENT_1, SEED_SENTIMENT),)),
        ServerStep("ner", ner, (Load(NER_1, MODELHOST_NER),)),
    )
    return {step.name: step for step in steps}
