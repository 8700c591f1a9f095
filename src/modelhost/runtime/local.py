"""The local runtime: endpoints' deployments as processes on this machine, and the table the front door reads.

``deploy`` starts the new deployment completely before it takes the old one's place in the
table, and only then retires the old one: an update never leaves a moment without healthy
instances, and a failed start leaves the old deployment serving (the rollback).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from modelhost.control.resources import EndpointConfig, Model
from modelhost.runtime.deployment import Deployment, build_deployment
from modelhost.runtime.instance import read_tail
from modelhost.runtime.launcher import Launcher

log = logging.getLogger("modelhost.runtime")


class LocalRuntime:
    def __init__(
        self,
        state_dir: Path,
        *,
        environment: Mapping[str, str] | None = None,
        load_timeout_s: float = 300.0,
        request_timeout_s: float = 60.0,
        launcher: Launcher | None = None,
        owns_launcher: bool = True,
        handoff: bool = False,
    ) -> None:
        self._launcher = launcher
        self._handoff = handoff  # instances take client connections the front door hands over
        self._owns_launcher = owns_launcher  # False: another runtime shares it and stops it
        self.run_root = state_dir / "run"
        self.log_root = state_dir / "logs"
        self._environment = dict(environment or {})
        self._load_timeout_s = load_timeout_s
        self._request_timeout_s = request_timeout_s
        self._deployments: dict[str, Deployment] = {}
        # What is left of a previous run (extracted artifacts of instances that no longer exist).
        shutil.rmtree(self.run_root, ignore_errors=True)

    def route(self, endpoint: str) -> Deployment | None:
        """The deployment serving ``endpoint`` now (the front door's lookup, once per request)."""
        return self._deployments.get(endpoint)

    def deployments(self) -> dict[str, Deployment]:
        return dict(self._deployments)

    async def deploy(
        self,
        endpoint: str,
        config: EndpointConfig,
        models: Mapping[str, Model],
        on_failure: Callable[[str], None],
    ) -> None:
        """Bring ``config`` up for ``endpoint``, then switch traffic to it and retire the old deployment."""
        deployment = build_deployment(
            endpoint,
            config,
            models,
            run_root=self.run_root,
            log_root=self.log_root,
            environment=self._environment,
            load_timeout_s=self._load_timeout_s,
            request_timeout_s=self._request_timeout_s,
            launcher=self._launcher,
            handoff=self._handoff,
        )
        deployment.on_failure = on_failure
        await deployment.start()  # InstanceFailed leaves the old deployment in place
        previous = self._deployments.get(endpoint)
        self._deployments[endpoint] = deployment
        log.info("endpoint %s: serving config %s", endpoint, config.name)
        if previous is not None:
            await self._retire(previous)

    def reweigh(self, endpoint: str, config: EndpointConfig) -> bool:
        """New variant weights for the running deployment, in place (False: the endpoint does not run)."""
        deployment = self._deployments.get(endpoint)
        if deployment is None:
            return False
        deployment.reweigh(config)
        return True

    async def remove(self, endpoint: str) -> None:
        """Stop the endpoint's instances and delete every file the runtime made for it."""
        deployment = self._deployments.pop(endpoint, None)
        if deployment is not None:
            await self._retire(deployment)
        shutil.rmtree(self.run_root / endpoint, ignore_errors=True)
        shutil.rmtree(self.log_root / endpoint, ignore_errors=True)

    async def shutdown(self) -> None:
        deployments, self._deployments = list(self._deployments.values()), {}
        await asyncio.gather(*(self._retire(d) for d in deployments))
        if self._launcher is not None and self._owns_launcher:
            await self._launcher.stop()

    async def _retire(self, deployment: Deployment) -> None:
        instances = deployment.instances  # before retiring: a multi-model host forgets its own
        await deployment.retire(drain_timeout_s=self._request_timeout_s + 5)
        for instance in instances:
            instance.remove_files()
        if deployment.run_dir is not None:
            shutil.rmtree(deployment.run_dir, ignore_errors=True)

    async def follow_logs(self, endpoint: str, every_s: float = 0.5) -> AsyncIterator[bytes]:
        """New lines of every instance log of ``endpoint`` as they are written, each prefixed with
        its instance (``[AllTraffic-0] ...``); logs of instances that start later are picked up."""
        folder = self.log_root / endpoint
        offsets = {path: path.stat().st_size for path in folder.glob("*.log")} if folder.is_dir() else {}
        partial: dict[Path, bytes] = {}
        while True:
            out = []
            for path in sorted(folder.glob("*.log")) if folder.is_dir() else []:
                start = offsets.get(path, 0)
                try:
                    with path.open("rb") as handle:
                        handle.seek(start)
                        data = handle.read(1 << 20)
                except FileNotFoundError:
                    continue
                offsets[path] = start + len(data)
                lines = (partial.pop(path, b"") + data).split(b"\n")
                if lines[-1]:
                    partial[path] = lines[-1]
                out += [b"[" + path.stem.encode() + b"] " + line + b"\n" for line in lines[:-1]]
            if out:
                yield b"".join(out)
            await asyncio.sleep(every_s)

    def logs(self, endpoint: str, max_bytes: int = 64 * 1024) -> str:
        """The end of each instance log of ``endpoint``, one section per instance."""
        folder = self.log_root / endpoint
        if not folder.is_dir():
            return ""
        sections = []
        for path in sorted(folder.glob("*.log")):
            sections.append(f"==> {path.stem} <==\n{read_tail(path, max_bytes)}")
        return "\n".join(sections)
