"""``modelhost function ...`` and ``modelhost route ...``: the Lambda + API Gateway layer from the shell.

modelhost function create churn-api ./churn_fn --handler app.lambda_handler --env ENDPOINT_NAME=churn
modelhost route create POST /v1/churn --function churn-api --api-key-required --rate 50/s --burst 100
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import click

from modelhost.cli.platform import _URL_HELP, _client, _fail, _parse_env, for_terminal


def _parse_artifacts(values: tuple[str, ...]) -> dict[str, str]:
    """``NAME=URI`` or a bare URI (named after its last path segment)."""
    artifacts = {}
    for value in values:
        name, sep, uri = value.partition("=")
        if not sep or "://" in name or "/" in name:
            uri, name = value, PurePosixPath(value.split("://", 1)[-1]).name
        if not name or not uri:
            raise click.BadParameter(f"{value!r}: use NAME=URI or a URI", param_hint="--artifact")
        artifacts[name] = uri
    return artifacts


def _json_argument(option: str, value: str) -> Any:
    """JSON given inline, or ``@path`` to a file of it."""
    import json

    try:
        if value.startswith("@"):
            with open(value[1:], encoding="utf-8") as handle:
                return json.load(handle)
        return json.loads(value)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{value!r}: {exc}", param_hint=option) from None


@click.group()
def function() -> None:
    """Lambda-style functions: handler(event, context) with its code, environment and artifacts."""


_function_options = [
    click.argument("name"),
    click.argument("source"),
    click.option("--handler", required=True, help="module.function, e.g. app.lambda_handler."),
    click.option("--env", "env_pairs", multiple=True, help="KEY=VALUE for the function (repeatable)."),
    click.option(
        "--artifact",
        "artifact_values",
        multiple=True,
        help="A file the handler reads, NAME=URI or a URI (s3://, file://, a path on the platform); "
        "fetched into $MODELHOST_FUNCTION_ARTIFACTS_DIR.",
    ),
    click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True, help="Seconds per call."),
    click.option("--memory", "memory_mb", type=int, default=512, show_default=True, help="MB the handler may use."),
    click.option("--url", help=_URL_HELP),
]


def _with_function_options(command: Any) -> Any:
    for option in reversed(_function_options):
        command = option(command)
    return command


def _create(update: bool, name: str, source: str, handler: str, url: str | None, **options: Any) -> None:
    from modelhost.client import ClientError

    try:
        created = _client(url).create_function(
            name,
            source,
            handler,
            update=update,
            environment=_parse_env(options["env_pairs"]),
            artifacts=_parse_artifacts(options["artifact_values"]),
            timeout_s=options["timeout_s"],
            memory_mb=options["memory_mb"],
        )
    except ClientError as exc:
        _fail(exc)
    click.echo(f"function {name} is {created['state']} (handler {created['handler']})", err=True)


@function.command(name="create")
@_with_function_options
def function_create(name: str, source: str, handler: str, url: str | None, **options: Any) -> None:
    """Create function NAME from SOURCE (a local folder, uploaded; or a URI) and wait until it is Active."""
    _create(False, name, source, handler, url, **options)


@function.command(name="update")
@_with_function_options
def function_update(name: str, source: str, handler: str, url: str | None, **options: Any) -> None:
    """Replace function NAME's code and settings; the new instance serves before the old one stops."""
    _create(True, name, source, handler, url, **options)


@function.command(name="ls")
@click.option("--url", help=_URL_HELP)
def function_list(url: str | None) -> None:
    """List the functions and their state."""
    from rich.console import Console
    from rich.table import Table

    from modelhost.client import ClientError

    try:
        functions = _client(url).list_functions()
    except ClientError as exc:
        _fail(exc)
    table = Table("name", "state", "handler", "timeout", "memory")
    for f in functions:
        table.add_row(f["name"], f["state"], f["handler"], f"{f['timeout_s']:g} s", f"{f['memory_mb']} MB")
    Console().print(table)


@function.command(name="logs")
@click.argument("name")
@click.option("--url", help=_URL_HELP)
def function_logs(name: str, url: str | None) -> None:
    """Print the end of function NAME's log (what its handler printed, tracebacks)."""
    from modelhost.client import ClientError

    try:
        click.echo(for_terminal(_client(url).function_logs(name)), nl=False)
    except ClientError as exc:
        _fail(exc)


@function.command(name="rm")
@click.argument("name")
@click.option("--url", help=_URL_HELP)
def function_remove(name: str, url: str | None) -> None:
    """Delete function NAME (refused while a route calls it)."""
    from modelhost.client import ClientError

    try:
        _client(url).delete_function(name)
    except ClientError as exc:
        _fail(exc)
    click.echo(f"function {name} deleted", err=True)


@click.group()
def route() -> None:
    """Gateway routes: METHOD + path to a function or an endpoint, with API keys and rate limits."""


_route_options = [
    click.argument("method"),
    click.argument("path"),
    click.option("--function", "function_name", help="The function it calls."),
    click.option("--endpoint", help="The endpoint it invokes with the request body."),
    click.option("--api-key-required", is_flag=True, help="Calls need an x-api-key (modelhost apikey create)."),
    click.option("--rate", help="Rate limit, e.g. 50/s or 600/m (per API key when keys are required)."),
    click.option("--burst", type=int, help="Requests allowed at once (default: a second's worth)."),
    click.option("--max-body-mb", type=float, default=6.0, show_default=True, help="Largest request body."),
    click.option("--cors-origin", "cors_origins", multiple=True, help="A browser origin that may call it (or *)."),
    click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False), help="JSON Schema file."),
    click.option("--example", help="An example body (JSON, or @file.json) for the OpenAPI page."),
    click.option(
        "--response-schema",
        "response_schema_file",
        type=click.Path(exists=True, dir_okay=False),
        help="JSON Schema file of a 200's body, for the OpenAPI page.",
    ),
    click.option("--response-example", help="An example 200 body (JSON, or @file.json) for the OpenAPI page."),
    click.option("--summary", help="One line for the OpenAPI page."),
    click.option("--url", help=_URL_HELP),
]


def _with_route_options(command: Any) -> Any:
    for option in reversed(_route_options):
        command = option(command)
    return command


def _route_settings(function_name: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """The options as the API's route fields; those not given are left to the server's defaults."""
    settings: dict[str, Any] = {
        "api_key_required": options["api_key_required"],
        "max_body_bytes": int(options["max_body_mb"] * 1024 * 1024),
    }
    if function_name is not None:
        settings["function"] = function_name
    for name in ("endpoint", "rate", "burst", "summary"):
        if options[name] is not None:
            settings[name] = options[name]
    if options["cors_origins"]:
        settings["cors"] = {"allow_origins": list(options["cors_origins"])}
    if options["schema_file"] is not None:
        settings["request_schema"] = _json_argument("--schema", "@" + options["schema_file"])
    if options["example"] is not None:
        settings["example"] = _json_argument("--example", options["example"])
    if options["response_schema_file"] is not None:
        settings["response_schema"] = _json_argument("--response-schema", "@" + options["response_schema_file"])
    if options["response_example"] is not None:
        settings["response_example"] = _json_argument("--response-example", options["response_example"])
    return settings


def _put_route(
    update: bool, method: str, path: str, function_name: str | None, url: str | None, **options: Any
) -> None:
    from modelhost.client import ClientError

    settings = _route_settings(function_name, options)
    client = _client(url)
    try:
        if update:
            done = client.update_route(method.upper(), path, **settings)
        else:
            done = client.create_route(method.upper(), path, **settings)
    except ClientError as exc:
        _fail(exc)
    click.echo(f"route {done['method']} {done['path']} -> {done['target_kind']} {done['target']}", err=True)


@route.command(name="create")
@_with_route_options
def route_create(method: str, path: str, function_name: str | None, url: str | None, **options: Any) -> None:
    """Create route METHOD PATH (e.g. POST /v1/churn, GET /v1/items/{id})."""
    _put_route(False, method, path, function_name, url, **options)


@route.command(name="update")
@_with_route_options
def route_update(method: str, path: str, function_name: str | None, url: str | None, **options: Any) -> None:
    """Replace route METHOD PATH's target and settings; options left out go back to their defaults."""
    _put_route(True, method, path, function_name, url, **options)


@route.command(name="ls")
@click.option("--url", help=_URL_HELP)
def route_list(url: str | None) -> None:
    """List the routes."""
    from rich.console import Console
    from rich.table import Table

    from modelhost.client import ClientError

    try:
        routes = _client(url).list_routes()
    except ClientError as exc:
        _fail(exc)
    table = Table("method", "path", "target", "API key", "rate")
    for r in routes:
        rate = f"{r['rate_per_s']:g}/s, burst {r['burst']}" if r["rate_per_s"] else "-"
        table.add_row(
            r["method"], r["path"], f"{r['target_kind']} {r['target']}", "yes" if r["api_key_required"] else "-", rate
        )
    Console().print(table)


@route.command(name="rm")
@click.argument("method")
@click.argument("path")
@click.option("--url", help=_URL_HELP)
def route_remove(method: str, path: str, url: str | None) -> None:
    """Delete route METHOD PATH."""
    from modelhost.client import ClientError

    try:
        _client(url).delete_route(method.upper(), path)
    except ClientError as exc:
        _fail(exc)
    click.echo(f"route {method.upper()} {path} deleted", err=True)


COMMANDS = [function, route]
