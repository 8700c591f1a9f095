"""The SageMaker inference toolkit contract for a user's ``inference.py``.

``model_fn(model_dir)``, ``input_fn(input_data, content_type)``, ``predict_fn(data, model)``,
``output_fn(prediction, accept)``, ``transform_fn(model, input_data, content_type, accept)`` and
``model_warmup_fn(model_dir, model)``; each may take one more argument, ``context``. As in the
toolkit, ``transform_fn`` cannot be combined with the other three, and what is not defined falls
back to the framework adapter's default. The contract is checked once, when the model loads.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelhost.errors import ModelLoadError

DEFAULT_PROGRAM = "inference.py"
Handler = Callable[..., Any]
_ARITY = {
    "model_fn": 1,
    "input_fn": 2,
    "predict_fn": 2,
    "output_fn": 2,
    "transform_fn": 4,
    "model_warmup_fn": 2,
}


@dataclass(frozen=True)
class UserHandlers:
    """The handlers an ``inference.py`` defines; each one already takes the context argument."""

    path: Path
    model_fn: Handler | None = None
    input_fn: Handler | None = None
    predict_fn: Handler | None = None
    output_fn: Handler | None = None
    transform_fn: Handler | None = None
    model_warmup_fn: Handler | None = None


def find_program(model_dir: Path, program: str | None) -> Path | None:
    """``inference.py`` (or the named program) at the artifact root or under ``code/``."""
    name = program or DEFAULT_PROGRAM
    for candidate in (model_dir / name, model_dir / "code" / name):
        if candidate.is_file():
            return candidate
    if program:
        raise ModelLoadError(f"the handler program {program!r} is not in the artifact (nor under code/)")
    return None


def _with_context(name: str, function: Handler) -> Handler:
    """Adapt a handler to always take ``context`` last, deciding once from its signature."""
    expected = _ARITY[name]
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return lambda *args: function(*args[:-1])
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    if variadic or len(positional) >= expected + 1:
        return function
    if len(required) <= expected <= len(positional):
        return lambda *args: function(*args[:-1])
    raise ModelLoadError(
        f"{name} must take {expected} arguments (or {expected + 1} with context), but takes {len(positional)}"
    )


def _import(path: Path) -> ModuleType:
    module_name = f"modelhost_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # Like SageMaker: the program's folder is importable, so it can import its helper modules.
    sys.path.insert(0, str(path.parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ModelLoadError(f"importing {path.name} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_handlers(path: Path) -> UserHandlers:
    module = _import(path)
    found: dict[str, Handler] = {}
    for name in _ARITY:
        function = getattr(module, name, None)
        if function is None:
            continue
        if not callable(function):
            raise ModelLoadError(f"{path.name}: {name} is not a function")
        found[name] = _with_context(name, function)
    if "transform_fn" in found and {"input_fn", "predict_fn", "output_fn"} & found.keys():
        raise ModelLoadError(f"{path.name}: cannot use transform_fn together with input_fn, predict_fn or output_fn")
    return UserHandlers(path=path, **found)
