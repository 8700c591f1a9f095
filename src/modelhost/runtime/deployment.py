"""The running form of an endpoint config: each variant's instances, started together and kept alive.

start()      every instance of every variant up and healthy, or none left running
supervise    an instance that dies is taken out of rotation and restarted with backoff;
             after RESTART_LIMIT failed restarts in a row its variant is reported failed
retire()     out of rotation, in-flight requests answered, processes stopped
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from bisect import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path

from modelhost.control.resources import EndpointConfig, Model
from modelhost.frontdoor.upstream import UpstreamPool
from modelhost.runtime.instance import Instance, InstanceFailed, InstanceSpec, InstanceState
from modelhost.runtime.launcher import Launcher
from modelhost.runtime.multimodel import MODE_MULTI, MultiModelHost

log = logging.getLogger("modelhost.runtime")

RESTART_LIMIT = 5  # failed restarts in a row before the failure is reported
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
STABLE_S = 30.0  # an instance healthy this long has its restart count reset


@dataclass
class Variant:
    name: str
    weight: float
    instances: list[Instance]  # a single-model variant's instances
    hosts: list[MultiModelHost] = field(default_factory=list)  # a multi-model variant's instead
    model_name: str = ""

    @property
    def multi_model(self) -> bool:
        return bool(self.hosts)

    def pick_host(self) -> MultiModelHost:
        """The multi-model instance with the fewest requests in flight."""
        return min(self.hosts, key=lambda host: host.in_flight)

    def pick(self, exclude: Sequence[Instance] = ()) -> tuple[Instance, UpstreamPool] | None:
        """The healthy worker (of any instance not excluded) with the fewest requests in flight."""
        best: tuple[Instance, UpstreamPool] | None = None
        for instance in self.instances:
            if instance in exclude:
                continue
            pool = instance.least_busy()
            if pool is not None and (best is None or pool.in_flight < best[1].in_flight):
                best = (instance, pool)
        return best


@dataclass
class Deployment:
    endpoint: str
    config: EndpointConfig
    variants: list[Variant]
    on_failure: Callable[[str], None] = lambda reason: None
    run_dir: Path | None = None  # this deployment's folder of instance folders
    _cumulative: list[float] = field(default_factory=list)  # of the weights of ``_weighted``
    _weighted: list[Variant] = field(default_factory=list)  # the variants with a weight above 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _retired: bool = False

    def __post_init__(self) -> None:
        self._weigh()

    def _weigh(self) -> None:
        """A variant of weight 0 gets no traffic, whatever the float rounding of the others' sums."""
        self._weighted = [v for v in self.variants if v.weight > 0] or list(self.variants)
        self._cumulative = list(accumulate(v.weight for v in self._weighted))

    def is_retired(self) -> bool:
        return self._retired

    @property
    def instances(self) -> list[Instance]:
        """Every running instance, a multi-model variant's loaded models included."""
        found = [instance for variant in self.variants for instance in variant.instances]
        for variant in self.variants:
            for host in variant.hosts:
                found.extend(host.loaded.values())
        return found

    @property
    def hosts(self) -> list[MultiModelHost]:
        return [host for variant in self.variants for host in variant.hosts]

    # -- routing -------------------------------------------------------------------------------------
    def choose_variant(self, rand: Callable[[], float] = random.random) -> Variant:
        """A variant drawn in proportion to the weights."""
        total = self._cumulative[-1]
        index = bisect(self._cumulative, rand() * total)
        return self._weighted[min(index, len(self._weighted) - 1)]

    def reweigh(self, config: EndpointConfig) -> None:
        """Take the weights of ``config`` (same variants, other weights): traffic shifts with the next request."""
        weights = {v.variant_name: v.initial_weight for v in config.variants}
        for variant in self.variants:
            variant.weight = weights.get(variant.name, variant.weight)
        self.config = config
        self._weigh()

    def variant(self, name: str) -> Variant | None:
        for variant in self.variants:
            if variant.name == name:
                return variant
        return None

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Every instance healthy, or InstanceFailed (the first failure's message) with none left running.

        A multi-model variant starts nothing here: its models load on their first request.
        """
        results = await asyncio.gather(*(i.start() for i in self.instances), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await asyncio.gather(*(i.stop(grace_s=5.0) for i in self.instances))
            first = failures[0]
            if isinstance(first, InstanceFailed):
                raise first
            raise InstanceFailed(f"an instance failed to start: {first!r}") from first
        for instance in self.instances:
            self._watch(instance)

    def _watch(self, instance: Instance) -> None:
        task = asyncio.create_task(self._supervise(instance), name=f"supervise {instance.spec.label}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self, instance: Instance) -> None:
        healthy_since = time.monotonic()
        while not self.is_retired():
            code = await instance.wait_exit()
            if self.is_retired() or instance.state is InstanceState.STOPPED:
                return
            await instance.kill()  # out of rotation, and nothing of it left running
            if time.monotonic() - healthy_since > STABLE_S:
                instance.restarts = 0
            log.warning("instance %s: exited with code %d; restarting it", instance.spec.label, code)
            while not self.is_retired():
                instance.state = InstanceState.RESTARTING
                await asyncio.sleep(BACKOFF_S[min(instance.restarts, len(BACKOFF_S) - 1)])
                instance.restarts += 1
                if self.is_retired():
                    return
                try:
                    await instance.start()
                except InstanceFailed as exc:
                    log.warning("instance %s: restart %d failed", instance.spec.label, instance.restarts)
                    if instance.restarts >= RESTART_LIMIT:
                        instance.state = InstanceState.FAILED
                        self.on_failure(f"instance {instance.spec.label} failed {instance.restarts} restarts: {exc}")
                        return
                    continue
                healthy_since = time.monotonic()
                break

    async def retire(self, drain_timeout_s: float = 60.0, grace_s: float = 30.0) -> None:
        """Out of rotation first (the caller has already routed traffic away), then stopped."""
        self._retired = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(host.stop() for host in self.hosts))
        await asyncio.gather(*(i.drain(drain_timeout_s) for i in self.instances))
        await asyncio.gather(*(i.stop(grace_s) for i in self.instances))


def build_deployment(
    endpoint: str,
    config: EndpointConfig,
    models: Mapping[str, Model],
    *,
    run_root: Path,
    log_root: Path,
    environment: Mapping[str, str],
    load_timeout_s: float,
    request_timeout_s: float,
    launcher: Launcher | None = None,
    handoff: bool = False,
) -> Deployment:
    """Instances for every variant of ``config`` (not started), laid out under the endpoint's folders."""
    generation = time.strftime("%Y%m%dT%H%M%S") + f"-{random.randrange(16**4):04x}"

    def make_instance(spec: InstanceSpec, suffix: str = "", handoff: bool = False) -> Instance:
        name = f"{spec.variant}-{spec.index}" + (f"-{suffix}" if suffix else "")
        return Instance(
            spec,
            run_dir=run_root / endpoint / generation / name,
            log_path=log_root / endpoint / f"{name}.log",
            environment=environment,
            load_timeout_s=load_timeout_s,
            request_timeout_s=request_timeout_s,
            launcher=launcher,
            handoff=handoff,
        )

    variants = []
    for variant in config.variants:
        model = models[variant.model_name]
        specs = [
            InstanceSpec(endpoint, variant.variant_name, index, model)
            for index in range(variant.initial_instance_count)
        ]
        if model.mode == MODE_MULTI:
            limits = model.environment
            one_worker = replace(model, environment={"MODELHOST_WORKERS": "1", **model.environment})
            hosts = [
                MultiModelHost(
                    replace(spec, model=one_worker),
                    make_instance,
                    max_models=int(limits.get("MODELHOST_MME_MAX_MODELS", "16")),
                    max_memory_mb=float(limits["MODELHOST_MME_MAX_MEMORY_MB"])
                    if "MODELHOST_MME_MAX_MEMORY_MB" in limits
                    else None,
                    s3_endpoint_url=limits.get("MODELHOST_S3_ENDPOINT_URL")
                    or environment.get("MODELHOST_S3_ENDPOINT_URL"),
                )
                for spec in specs
            ]
            variants.append(Variant(variant.variant_name, variant.initial_weight, [], hosts, model.name))
        else:
            instances = [make_instance(spec, handoff=handoff) for spec in specs]
            variants.append(Variant(variant.variant_name, variant.initial_weight, instances, [], model.name))
    return Deployment(endpoint, config, variants, run_dir=run_root / endpoint / generation)
