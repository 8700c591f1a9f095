"""The ``modelhost`` command line, and the container's ``serve`` entrypoint.

A thin mapping onto ServerSettings: an option left out leaves the environment (or the default)
in charge.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from modelhost import __version__
from modelhost.cli.gateway import COMMANDS as GATEWAY_COMMANDS
from modelhost.cli.platform import COMMANDS as PLATFORM_COMMANDS

if TYPE_CHECKING:
    from modelhost.settings import ServerSettings


def _settings(overrides: dict[str, Any], batching: dict[str, Any]) -> ServerSettings:
    from modelhost.settings import BatchingSettings, ServerSettings

    given = {k: v for k, v in overrides.items() if v is not None}
    batch_given = {k: v for k, v in batching.items() if v is not None}
    try:
        return ServerSettings(**given, batching=BatchingSettings(**batch_given))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelhost")
def cli() -> None:
    """modelhost: serve a saved ML model as a REST API, keeping SageMaker's contracts."""


@cli.command()
@click.argument("artifact")
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8080, or $SAGEMAKER_BIND_TO_PORT).")
@click.option("--workers", type=int, help="Worker processes (default: one per core).")
@click.option("--timeout", "timeout_s", type=float, help="Seconds a prediction may take (default 60).")
@click.option("--max-payload-mb", type=float, help="Largest request body (default 6).")
@click.option("--batching/--no-batching", "batching_enabled", default=None, help="Adaptive batching (default on).")
@click.option("--max-batch-size", type=int, help="Most requests predicted together (default 32).")
@click.option("--max-batch-delay-ms", type=float, help="Longest a batch waits for requests on their way (default 2).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level.")
def serve(
    artifact: str,
    batching_enabled: bool | None,
    max_batch_size: int | None,
    max_batch_delay_ms: float | None,
    **options: Any,
) -> None:
    """Serve ARTIFACT (a folder, a model file, model.tar.gz, file:// or s3:// URI) on /invocations."""
    from modelhost.server import serve as run_server

    settings = _settings(
        {"model_uri": artifact, **options},
        {"enabled": batching_enabled, "max_batch_size": max_batch_size, "max_delay_ms": max_batch_delay_ms},
    )
    sys.exit(run_server(settings))


for _command in [*PLATFORM_COMMANDS, *GATEWAY_COMMANDS]:
    cli.add_command(_command)


def main() -> None:
    cli()


def container_serve() -> None:
    """``serve`` as SageMaker runs it in a container: model in /opt/ml/model, port 8080, all interfaces."""
    from modelhost.server import serve as run_server

    arguments = [a for a in sys.argv[1:] if a != "serve"]
    if arguments:
        sys.exit(f"serve takes no arguments (configure it with environment variables), got {arguments}")
    settings = _settings({"host": os.environ.get("MODELHOST_HOST", "0.0.0.0")}, {})
    sys.exit(run_server(settings))
