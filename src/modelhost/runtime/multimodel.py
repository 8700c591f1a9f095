"""Multi-model endpoints: one variant serving many artifacts under a prefix, each loaded on first use.

SageMaker's ``MultiModel`` mode: the model's artifact URI is a prefix (a folder, ``file://`` or
``s3://bucket/prefix/``) and a request names its model with ``X-Amzn-SageMaker-Target-Model``
(a path under the prefix, e.g. ``churn-v3.tar.gz``). The first request for a target starts a
model server for it (forked by the launcher, one worker unless the model's environment says
otherwise) and waits for it; later requests go straight to it. Past ``MODELHOST_MME_MAX_MODELS``
loaded models, or ``MODELHOST_MME_MAX_MEMORY_MB`` of resident memory, the least recently used
one is stopped. A target's server that dies is forgotten: the next request loads it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from modelhost.artifacts import artifact_exists
from modelhost.control.resources import Model
from modelhost.errors import ArtifactError
from modelhost.runtime.instance import Instance, InstanceSpec

log = logging.getLogger("modelhost.runtime")

MODE_MULTI = "MultiModel"
_TARGET = re.compile(r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,1023}$")
_PAGE = 4096


class TargetModelError(Exception):
    """A target model name that is not allowed, or a target that could not be loaded."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_target(target: str) -> str:
    if not _TARGET.fullmatch(target) or any(part in ("", ".", "..") for part in target.split("/")):
        raise TargetModelError(
            f"target model {target[:80]!r}: use a relative path under the endpoint's prefix "
            "(letters, digits, '.', '_', '-', '/'; no '..')"
        )
    return target


def target_uri(prefix: str, target: str) -> str:
    return prefix.rstrip("/") + "/" + check_target(target)


class MultiModelHost:
    """The models of one multi-model instance: loaded on demand, least recently used unloaded."""

    def __init__(
        self,
        spec: InstanceSpec,
        make_instance: Callable[[InstanceSpec, str], Instance],
        *,
        max_models: int,
        max_memory_mb: float | None,
        s3_endpoint_url: str | None = None,
    ) -> None:
        self.spec = spec
        self._make_instance = make_instance  # (spec, a file-safe name for the target) -> Instance
        self._max_models = max_models
        self._max_memory_mb = max_memory_mb
        self._s3_endpoint_url = s3_endpoint_url  # to look a target up before a server is started for it
        self.loaded: OrderedDict[str, Instance] = OrderedDict()  # least recently used first
        self._loading: dict[str, asyncio.Task[Instance]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._loads = 0

    @property
    def in_flight(self) -> int:
        return sum(instance.in_flight for instance in self.loaded.values())

    def ready(self, target: str) -> Instance | None:
        """The target's healthy instance, marked most recently used (None: it must be loaded)."""
        instance = self.loaded.get(target)
        if instance is None or not instance.pools:
            return None
        self.loaded.move_to_end(target)
        return instance

    def load(self, target: str) -> asyncio.Task[Instance]:
        """Start (or join) loading ``target``; the task ends with its healthy instance."""
        check_target(target)
        task = self._loading.get(target)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(target))
            self._loading[target] = task
            task.add_done_callback(lambda _: self._loading.pop(target, None))
        return task

    async def _load(self, target: str) -> Instance:
        model: Model = replace(self.spec.model, artifact_uri=target_uri(self.spec.model.artifact_uri, target))
        await self._check_exists(target, model.artifact_uri)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target)
        instance = self._make_instance(replace(self.spec, model=model), safe)
        # A folder of its own per load: a dying or evicted server of the same target may still
        # be removing its folder while this one starts.
        self._loads += 1
        instance.run_dir = instance.run_dir.with_name(f"{instance.run_dir.name}-{self._loads}")
        log.info("multi-model %s: loading %s", self.spec.label, target)
        try:
            await instance.start()
        except Exception as exc:
            instance.remove_files()
            message = getattr(exc, "message", str(exc))
            raise TargetModelError(f"target model {target!r} could not be loaded: {message}") from exc
        if self._stopped:
            await instance.stop(grace_s=5)
            raise TargetModelError("the endpoint is being stopped")
        self.loaded[target] = instance
        watcher = asyncio.get_running_loop().create_task(self._forget_when_gone(target, instance))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        await self._evict(keep=target)
        return instance

    async def _check_exists(self, target: str, uri: str) -> None:
        """No process (and no log file) for a target that is not there: anyone may name one."""
        try:
            found = await asyncio.to_thread(artifact_exists, uri, self._s3_endpoint_url)
        except ArtifactError as exc:
            log.warning("multi-model %s: cannot look %s up (%s); loading it anyway", self.spec.label, target, exc)
            return
        if not found:
            raise TargetModelError(f"target model {target!r} could not be loaded: no model at {uri!r}")

    async def _forget_when_gone(self, target: str, instance: Instance) -> None:
        await instance.wait_exit()
        if self.loaded.get(target) is instance:
            log.warning(
                "multi-model %s: the server of %s exited; it loads again on its next request", self.spec.label, target
            )
            del self.loaded[target]
            await instance.kill()
            instance.remove_files()

    async def _evict(self, keep: str) -> None:
        while len(self.loaded) > 1 and (
            len(self.loaded) > self._max_models
            or (self._max_memory_mb is not None and self.memory_mb() > self._max_memory_mb)
        ):
            target = next(iter(self.loaded))
            if target == keep:
                break
            instance = self.loaded.pop(target)
            log.info("multi-model %s: unloading %s (least recently used)", self.spec.label, target)
            instance.mark_down()
            await instance.drain(timeout_s=instance.request_timeout_s)
            await instance.stop(grace_s=10)
            instance.remove_files()

    def memory_mb(self) -> float:
        """Resident memory of every loaded model's processes (masters and workers)."""
        total = 0
        for instance in self.loaded.values():
            if instance.pid is not None:
                total += _tree_rss_pages(instance.pid)
        return total * _PAGE / 1024 / 1024

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._loading.values()):
            task.cancel()
        for watcher in list(self._watchers):
            watcher.cancel()
        instances, self.loaded = list(self.loaded.values()), OrderedDict()
        await asyncio.gather(*(i.drain(i.request_timeout_s) for i in instances))
        await asyncio.gather(*(i.stop(grace_s=10) for i in instances))
        for instance in instances:
            instance.remove_files()


def _tree_rss_pages(pid: int) -> int:
    pages = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pages += _tree_rss_pages(int(child))
    return pages
