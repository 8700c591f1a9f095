"""The control plane's orchestration: stored resources turned into running endpoints and back.

Requests change the store at once and return (as SageMaker's API does: CreateEndpoint answers
while the endpoint is Creating); the slow part, starting or stopping processes, runs as a
background task per endpoint, which reports the outcome as the endpoint's status. The store is
the truth: ``recover`` brings every endpoint back after a restart of the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from modelhost.control.access import KEY_PREFIX, AccessTable, key_sha256
from modelhost.control.artifact_store import ArtifactStore
from modelhost.control.lifecycle import LifecycleTasks
from modelhost.control.resources import (
    DEPLOYED_FOR_TAG,
    ApiKey,
    DataCaptureConfig,
    Endpoint,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
    VariantOverride,
    check_name,
    with_overrides,
)
from modelhost.control.store import StateStore
from modelhost.errors import (
    ModelhostError,
    ResourceExists,
    ResourceInUse,
    ResourceLimitExceeded,
    ResourceNotFound,
    ValidationFailed,
)
from modelhost.runtime.local import LocalRuntime

log = logging.getLogger("modelhost.control")

T = TypeVar("T")
_WAS_SERVING = (EndpointStatus.IN_SERVICE, EndpointStatus.UPDATING, EndpointStatus.SYSTEM_UPDATING)


@dataclass(frozen=True)
class DeployRequest:
    """``modelhost deploy``: a model, a one-variant config and an endpoint (created or updated) in one step."""

    endpoint_name: str
    artifact_uri: str
    artifact_sha256: str | None = None
    framework: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    instance_count: int = 1
    data_capture: DataCaptureConfig = field(default_factory=DataCaptureConfig)


class Controller:
    def __init__(
        self,
        store: StateStore,
        runtime: LocalRuntime,
        artifacts: ArtifactStore,
        *,
        signing_master: bytes | None = None,
        admin_token: str | None = None,
        max_instances: int | None = None,
    ) -> None:
        self._max_instances = max_instances  # over every endpoint; None: no limit
        self.store = store
        self.runtime = runtime
        self.artifacts = artifacts
        self._tasks = LifecycleTasks("endpoint", log)  # the running lifecycle task per endpoint
        self._statuses: dict[str, str] = {}  # last known status per endpoint, for the front door
        self.access = AccessTable(signing_master, admin_token)
        self._updating: dict[str, str] = {}  # endpoint -> the config an update in progress moves it to

    def known_status(self, name: str) -> str | None:
        """The endpoint's last known status, without a database call (None: no such endpoint)."""
        return self._statuses.get(name)

    def _note(self, endpoint: Endpoint) -> Endpoint:
        self._statuses[endpoint.name] = endpoint.status.value
        self.access.set_protected(endpoint.name, endpoint.require_api_key)
        return endpoint

    async def _db(self, call: Callable[..., T], *args: object) -> T:
        """A store call off the event loop (the front door shares the loop)."""
        return await asyncio.to_thread(call, *args)

    # -- models and configs: store operations ------------------------------------------------------
    async def create_model(self, model: Model) -> Model:
        return await self._db(self.store.create_model, model)

    async def describe_model(self, name: str) -> Model:
        return await self._db(self.store.get_model, name)

    async def list_models(self) -> list[Model]:
        return await self._db(self.store.list_models)

    async def delete_model(self, name: str, *, leaving: str | None = None) -> None:
        """Refused while an endpoint's config (other than ``leaving``, being deleted) uses it."""
        model = await self._db(self.store.get_model, name)
        for config_name, endpoint in await self._configs_in_use(leaving):
            config = await self._db(self.store.get_endpoint_config, config_name)
            if any(v.model_name == name for v in config.variants):
                raise ResourceInUse(
                    f"model {name!r} is in use by endpoint {endpoint!r} (config {config_name!r}); "
                    "update or delete the endpoint first"
                )
        await self._db(self.store.delete_model, name)
        await self._forget_artifact(model.artifact_uri)

    async def create_endpoint_config(self, config: EndpointConfig) -> EndpointConfig:
        return await self._db(self.store.create_endpoint_config, config)

    async def describe_endpoint_config(self, name: str) -> EndpointConfig:
        return await self._db(self.store.get_endpoint_config, name)

    async def list_endpoint_configs(self) -> list[EndpointConfig]:
        return await self._db(self.store.list_endpoint_configs)

    async def delete_endpoint_config(self, name: str, *, leaving: str | None = None) -> None:
        for config_name, endpoint in await self._configs_in_use(leaving):
            if config_name == name:
                raise ResourceInUse(
                    f"endpoint config {name!r} is in use by endpoint {endpoint!r}; update or delete the endpoint first"
                )
        await self._db(self.store.delete_endpoint_config, name)

    async def _configs_in_use(self, leaving: str | None = None) -> list[tuple[str, str]]:
        """(config, endpoint) for every endpoint's config, and the target of every update in progress.

        They must stay: the platform needs them to bring the endpoint back after a restart.
        """
        in_use = [(e.config_name, e.name) for e in await self.list_endpoints()]
        in_use += [(config, endpoint) for endpoint, config in self._updating.items()]
        return [(config, endpoint) for config, endpoint in in_use if endpoint != leaving]

    # -- endpoints ----------------------------------------------------------------------------------
    async def describe_endpoint(self, name: str) -> Endpoint:
        return await self._db(self.store.get_endpoint, name)

    async def list_endpoints(self) -> list[Endpoint]:
        return await self._db(self.store.list_endpoints)

    async def create_endpoint(self, name: str, config_name: str, tags: Mapping[str, str] | None = None) -> Endpoint:
        check_name(name, "EndpointName")
        await self._check_no_case_twin(name)
        await self._check_capacity(name, await self._db(self.store.get_endpoint_config, config_name))
        endpoint = self._note(await self._db(self.store.create_endpoint, name, config_name, tags))
        self._start(name, self._bring_up(name, config_name))
        return endpoint

    async def _check_no_case_twin(self, name: str) -> None:
        """Endpoint names are unique whatever their case, as in SageMaker (CreateEndpoint's rule; the
        case is kept and must be matched to invoke): ``Sentiment`` beside ``sentiment`` is refused."""
        for endpoint in await self.list_endpoints():
            if endpoint.name != name and endpoint.name.lower() == name.lower():
                raise ResourceExists(
                    f"endpoint {name!r} would differ from endpoint {endpoint.name!r} only in case; "
                    "endpoint names are unique whatever their case"
                )

    async def update_endpoint(
        self, name: str, config_name: str, *, retain_weights: bool = False, retain_instance_counts: bool = False
    ) -> Endpoint:
        """Move the endpoint to another config; ``retain_*``: the weights or instance counts set on the
        endpoint (UpdateEndpointWeightsAndCapacities) stay, for the variants the new config has too."""
        new_config = await self._db(self.store.get_endpoint_config, config_name)  # a missing config is refused now
        current = await self._db(self.store.get_endpoint, name)
        was_serving = current.status is EndpointStatus.IN_SERVICE
        kept = {v.variant_name for v in new_config.variants}
        overrides = {
            variant: VariantOverride(
                value.weight if retain_weights else None, value.instance_count if retain_instance_counts else None
            )
            for variant, value in current.variant_overrides.items()
            if variant in kept
        }
        overrides = {k: v for k, v in overrides.items() if v != VariantOverride()}
        await self._check_capacity(name, with_overrides(new_config, overrides))
        endpoint = self._note(await self._db(self.store.set_endpoint_status, name, EndpointStatus.UPDATING))
        self._start(name, self._roll_over(name, config_name, was_serving, overrides))
        return endpoint

    async def update_weights_and_capacities(self, name: str, desired: Mapping[str, VariantOverride]) -> Endpoint:
        """New weights (in place: no instance restarts) and instance counts (a rolling change) per variant."""
        current = await self._db(self.store.get_endpoint, name)
        if current.status is not EndpointStatus.IN_SERVICE:
            raise ValidationFailed(
                f"endpoint {name!r} is {current.status.value}; weights and capacities change only when it is InService"
            )
        config = await self._db(self.store.get_endpoint_config, current.config_name)
        known = [v.variant_name for v in config.variants]
        unknown = sorted(set(desired) - set(known))
        if unknown:
            raise ValidationFailed(
                f"DesiredWeightsAndCapacities: endpoint {name!r} has no variant {', '.join(unknown)} "
                f"(it has {', '.join(known)})"
            )
        merged = dict(current.variant_overrides)
        for variant, change in desired.items():
            before = merged.get(variant, VariantOverride())
            merged[variant] = VariantOverride(
                change.weight if change.weight is not None else before.weight,
                change.instance_count if change.instance_count is not None else before.instance_count,
            )
        before_config = with_overrides(config, current.variant_overrides)
        after_config = with_overrides(config, merged)  # validates: weights not all 0
        resized = [v.initial_instance_count for v in before_config.variants] != [
            v.initial_instance_count for v in after_config.variants
        ]
        if resized:
            await self._check_capacity(name, after_config)
        endpoint = self._note(
            await self._db(
                lambda: self.store.set_endpoint_status(name, EndpointStatus.UPDATING, variant_overrides=merged)
            )
        )
        self._start(name, self._reweigh(name, after_config, resized, dict(current.variant_overrides)))
        return endpoint

    async def _reweigh(
        self, name: str, config: EndpointConfig, resized: bool, previous: Mapping[str, VariantOverride]
    ) -> None:
        if not resized:
            self.runtime.reweigh(name, config)
            await self._set_status(name, EndpointStatus.IN_SERVICE)
            log.info("endpoint %s: new variant weights", name)
            return
        self._updating[name] = config.name
        try:
            _, models = await self._resolve(config.name)
            await self.runtime.deploy(name, config, models, self._failure_reporter(name))
        except ModelhostError as exc:
            reason = f"the change of instance counts failed and was rolled back: {exc.message}"
            log.error("endpoint %s: %s", name, reason)
            await self._set_status(name, EndpointStatus.IN_SERVICE, reason, variant_overrides=previous)
            return
        finally:
            self._updating.pop(name, None)
        await self._set_status(name, EndpointStatus.IN_SERVICE)
        log.info("endpoint %s: new instance counts", name)

    async def delete_endpoint(self, name: str, *, with_deployed_resources: bool = False) -> Endpoint:
        """Stop and forget the endpoint; optionally (``modelhost rm``) also what ``deploy`` made for it."""
        endpoint = self._note(await self._db(self.store.set_endpoint_status, name, EndpointStatus.DELETING))
        running = self._tasks.get(name)
        if running is not None:
            running.cancel()  # a start in progress stops; its instances are stopped by tear-down
        self._start(name, self._tear_down(name, running, with_deployed_resources))
        return endpoint

    async def deploy(self, request: DeployRequest) -> tuple[Endpoint, str]:
        """Create a model and config named ``<endpoint>-v<n>``, then create or update the endpoint.

        Returns the endpoint and the name of the model and config made.
        """
        name = check_name(request.endpoint_name, "EndpointName")
        exists = await self._exists(name)
        tags = {DEPLOYED_FOR_TAG: name}
        for _ in range(5):  # a concurrent deploy may take the same number
            version = await self._next_version(name)
            resource_name = f"{name[: 63 - len(version) - 1]}-{version}"
            try:
                await self.create_model(
                    Model(
                        resource_name,
                        request.artifact_uri,
                        request.artifact_sha256,
                        request.framework,
                        dict(request.environment),
                        tags=tags,
                    )
                )
            except ResourceExists:
                continue
            break
        else:
            raise ResourceInUse(f"endpoint {name!r}: too many concurrent deploys")
        try:
            variant = ProductionVariant("AllTraffic", resource_name, request.instance_count, 1.0)
            await self.create_endpoint_config(
                EndpointConfig(resource_name, (variant,), request.data_capture, tags=tags)
            )
            if exists:
                return await self.update_endpoint(name, resource_name), resource_name
            return await self.create_endpoint(name, resource_name), resource_name
        except ModelhostError:
            await self._discard(resource_name)
            raise

    async def wait_idle(self, name: str) -> None:
        """Until the endpoint's lifecycle task (if any) has finished."""
        task = self._tasks.get(name)
        if task is not None:
            await asyncio.shield(task)

    def logs(self, name: str, max_bytes: int) -> str:
        return self.runtime.logs(name, max_bytes)

    # -- the background lifecycle ---------------------------------------------------------------------
    def _start(self, name: str, work: Awaitable[None]) -> None:
        self._tasks.start(name, work)

    async def _resolve(
        self, config_name: str, overrides: Mapping[str, VariantOverride] | None = None
    ) -> tuple[EndpointConfig, dict[str, Model]]:
        config = with_overrides(await self._db(self.store.get_endpoint_config, config_name), overrides or {})
        models = {}
        for variant in config.variants:
            try:
                models[variant.model_name] = await self._db(self.store.get_model, variant.model_name)
            except ResourceNotFound as exc:
                raise ValidationFailed(
                    f"variant {variant.variant_name}: model {variant.model_name!r} does not exist"
                ) from exc
        return config, models

    def _failure_reporter(self, name: str) -> Callable[[str], None]:
        def report(reason: str) -> None:
            log.error("endpoint %s: %s", name, reason)
            self._start(f"{name} failure", self._set_status(name, EndpointStatus.FAILED, reason))

        return report

    async def _set_status(
        self,
        name: str,
        status: EndpointStatus,
        reason: str | None = None,
        config_name: str | None = None,
        variant_overrides: Mapping[str, VariantOverride] | None = None,
    ) -> None:
        try:
            self._note(
                await self._db(
                    lambda: self.store.set_endpoint_status(
                        name,
                        status,
                        failure_reason=reason,
                        config_name=config_name,
                        variant_overrides=variant_overrides,
                    )
                )
            )
        except (ResourceNotFound, ResourceInUse) as exc:  # deleted or moved on meanwhile
            log.info("endpoint %s: not marked %s: %s", name, status.value, exc.message)

    async def _bring_up(self, name: str, config_name: str) -> None:
        try:
            config, models = await self._resolve(config_name)
            await self.runtime.deploy(name, config, models, self._failure_reporter(name))
        except ModelhostError as exc:
            log.error("endpoint %s: failed to start: %s", name, exc.message)
            await self._set_status(name, EndpointStatus.FAILED, exc.message)
            return
        await self._set_status(name, EndpointStatus.IN_SERVICE)
        log.info("endpoint %s: InService on %s", name, config_name)

    async def _roll_over(
        self, name: str, config_name: str, was_serving: bool, overrides: Mapping[str, VariantOverride]
    ) -> None:
        self._updating[name] = config_name
        try:
            await self._roll_over_to(name, config_name, was_serving, overrides)
        finally:
            self._updating.pop(name, None)

    async def _roll_over_to(
        self, name: str, config_name: str, was_serving: bool, overrides: Mapping[str, VariantOverride]
    ) -> None:
        try:
            config, models = await self._resolve(config_name, overrides)
            await self.runtime.deploy(name, config, models, self._failure_reporter(name))
        except ModelhostError as exc:
            if was_serving and self.runtime.route(name) is not None:
                reason = f"the update to {config_name} failed and was rolled back: {exc.message}"
                log.error("endpoint %s: %s", name, reason)
                await self._set_status(name, EndpointStatus.IN_SERVICE, reason)
            else:
                await self._set_status(name, EndpointStatus.FAILED, exc.message)
            return
        await self._set_status(name, EndpointStatus.IN_SERVICE, config_name=config_name, variant_overrides=overrides)
        log.info("endpoint %s: updated to %s", name, config_name)

    async def _tear_down(
        self, name: str, interrupted: asyncio.Task[None] | None, with_deployed_resources: bool = False
    ) -> None:
        if interrupted is not None:
            await asyncio.gather(interrupted, return_exceptions=True)
        await self.runtime.remove(name)
        if with_deployed_resources:
            await self._remove_deployed(name)
        with contextlib.suppress(ResourceNotFound):
            await self._db(self.store.delete_endpoint, name)
        self._statuses.pop(name, None)
        self.access.set_protected(name, False)
        log.info("endpoint %s: deleted", name)

    # -- access -----------------------------------------------------------------------------------------
    async def set_endpoint_access(self, name: str, *, require_api_key: bool) -> Endpoint:
        return self._note(await self._db(lambda: self.store.set_endpoint_access(name, require_api_key=require_api_key)))

    async def create_api_key(
        self,
        name: str,
        endpoints: tuple[str, ...] | None,
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key; returned once, in the clear, with its record (which keeps only the hash)."""
        secret, access_key_id = self.access.new_key()
        record = await self._db(
            self.store.create_api_key,
            ApiKey(
                name,
                key_sha256(secret),
                secret[: len(KEY_PREFIX) + 4],
                endpoints,
                access_key_id=access_key_id,
                rate_per_s=rate_per_s,
                burst=burst,
            ),
        )
        await self._reload_keys()
        return record, secret

    async def list_api_keys(self) -> list[ApiKey]:
        return await self._db(self.store.list_api_keys)

    async def revoke_api_key(self, name: str) -> None:
        await self._db(self.store.delete_api_key, name)
        await self._reload_keys()

    async def _reload_keys(self) -> None:
        self.access.replace_keys(await self.list_api_keys())

    # -- recovery and shutdown ------------------------------------------------------------------------
    async def recover(self) -> None:
        """Bring the stored endpoints back after a (re)start of the platform."""
        await self._reload_keys()
        for stored in await self.list_endpoints():
            self._note(stored)
            if stored.status is EndpointStatus.DELETING:
                self._start(stored.name, self._tear_down(stored.name, None))
            elif stored.status is EndpointStatus.CREATING:
                self._start(stored.name, self._restore(stored))
            elif stored.status in _WAS_SERVING:
                # Not InService until it serves again; an update the stop interrupted is not resumed.
                endpoint = stored
                if stored.status is not EndpointStatus.SYSTEM_UPDATING:
                    endpoint = self._note(
                        await self._db(self.store.set_endpoint_status, stored.name, EndpointStatus.SYSTEM_UPDATING)
                    )
                interrupted = stored.status is EndpointStatus.UPDATING
                self._start(stored.name, self._restore(endpoint, interrupted_update=interrupted))

    async def _restore(self, endpoint: Endpoint, *, interrupted_update: bool = False) -> None:
        log.info("endpoint %s: restoring %s (%s)", endpoint.name, endpoint.config_name, endpoint.status.value)
        try:
            config, models = await self._resolve(endpoint.config_name, endpoint.variant_overrides)
            await self.runtime.deploy(endpoint.name, config, models, self._failure_reporter(endpoint.name))
        except ModelhostError as exc:
            await self._set_status(endpoint.name, EndpointStatus.FAILED, f"could not be restored: {exc.message}")
            return
        if endpoint.status is not EndpointStatus.IN_SERVICE:
            reason = "an update was interrupted by a restart; kept the previous config" if interrupted_update else None
            await self._set_status(endpoint.name, EndpointStatus.IN_SERVICE, reason)

    async def shutdown(self) -> None:
        """Stop every process; the store keeps what should run, for the next start."""
        await self._tasks.cancel_all()
        await self.runtime.shutdown()

    # -- helpers ------------------------------------------------------------------------------------------
    async def _check_capacity(self, name: str, config: EndpointConfig) -> None:
        """Refuse to run more instances, over every endpoint, than the platform allows."""
        if self._max_instances is None:
            return
        wanted = sum(v.initial_instance_count for v in config.variants)
        others = 0
        for endpoint in await self.list_endpoints():
            if endpoint.name == name or endpoint.status in (EndpointStatus.DELETING, EndpointStatus.FAILED):
                continue
            try:
                running = await self._db(self.store.get_endpoint_config, endpoint.config_name)
            except ResourceNotFound:
                continue
            others += sum(
                v.initial_instance_count for v in with_overrides(running, endpoint.variant_overrides).variants
            )
        if others + wanted > self._max_instances:
            raise ResourceLimitExceeded(
                f"endpoint {name!r} needs {wanted} instance(s) but {others} of the platform's "
                f"{self._max_instances} are in use (MODELHOST_MAX_INSTANCES)"
            )

    async def _exists(self, name: str) -> bool:
        try:
            await self._db(self.store.get_endpoint, name)
        except ResourceNotFound:
            return False
        return True

    async def _next_version(self, name: str) -> str:
        pattern = re.compile(rf"^{re.escape(name[:50])}.*-v(\d+)$")
        models = await self.list_models()
        numbers = [
            int(match.group(1))
            for m in models
            if m.tags.get(DEPLOYED_FOR_TAG) == name and (match := pattern.match(m.name))
        ]
        return f"v{max(numbers, default=0) + 1}"

    async def _discard(self, resource_name: str) -> None:
        for delete in (self.delete_endpoint_config, self.delete_model):
            with contextlib.suppress(ResourceNotFound):
                await delete(resource_name)

    async def _remove_deployed(self, name: str) -> None:
        """Delete the configs and models ``deploy`` made for endpoint ``name`` (and their stored artifacts)."""
        for config in await self.list_endpoint_configs():
            if config.tags.get(DEPLOYED_FOR_TAG) == name:
                await self._discard_quietly(self.delete_endpoint_config, config.name, name)
        for model in await self.list_models():
            if model.tags.get(DEPLOYED_FOR_TAG) == name:
                await self._discard_quietly(self.delete_model, model.name, name)

    @staticmethod
    async def _discard_quietly(delete: Callable[..., Awaitable[None]], resource: str, endpoint: str) -> None:
        """Gone already, or still used by another endpoint someone pointed at it: left alone."""
        with contextlib.suppress(ResourceNotFound, ResourceInUse):
            await delete(resource, leaving=endpoint)

    async def _forget_artifact(self, uri: str) -> None:
        """Delete a stored artifact once no model refers to it."""
        if not self.artifacts.owns(uri):
            return
        if any(m.artifact_uri == uri for m in await self.list_models()):
            return
        await asyncio.to_thread(self.artifacts.delete, uri)
