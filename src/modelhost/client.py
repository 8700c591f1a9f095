"""``modelhost.Client``: the Python SDK of a running platform (``modelhost up``); the CLI is built on it.

    client = Client()                                   # $MODELHOST_URL or http://127.0.0.1:7070
    client.deploy("./sentiment", "sentiment")           # upload, create, wait for InService
    client.invoke("sentiment", ["what a great day"]).json()

Every failed call raises ``ClientError`` with the server's status, error type and message.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from modelhost.artifacts.extract import extract_archive, is_archive
from modelhost.artifacts.pack import pack
from modelhost.errors import ModelhostError
from modelhost.platform.defaults import DEFAULT_URL

__all__ = ["Client", "ClientError", "Invocation"]

_CHUNK = 1 << 20


class ClientError(ModelhostError):
    """The platform refused a call (or could not be reached: status 0)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status=status)
        self.code = code


def _segment(name: str) -> str:
    """``name`` as one path segment: a ``/`` or a dot segment in a name must not move the request
    elsewhere (``rm ../api-keys/k1`` would otherwise revoke key k1)."""
    if not name or "/" in name:
        raise ClientError(400, "ValidationError", f"{name!r} is not a name: names are not empty and have no '/'")
    quoted = quote(name, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


@dataclass(frozen=True)
class Invocation:
    """A successful invocation's answer."""

    body: bytes
    content_type: str
    variant: str | None

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Client:
    def __init__(self, url: str | None = None, *, token: str | None = None, timeout_s: float = 120.0) -> None:
        self.url = (url or os.environ.get("MODELHOST_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("MODELHOST_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(0, "ConnectionError", f"cannot reach modelhost at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise ClientError(502, "BadResponse", f"{method} {path} answered {kind}, not JSON") from None

    # -- models, configs, endpoints -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/api/v1/health"))

    def create_model(self, name: str, artifact_uri: str, **fields: Any) -> dict[str, Any]:
        return dict(self._json("POST", "/api/v1/models", json={"name": name, "artifact_uri": artifact_uri, **fields}))

    def describe_model(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/v1/models/{_segment(name)}"))

    def list_models(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/models")["models"])

    def delete_model(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/models/{_segment(name)}")

    def create_endpoint_config(self, name: str, variants: list[Mapping[str, Any]], **fields: Any) -> dict[str, Any]:
        body = {"name": name, "variants": list(variants), **fields}
        return dict(self._json("POST", "/api/v1/endpoint-configs", json=body))

    def describe_endpoint_config(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/v1/endpoint-configs/{_segment(name)}"))

    def list_endpoint_configs(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/endpoint-configs")["endpoint_configs"])

    def delete_endpoint_config(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/endpoint-configs/{_segment(name)}")

    def create_endpoint(self, name: str, config_name: str) -> dict[str, Any]:
        return dict(self._json("POST", "/api/v1/endpoints", json={"name": name, "config_name": config_name}))

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/v1/endpoints/{_segment(name)}"))

    def list_endpoints(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/endpoints")["endpoints"])

    def update_endpoint(
        self, name: str, config_name: str, *, wait: bool = False, timeout_s: float = 600.0
    ) -> dict[str, Any]:
        endpoint = dict(self._json("PUT", f"/api/v1/endpoints/{_segment(name)}", json={"config_name": config_name}))
        if wait:
            return self.wait_in_service(name, timeout_s, config_name=config_name)
        return endpoint

    def delete_endpoint(
        self, name: str, *, with_deployed_resources: bool = False, wait: bool = True, timeout_s: float = 120.0
    ) -> None:
        params = {"with_deployed_resources": "true"} if with_deployed_resources else {}
        self._call("DELETE", f"/api/v1/endpoints/{_segment(name)}", params=params)
        if wait:
            self.wait_deleted(name, timeout_s)

    def set_endpoint_access(self, name: str, *, require_api_key: bool) -> dict[str, Any]:
        body = {"require_api_key": require_api_key}
        return dict(self._json("PUT", f"/api/v1/endpoints/{_segment(name)}/access", json=body))

    def create_api_key(
        self, name: str, endpoints: list[str] | None = None, *, rate: str | None = None, burst: int | None = None
    ) -> dict[str, Any]:
        """A new key; the result's ``key`` is the key itself, shown this once. ``rate`` ("10/s") and
        ``burst`` limit the key over every gateway route."""
        body: dict[str, Any] = {"name": name, "endpoints": endpoints}
        if rate is not None:
            body["rate"] = rate
        if burst is not None:
            body["burst"] = burst
        return dict(self._json("POST", "/api/v1/api-keys", json=body))

    def list_api_keys(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/api-keys")["api_keys"])

    def revoke_api_key(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/api-keys/{_segment(name)}")

    def logs(self, name: str, max_bytes: int = 64 * 1024) -> str:
        return self._call("GET", f"/api/v1/endpoints/{_segment(name)}/logs", params={"max_bytes": max_bytes}).text

    def follow_logs(self, name: str) -> Iterator[bytes]:
        """New log lines of every instance of ``name`` as they are written, until the caller stops."""
        self.describe_endpoint(name)  # a missing endpoint is a ClientError now, not a silent stream
        try:
            with self._http.stream(
                "GET", f"/api/v1/endpoints/{_segment(name)}/logs", params={"follow": "true"}, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise ClientError(0, "ConnectionError", f"lost the log stream from {self.url}: {exc}") from exc

    # -- waiting -----------------------------------------------------------------------------------------
    def wait_in_service(
        self,
        name: str,
        timeout_s: float = 600.0,
        *,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        config_name: str | None = None,
        poll_s: float = 0.05,
    ) -> dict[str, Any]:
        """Until the endpoint is InService (returned) or Failed (ClientError with the reason).

        With ``config_name`` (an update), InService on any other config means the update failed
        and was rolled back: a ClientError too.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            endpoint = self.describe_endpoint(name)
            if on_status is not None:
                on_status(endpoint)
            if endpoint["status"] == "InService":
                if config_name is not None and endpoint["config_name"] != config_name:
                    raise ClientError(500, "UpdateFailed", str(endpoint["failure_reason"]))
                return endpoint
            if endpoint["status"] == "Failed":
                raise ClientError(500, "EndpointFailed", f"endpoint {name} failed: {endpoint['failure_reason']}")
            if time.monotonic() > deadline:
                raise ClientError(
                    504, "Timeout", f"endpoint {name} is still {endpoint['status']} after {timeout_s:g} s"
                )
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 0.2)

    def wait_deleted(self, name: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        poll_s = 0.05
        while True:
            try:
                self.describe_endpoint(name)
            except ClientError as exc:
                if exc.status == 404:
                    return
                raise
            if time.monotonic() > deadline:
                raise ClientError(504, "Timeout", f"endpoint {name} still exists after {timeout_s:g} s")
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 0.2)

    # -- deploy -------------------------------------------------------------------------------------------
    def upload_artifact(
        self, source: str | Path, name: str, *, on_progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Pack a local folder or file into model.tar.gz and store it on the platform; its URI and SHA-256."""
        with tempfile.TemporaryDirectory(prefix="modelhost-pack-") as scratch:
            archive = Path(scratch) / "model.tar.gz"
            try:
                pack(Path(source), archive)
            except ModelhostError as exc:  # a missing or unreadable source: the caller's to fix
                raise ClientError(400, "ArtifactError", str(exc)) from exc
            size = archive.stat().st_size

            def chunks() -> Iterator[bytes]:
                sent = 0
                with archive.open("rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        sent += len(chunk)
                        if on_progress is not None:
                            on_progress(sent, size)
                        yield chunk

            headers = {"content-type": "application/gzip", "content-length": str(size)}
            return dict(self._json("PUT", f"/api/v1/artifacts/{_segment(name)}", content=chunks(), headers=headers))

    def deploy(
        self,
        source: str | Path,
        name: str,
        *,
        framework: str | None = None,
        environment: Mapping[str, str] | None = None,
        instance_count: int = 1,
        require_api_key: bool | None = None,
        wait: bool = True,
        timeout_s: float = 600.0,
        on_progress: Callable[[int, int], None] | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Deploy a local path (uploaded first) or an artifact URI as endpoint ``name``: created, or updated."""
        body: dict[str, Any] = {
            "endpoint_name": name,
            "environment": dict(environment or {}),
            "instance_count": instance_count,
        }
        if framework is not None:
            body["framework"] = framework
        if require_api_key is not None:
            body["require_api_key"] = require_api_key
        location = str(source)
        if "://" in location:
            body["artifact_uri"] = location
        else:
            stored = self.upload_artifact(source, name, on_progress=on_progress)
            body["artifact_uri"], body["artifact_sha256"] = stored["uri"], stored["sha256"]
        deployed = dict(self._json("POST", "/api/v1/deployments", json=body))
        if wait:
            return self.wait_in_service(name, timeout_s, on_status=on_status, config_name=deployed["config_name"])
        return dict(deployed["endpoint"])

    # -- functions and routes --------------------------------------------------------------------------
    def create_function(
        self,
        name: str,
        source: str | Path,
        handler: str,
        *,
        update: bool = False,
        wait: bool = True,
        wait_s: float = 300.0,
        on_progress: Callable[[int, int], None] | None = None,
        **settings: Any,
    ) -> dict[str, Any]:
        """Create (or with ``update``, replace) a function from a local folder (uploaded first) or a URI.

        ``settings``: environment, artifacts (file name -> URI), timeout_s, memory_mb. Waits (up to
        ``wait_s``) until the function is Active, or raises with its failure, unless ``wait`` is False.
        """
        body: dict[str, Any] = {"name": name, "handler": handler, **settings}
        location = str(source)
        if "://" in location:
            body["code_uri"] = location
        else:
            with tempfile.TemporaryDirectory(prefix="modelhost-code-") as scratch:
                folder = Path(source)
                if folder.is_file() and is_archive(folder):  # a Lambda .zip (or .tar.gz): its contents are the code
                    try:
                        folder = extract_archive(folder, Path(scratch) / "code")
                    except ModelhostError as exc:
                        raise ClientError(400, "ArtifactError", str(exc)) from exc
                stored = self.upload_artifact(folder, f"function-{name}", on_progress=on_progress)
            body["code_uri"], body["code_sha256"] = stored["uri"], stored["sha256"]
        if update:
            function = dict(self._json("PUT", f"/api/v1/functions/{_segment(name)}", json=body))
        else:
            function = dict(self._json("POST", "/api/v1/functions", json=body))
        return self.wait_active(name, wait_s) if wait else function

    def wait_active(self, name: str, timeout_s: float = 300.0) -> dict[str, Any]:
        """Until the function is Active; raises if it Failed, or if an update failed and was rolled back."""
        deadline = time.monotonic() + timeout_s
        poll_s = 0.05
        while True:
            function = self.describe_function(name)
            if function["state"] == "Active" and function["failure_reason"]:
                raise ClientError(409, "FunctionUpdateFailed", f"function {name}: {function['failure_reason']}")
            if function["state"] == "Active":
                return function
            if function["state"] == "Failed":
                raise ClientError(409, "FunctionFailed", f"function {name} failed: {function['failure_reason']}")
            if time.monotonic() > deadline:
                raise ClientError(504, "Timeout", f"function {name} is still {function['state']} after {timeout_s:g} s")
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 0.5)

    def describe_function(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/api/v1/functions/{_segment(name)}"))

    def list_functions(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/functions")["functions"])

    def delete_function(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/functions/{_segment(name)}")

    def function_logs(self, name: str, max_bytes: int = 64 * 1024) -> str:
        return self._call("GET", f"/api/v1/functions/{_segment(name)}/logs", params={"max_bytes": max_bytes}).text

    def create_route(self, method: str, path: str, **settings: Any) -> dict[str, Any]:
        """``settings``: function or endpoint (the target), api_key_required, rate ("50/s"), burst, max_body_bytes."""
        return dict(self._json("POST", "/api/v1/routes", json={"method": method, "path": path, **settings}))

    def update_route(self, method: str, path: str, **settings: Any) -> dict[str, Any]:
        """Replace route METHOD PATH's target and settings (those left out go back to their defaults)."""
        return dict(self._json("PUT", "/api/v1/routes", json={"method": method, "path": path, **settings}))

    def list_routes(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/routes")["routes"])

    def delete_route(self, method: str, path: str) -> None:
        self._call("DELETE", "/api/v1/routes", params={"method": method, "path": path})

    def usage(self, api_key: str | None = None) -> list[dict[str, Any]]:
        """Calls through the gateway's routes per API key, route and day (UTC); ``api_key``: one key's."""
        params = {"api_key": api_key} if api_key is not None else None
        return list(self._json("GET", "/api/v1/usage", params=params)["usage"])

    # -- invoke -------------------------------------------------------------------------------------------
    def invoke(
        self,
        name: str,
        data: Any = None,
        *,
        body: bytes | str | None = None,
        content_type: str = "application/json",
        accept: str | None = None,
        target_variant: str | None = None,
        target_model: str | None = None,
        custom_attributes: str | None = None,
        api_key: str | None = None,
    ) -> Invocation:
        """Invoke endpoint ``name`` with ``data`` (sent as JSON) or a raw ``body``."""
        payload = body if body is not None else orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
        headers = {"content-type": content_type}
        if accept:
            headers["accept"] = accept
        if target_variant:
            headers["x-amzn-sagemaker-target-variant"] = target_variant
        if target_model:
            headers["x-amzn-sagemaker-target-model"] = target_model
        if custom_attributes:
            headers["x-amzn-sagemaker-custom-attributes"] = custom_attributes
        if api_key:
            headers["x-api-key"] = api_key
        response = self._call("POST", f"/endpoints/{_segment(name)}/invocations", content=payload, headers=headers)
        return Invocation(
            response.content,
            response.headers.get("content-type", ""),
            response.headers.get("x-amzn-invoked-production-variant"),
        )


def _error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
        # "Message": an invocation's error, in SageMaker's runtime shape; "message": the API's
        code, message = str(body.get("error", "Error")), str(body.get("Message", body.get("message", response.text)))
    except ValueError:
        code, message = "Error", response.text or response.reason_phrase
    return ClientError(response.status_code, code, message)
