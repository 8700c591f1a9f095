"""The platform's commands: ``up`` runs it; the others talk to it through ``modelhost.Client``.

modelhost up                                   control plane + front door (+ runtime)
modelhost deploy ./sentiment --name sentiment  upload, create or update, wait for InService
modelhost invoke sentiment --data '["what a great day"]'
modelhost ls | describe NAME | logs NAME | update NAME SOURCE | rm NAME
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

_URL_HELP = "The platform's URL (default $MODELHOST_URL or http://127.0.0.1:7070)."


def _client(url: str | None) -> Any:
    from modelhost.client import Client

    return Client(url)


def _fail(exc: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {getattr(exc, 'message', exc)}", highlight=False)
    sys.exit(1)


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    environment = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: use KEY=VALUE", param_hint="--env")
        environment[key] = value
    return environment


@click.command()
@click.option("--host", help="Address to bind (default 127.0.0.1; anything else needs a token).")
@click.option("--port", type=int, help="Port of the API and the front door (default 7070).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where state, logs and artifacts live.")
@click.option("--database", help="SQLAlchemy URL of the state store (default: SQLite in the state dir).")
@click.option("--artifacts", help="Artifact store: a folder or s3://bucket/prefix (default: the state dir).")
@click.option("--s3-endpoint-url", help="S3-compatible store's URL (for s3:// artifacts).")
@click.option("--token", help="Token the management API requires (default $MODELHOST_TOKEN).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level.")
@click.option(
    "--handoff/--no-handoff",
    "connection_handoff",
    default=None,
    help="Pass keep-alive connections of plain endpoints to their workers (default on; $MODELHOST_CONNECTION_HANDOFF).",
)
def up(**options: Any) -> None:
    """Run the platform: the control plane, the front door and every endpoint's instances."""
    from modelhost.platform.run import run_platform
    from modelhost.platform.settings import PlatformSettings

    given = {k: v for k, v in options.items() if v is not None}
    try:
        settings = PlatformSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from exc
    sys.exit(run_platform(settings))


def _deploy(url: str | None, source: str, name: str, **kwargs: Any) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from modelhost.client import ClientError

    console = Console(stderr=True)
    started = time.perf_counter()
    client = _client(url)
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    )
    upload = progress.add_task(f"uploading {source}", total=None)
    status = console.status(f"{name}: deploying")

    live = console.is_terminal  # no spinners in a log file or a pipe

    def on_progress(sent: int, total: int) -> None:
        if live:
            progress.start()
            progress.update(upload, completed=sent, total=total)

    def on_status(endpoint: dict[str, Any]) -> None:
        if live:
            progress.stop()
            status.start()
            status.update(f"{name}: {endpoint['status']}")

    try:
        endpoint = client.deploy(source, name, on_progress=on_progress, on_status=on_status, **kwargs)
    except ClientError as exc:
        progress.stop()
        status.stop()
        _fail(exc)
    progress.stop()
    status.stop()
    console.print(
        f"[green]{name}[/] is InService on config {endpoint['config_name']} "
        f"({time.perf_counter() - started:.1f} s). Invoke it:\n"
        f"  modelhost invoke {name} --data '...'\n"
        f"  curl {client.url}{endpoint['invocation_path']} -H 'Content-Type: application/json' -d '...'",
        highlight=False,
        soft_wrap=True,
    )


_deploy_options = [
    click.option("--framework", help="sklearn, spacy, transformers, xgboost (default: detected)."),
    click.option("--env", "env_pairs", multiple=True, help="KEY=VALUE for the model server, e.g. SAGEMAKER_PROGRAM."),
    click.option("--instances", "instance_count", type=int, default=1, show_default=True, help="Instances to run."),
    click.option(
        "--require-api-key/--no-api-key",
        "require_api_key",
        default=None,
        help="Invocations need an x-api-key (default: leave as it is; off for a new endpoint).",
    ),
    click.option("--timeout", "timeout_s", type=float, default=600, show_default=True, help="Seconds to wait."),
    click.option("--url", help=_URL_HELP),
]


def _with_deploy_options(command: Any) -> Any:
    for option in reversed(_deploy_options):
        command = option(command)
    return command


@click.command()
@click.argument("source")
@click.option("--name", required=True, help="The endpoint's name.")
@_with_deploy_options
def deploy(source: str, name: str, env_pairs: tuple[str, ...], url: str | None, **kwargs: Any) -> None:
    """Deploy SOURCE (a local folder or file, which is uploaded, or an s3:// / file:// URI) as endpoint NAME.

    Creates the endpoint, or updates it if it exists; waits until it is InService.
    """
    _deploy(url, source, name, environment=_parse_env(env_pairs), **kwargs)


@click.command()
@click.argument("name")
@click.argument("source")
@_with_deploy_options
def update(name: str, source: str, env_pairs: tuple[str, ...], url: str | None, **kwargs: Any) -> None:
    """Move endpoint NAME to a new model from SOURCE, without downtime; rolled back if it fails to start."""
    from modelhost.client import ClientError

    try:
        _client(url).describe_endpoint(name)
    except ClientError as exc:
        _fail(exc)
    _deploy(url, source, name, environment=_parse_env(env_pairs), **kwargs)


@click.command()
@click.argument("name")
@click.option("--data", help="The request body (default: read --file, or standard input).")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Body from a file.")
@click.option("--content-type", default="application/json", show_default=True)
@click.option("--accept", help="Media type wanted back.")
@click.option("--variant", help="Send to this production variant.")
@click.option("--target-model", help="A multi-model endpoint's model (a path under its prefix).")
@click.option("--api-key", envvar="MODELHOST_API_KEY", help="For an endpoint that requires one ($MODELHOST_API_KEY).")
@click.option("--url", help=_URL_HELP)
def invoke(
    *,
    name: str,
    data: str | None,
    file_: Path | None,
    content_type: str,
    accept: str | None,
    variant: str | None,
    target_model: str | None,
    api_key: str | None,
    url: str | None,
) -> None:
    """Invoke endpoint NAME and print the model's answer."""
    from modelhost.client import ClientError

    body = data.encode() if data is not None else file_.read_bytes() if file_ is not None else sys.stdin.buffer.read()
    try:
        answer = _client(url).invoke(
            name,
            body=body,
            content_type=content_type,
            accept=accept,
            target_variant=variant,
            target_model=target_model,
            api_key=api_key,
        )
    except ClientError as exc:
        _fail(exc)
    sys.stdout.buffer.write(answer.body)
    if not answer.body.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")


@click.command(name="ls")
@click.option("--url", help=_URL_HELP)
def list_endpoints(url: str | None) -> None:
    """List the endpoints with their status and instances."""
    from rich.console import Console
    from rich.table import Table

    from modelhost.client import ClientError

    try:
        endpoints = _client(url).list_endpoints()
    except ClientError as exc:
        _fail(exc)
    table = Table("endpoint", "status", "config", "variants: healthy/all", "updated")
    colors = {"InService": "green", "Failed": "red"}
    for endpoint in endpoints:
        variants = ", ".join(
            f"{v['name']} {sum(i['state'] == 'Healthy' for i in v['instances'])}/{len(v['instances'])}"
            for v in endpoint["variants"]
        )
        status = endpoint["status"]
        table.add_row(
            endpoint["name"],
            f"[{colors.get(status, 'yellow')}]{status}[/]",
            endpoint["config_name"],
            variants or "-",
            (endpoint["updated_at"] or "")[:19].replace("T", " "),
        )
    Console().print(table)


@click.command()
@click.argument("name")
@click.option("--url", help=_URL_HELP)
def describe(name: str, url: str | None) -> None:
    """Show endpoint NAME: status, failure reason, config, variants and instances (JSON)."""
    import orjson

    from modelhost.client import ClientError

    try:
        endpoint = _client(url).describe_endpoint(name)
    except ClientError as exc:
        _fail(exc)
    sys.stdout.write(orjson.dumps(endpoint, option=orjson.OPT_INDENT_2).decode() + "\n")


_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")  # all but tab and newline; ESC, CSI


def for_terminal(text: str) -> str:
    """Log text as shown on a terminal: a model's or handler's output cannot send it escape sequences."""
    return _TERMINAL_CONTROL.sub("\ufffd", text) if sys.stdout.isatty() else text


@click.command()
@click.argument("name")
@click.option("--bytes", "max_bytes", type=int, default=64 * 1024, show_default=True, help="How much of each log.")
@click.option("-f", "--follow", is_flag=True, help="Then print new lines as they come (Ctrl-C to stop).")
@click.option("--url", help=_URL_HELP)
def logs(name: str, max_bytes: int, follow: bool, url: str | None) -> None:
    """Print the end of each instance log of endpoint NAME."""
    from modelhost.client import ClientError

    client = _client(url)
    try:
        sys.stdout.write(for_terminal(client.logs(name, max_bytes)))
        sys.stdout.flush()
        if follow:
            for chunk in client.follow_logs(name):
                sys.stdout.write(for_terminal(chunk.decode("utf-8", "replace")))
                sys.stdout.flush()
    except ClientError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("name")
@click.option("--keep-models", is_flag=True, help="Keep the models and configs deploy made for it.")
@click.option("--url", help=_URL_HELP)
def rm(name: str, keep_models: bool, url: str | None) -> None:
    """Delete endpoint NAME: stop its instances, remove its files (and what deploy made for it)."""
    from modelhost.client import ClientError

    try:
        _client(url).delete_endpoint(name, with_deployed_resources=not keep_models)
    except ClientError as exc:
        _fail(exc)
    click.echo(f"deleted {name}", err=True)


@click.command()
@click.argument("name")
@click.option(
    "--require-api-key/--no-api-key", "require_api_key", required=True, help="Invocations need a key, or not."
)
@click.option("--url", help=_URL_HELP)
def access(name: str, require_api_key: bool, url: str | None) -> None:
    """Require (or stop requiring) an API key for endpoint NAME's invocations."""
    from modelhost.client import ClientError

    try:
        _client(url).set_endpoint_access(name, require_api_key=require_api_key)
    except ClientError as exc:
        _fail(exc)
    click.echo(f"{name}: invocations {'need' if require_api_key else 'do not need'} an API key", err=True)


@click.group()
def apikey() -> None:
    """Keys for invoking endpoints that require one (x-api-key header)."""


@apikey.command(name="create")
@click.argument("name", required=False)
@click.option("--name", "name_option", help="The key's name (or give it as the argument).")
@click.option("--endpoint", "endpoints", multiple=True, help="Only for this endpoint (repeatable; default: all).")
@click.option("--rate", help="The key's own limit over every gateway route, e.g. 10/s or 600/m.")
@click.option("--burst", type=int, help="Requests at once under --rate (default: a second's worth).")
@click.option("--url", help=_URL_HELP)
def apikey_create(
    *,
    name: str | None,
    name_option: str | None,
    endpoints: tuple[str, ...],
    rate: str | None,
    burst: int | None,
    url: str | None,
) -> None:
    """Create key NAME and print it: it is shown this once (only its hash is kept)."""
    if (name is None) == (name_option is None):
        raise click.UsageError("give the key's name once: `apikey create NAME` or `apikey create --name NAME`")
    name = name or name_option
    assert name is not None
    from modelhost.client import ClientError

    try:
        created = _client(url).create_api_key(name, list(endpoints) or None, rate=rate, burst=burst)
    except ClientError as exc:
        _fail(exc)
    click.echo(created["key"])
    click.echo(f"API key {name} created; store it now, it cannot be shown again.", err=True)
    if created.get("access_key_id"):
        click.echo(
            f"For boto3 (SigV4): AWS_ACCESS_KEY_ID={created['access_key_id']} and the key as AWS_SECRET_ACCESS_KEY.",
            err=True,
        )


@apikey.command(name="ls")
@click.option("--url", help=_URL_HELP)
def apikey_list(url: str | None) -> None:
    """List the keys (names, prefixes and scopes; never the keys)."""
    from rich.console import Console
    from rich.table import Column, Table

    from modelhost.client import ClientError

    try:
        keys = _client(url).list_api_keys()
    except ClientError as exc:
        _fail(exc)
    table = Table(
        Column("name", no_wrap=True),  # whole: it is what `apikey revoke` takes
        Column("key starts", no_wrap=True, min_width=9),  # whole: how a person recognises the key
        Column("access key id", no_wrap=True, min_width=20),  # whole: it is AWS_ACCESS_KEY_ID
        Column("endpoints", overflow="fold"),  # on narrow terminals these wrap, never cut
        Column("rate", overflow="fold"),
        Column("created", overflow="fold"),
    )
    for key in keys:
        scope = ", ".join(key["endpoints"]) if key["endpoints"] is not None else "all"
        rate = f"{key['rate_per_s']:g}/s, burst {key['burst']}" if key.get("rate_per_s") else "-"
        created = (key["created_at"] or "")[:19].replace("T", " ")
        table.add_row(key["name"], key["key_prefix"] + "…", key.get("access_key_id") or "-", scope, rate, created)
    Console().print(table)


@apikey.command(name="usage")
@click.argument("name", required=False)
@click.option("--url", help=_URL_HELP)
def apikey_usage(name: str | None, url: str | None) -> None:
    """Calls through the gateway's routes per key, route and day (UTC); NAME: one key's only."""
    from rich.console import Console
    from rich.table import Column, Table

    from modelhost.client import ClientError

    try:
        rows = _client(url).usage(name)
    except ClientError as exc:
        _fail(exc)
    if not rows:
        click.echo(f"no calls with key {name} yet" if name else "no calls with an API key yet", err=True)
        return
    table = Table(
        Column("key", no_wrap=True),
        Column("route", no_wrap=True),
        "day",
        Column("calls", justify="right"),
        show_footer=True,
    )
    for row in rows:
        table.add_row(row["api_key"], row["route"], row["day"], str(row["calls"]))
    table.columns[0].footer = "total"
    table.columns[3].footer = str(sum(row["calls"] for row in rows))
    Console().print(table)


@apikey.command(name="revoke")
@click.argument("name")
@click.option("--url", help=_URL_HELP)
def apikey_revoke(name: str, url: str | None) -> None:
    """Revoke key NAME: invocations with it are refused from now on."""
    from modelhost.client import ClientError

    try:
        _client(url).revoke_api_key(name)
    except ClientError as exc:
        _fail(exc)
    click.echo(f"revoked {name}", err=True)


COMMANDS = [up, deploy, update, invoke, list_endpoints, describe, logs, rm, access, apikey]
