"""The model server's handler program for a function: ``handler(event, context)`` behind ``/invocations``.

A function runs in a model-server instance like any model, so it inherits what instances already
have: the warm launcher, supervision and restarts, logs, a deadline per call (504, and a stuck
worker is recycled: a handler in an endless loop does not keep its worker). This file is the
instance's ``SAGEMAKER_PROGRAM``; the function's code is the instance's artifact.

    model_fn     cap memory, fetch the function's artifacts, import the handler (once per instance)
    transform_fn the body is the event (built by the gateway), the request id comes as x-request-id
                 ─► handler(event, context) ─► its return value as JSON

Configured by the environment the platform sets: ``MODELHOST_FUNCTION_HANDLER`` (module.function),
``MODELHOST_FUNCTION_NAME``, ``MODELHOST_FUNCTION_ARTIFACTS`` (JSON: file name ─► URI, copied by
functions/artifacts.py within ``MODELHOST_FUNCTION_MAX_ARTIFACT_BYTES``),
``MODELHOST_FUNCTION_MEMORY_MB`` and ``MODELHOST_TIMEOUT``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelhost.functions.artifacts import DEFAULT_MAX_BYTES, MAX_BYTES_ENV, fetch

ARTIFACTS_DIR_ENV = "MODELHOST_FUNCTION_ARTIFACTS_DIR"


class CognitoIdentity:
    """``context.identity`` as Lambda gives it to a call that is not from a Cognito-signed mobile app:
    an object whose two ids are None (so ``context.identity.cognito_identity_id`` reads, as there)."""

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None


class LambdaContext:
    """What AWS Lambda passes as ``context``: the request id, names, limits and the time left.

    ``identity`` and ``client_context`` are there as in Lambda for a call through API Gateway: an
    identity with no Cognito ids, and no client context (only the mobile SDKs send one).
    """

    def __init__(self, request_id: str, function_name: str, memory_mb: int, timeout_s: float) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.log_group_name = f"/modelhost/functions/{function_name}"
        self.log_stream_name = f"{os.getpid()}"
        self.identity = CognitoIdentity()
        self.client_context: Any = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _limit_memory(memory_mb: int) -> None:
    """Cap what the handler may allocate: ``memory_mb`` beyond what the runtime itself holds now.

    RLIMIT_DATA counts the heap and private anonymous mappings (where Python and NumPy allocate);
    past it an allocation fails and the handler sees a MemoryError (a 502 for that call only).
    """
    in_use = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            in_use = int(line.split()[1]) * 1024
    limit = in_use + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _artifacts_dir() -> Path:
    """Where this instance keeps its artifacts: the folder the function's environment names, else one
    of its own in the instance's cache (inside its run folder, gone with it), made afresh; never the
    code folder, which other functions may share."""
    named = os.environ.get(ARTIFACTS_DIR_ENV)
    if named:
        return Path(named)
    cache = os.environ.get("MODELHOST_CACHE_DIR")
    if not cache:  # a bridge served by hand: a private temporary folder
        return Path(tempfile.mkdtemp(prefix="function-artifacts-"))
    folder = Path(cache) / "function-artifacts"
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def _install_requirements(model_dir: Path) -> None:
    """``requirements.txt`` in the code: pip-installed once per distinct file, then on ``sys.path``.

    Installed into ``$MODELHOST_FUNCTION_PACKAGES_DIR/<sha256 of the file>`` (a temporary folder
    renamed when pip is done, so a half-finished install is never used), run from the code folder
    so relative paths in the file (``./vendor/pkg``) work. pip's output goes to the function's log.
    """
    import hashlib
    import subprocess

    requirements = model_dir / "requirements.txt"
    if not requirements.is_file():
        return
    root = Path(os.environ.get("MODELHOST_FUNCTION_PACKAGES_DIR") or model_dir.parent / "packages")
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    target = root / digest
    if not target.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=root))
        command = [
            sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
            "--target", str(scratch), "-r", str(requirements),
        ]  # fmt: skip
        print(f"installing {requirements.name} into {target}", flush=True)
        done = subprocess.run(command, cwd=model_dir, capture_output=True, text=True, check=False)
        sys.stdout.write(done.stdout[-4000:])
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise RuntimeError(f"pip could not install requirements.txt: {done.stderr.strip()[-1500:]}")
        try:
            scratch.rename(target)
        except OSError:  # another instance finished first: use its copy
            shutil.rmtree(scratch, ignore_errors=True)
    sys.path.insert(0, str(target))


def model_fn(model_dir: str | Path) -> Callable[..., Any]:
    model_dir = str(model_dir)
    _install_requirements(Path(model_dir))
    handler_name = os.environ["MODELHOST_FUNCTION_HANDLER"]
    artifacts = json.loads(os.environ.get("MODELHOST_FUNCTION_ARTIFACTS") or "{}")
    if artifacts:
        destination = _artifacts_dir()
        max_bytes = int(os.environ.get(MAX_BYTES_ENV) or DEFAULT_MAX_BYTES)
        fetch(artifacts, destination, max_bytes, os.environ.get("MODELHOST_S3_ENDPOINT_URL"))
        os.environ[ARTIFACTS_DIR_ENV] = str(destination)
    os.chdir(model_dir)  # relative paths in the handler mean its code folder, as /var/task on Lambda
    if model_dir not in sys.path:
        sys.path.insert(0, model_dir)
    module_name, _, attribute = handler_name.rpartition(".")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise AttributeError(f"{module_name!r} defines no function {attribute!r} (the handler {handler_name})")
    _limit_memory(int(os.environ.get("MODELHOST_FUNCTION_MEMORY_MB", "512")))
    return handler  # type: ignore[no-any-return]


def transform_fn(
    handler: Callable[..., Any], body: bytes | str, content_type: str, accept: str, context: Any
) -> tuple[str, str]:
    """The body is the event; the server's context carries the gateway's request id."""
    event = json.loads(body)
    lambda_context = LambdaContext(
        context.request_id or os.urandom(8).hex(),
        os.environ.get("MODELHOST_FUNCTION_NAME", "function"),
        int(os.environ.get("MODELHOST_FUNCTION_MEMORY_MB", "512")),
        float(os.environ.get("MODELHOST_TIMEOUT", "30")),
    )
    result = _call(handler, event, lambda_context)
    try:
        return json.dumps(result), "application/json"
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the handler returned a value that is not JSON: {exc}") from None


def _call(handler: Callable[..., Any], event: Any, context: LambdaContext) -> Any:
    """The handler's value; ``sys.exit()``, KeyboardInterrupt and other BaseExceptions it raises become
    the 502 any exception gets (traceback in the log). Let through, they would end the worker and the
    next caller would find no healthy instance: a handler never owns the process it is served from."""
    try:
        return handler(event, context)
    except Exception:
        raise
    except BaseException as exc:
        from modelhost.inference.pipeline import user_error  # here: the control plane imports this module too

        raise user_error(exc, context.aws_request_id) from exc
