"""From an unpacked artifact folder to a ready Pipeline: manifest, handlers, framework, model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from modelhost.codecs import default_codecs
from modelhost.errors import ModelhostError, ModelLoadError
from modelhost.frameworks import ADAPTERS, adapter_named, detect_adapter
from modelhost.frameworks.base import Adapter, Predictor
from modelhost.inference.handlers import UserHandlers, find_program, load_handlers
from modelhost.inference.pipeline import Pipeline
from modelhost.inference.types import HandlerContext
from modelhost.manifest import Manifest, read_manifest
from modelhost.settings import BatchingSettings, ServerSettings

log = logging.getLogger("modelhost.loader")


@dataclass(frozen=True)
class BatchPolicy:
    enabled: bool
    max_batch_size: int
    max_delay_ms: float


@dataclass(frozen=True)
class LoadedModel:
    pipeline: Pipeline
    framework: str
    batching: BatchPolicy


def _batch_policy(
    manifest: Manifest, settings: BatchingSettings, predictor: Predictor | None, handlers: UserHandlers | None
) -> BatchPolicy:
    if handlers is not None and handlers.transform_fn is not None:
        enabled = False
    elif handlers is not None and (handlers.input_fn or handlers.predict_fn or handlers.output_fn):
        enabled = manifest.batching.enabled is True  # user handlers opt in
    else:
        enabled = predictor is not None and predictor.batchable and manifest.batching.enabled is not False
    return BatchPolicy(
        enabled=enabled and settings.enabled,
        max_batch_size=manifest.batching.max_batch_size or settings.max_batch_size,
        max_delay_ms=manifest.batching.max_delay_ms
        if manifest.batching.max_delay_ms is not None
        else settings.max_delay_ms,
    )


def _listing(model_dir: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in model_dir.iterdir())
    return ", ".join(names[:12]) + (" ..." if len(names) > 12 else "") or "(empty)"


def load_model(model_dir: Path, settings: ServerSettings) -> LoadedModel:
    """Load the model the way the artifact asks; every failure is a ModelLoadError saying why."""
    try:
        return _load(model_dir, settings)
    except ModelhostError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc


def _load(model_dir: Path, settings: ServerSettings) -> LoadedModel:
    manifest = read_manifest(model_dir)
    program = find_program(model_dir, settings.program or manifest.program)
    handlers = load_handlers(program) if program else None

    adapter: Adapter | None
    framework = settings.framework or manifest.framework
    if framework == "custom":
        adapter = None
    elif framework:
        adapter = adapter_named(framework)
    else:
        adapter = detect_adapter(model_dir)

    context = HandlerContext(model_dir)
    if handlers is not None and handlers.model_fn is not None:
        model = handlers.model_fn(model_dir, context)
    elif adapter is not None:
        model = adapter.load(model_dir, manifest)
    else:
        known = ", ".join(a.name for a in ADAPTERS)
        raise ModelLoadError(
            f"no model recognised in {model_dir} (files: {_listing(model_dir)}); expected one of "
            f"{known}, or an inference.py with model_fn"
        )
    if handlers is not None and handlers.model_warmup_fn is not None:
        handlers.model_warmup_fn(model_dir, model, context)

    needs_default_predict = handlers is None or (handlers.predict_fn is None and handlers.transform_fn is None)
    predictor = None
    if adapter is not None and needs_default_predict:
        predictor = adapter.predictor(model, manifest)
    elif needs_default_predict:
        raise ModelLoadError("inference.py's model_fn returned a model of no known framework: define predict_fn")

    codecs = default_codecs(settings.default_accept)
    policy = _batch_policy(manifest, settings.batching, predictor, handlers)
    pipeline = Pipeline(
        model=model,
        model_dir=model_dir,
        predictor=predictor,
        adapter=adapter,
        handlers=handlers,
        codecs=codecs,
        batchable=policy.enabled,
        default_accept=settings.default_accept or "application/json",
    )
    framework = adapter.name if adapter else "custom"
    if handlers is not None:
        framework += f"+{handlers.path.name}"
    return LoadedModel(pipeline, framework, policy)
