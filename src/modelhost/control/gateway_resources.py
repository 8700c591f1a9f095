"""The gateway's resources: functions (Lambda-style handlers) and routes (API Gateway-style paths).

    Function   code (packed in the artifact store), ``handler`` as module.function, environment,
               artifacts it may read, a timeout and a memory cap; its state: Pending ─► Active | Failed
    Route      METHOD + path template (``/v1/items/{id}``) ─► a function or an endpoint, with an API-key
               requirement, a rate limit (token bucket), a body size limit

Values are immutable and validated with the field named, as the hosting resources are. What the API
takes is checked further (``RateLimit.parse``: bounded rates; ``compile_schema``: schemas that never
fetch), so that a route stored before those checks still loads.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from modelhost.control.resources import check_name
from modelhost.errors import ValidationFailed

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

HANDLER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.[A-Za-z_][A-Za-z0-9_]*$")
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
RESERVED_PREFIXES = ("/api/", "/endpoints/")  # the platform's own paths (and "/", SageMaker's API)
_SEGMENT = re.compile(r"^(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z0-9._~!$&'()*+,;=:@-]+)$")
MAX_TIMEOUT_S = 900.0  # Lambda's
DEFAULT_BODY_LIMIT = 6 * 1024 * 1024  # Lambda's synchronous payload limit


class FunctionState(enum.StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    FAILED = "Failed"


@dataclass(frozen=True)
class Function:
    name: str
    code_uri: str  # the packed code in the artifact store (a folder or tar.gz also works)
    handler: str  # "module.function", e.g. "app.lambda_handler"
    environment: Mapping[str, str] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)  # file name ─► URI, fetched before the first call
    timeout_s: float = 30.0
    memory_mb: int = 512
    code_sha256: str | None = None
    state: FunctionState = FunctionState.PENDING
    failure_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "FunctionName")
        if not isinstance(self.handler, str) or not HANDLER_PATTERN.fullmatch(self.handler):
            raise ValidationFailed(
                f"Handler: {self.handler!r} must be module.function (e.g. app.lambda_handler; module may be dotted)"
            )
        if not isinstance(self.code_uri, str) or not self.code_uri.strip():
            raise ValidationFailed("Code: a code URI or path is required")
        if not isinstance(self.timeout_s, (int, float)) or not 1 <= self.timeout_s <= MAX_TIMEOUT_S:
            raise ValidationFailed(f"Timeout: must be 1-{MAX_TIMEOUT_S:g} seconds, got {self.timeout_s!r}")
        if not isinstance(self.memory_mb, int) or not 128 <= self.memory_mb <= 65536:
            raise ValidationFailed(f"MemorySize: must be 128-65536 MB, got {self.memory_mb!r}")
        for key, value in self.environment.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key:
                raise ValidationFailed(f"Environment: {key!r} must map a name to a string")
        for name, uri in self.artifacts.items():
            if not isinstance(name, str) or not ARTIFACT_NAME.fullmatch(name):
                raise ValidationFailed(f"Artifacts: {name!r} must be a plain file name (letters, digits, . _ -)")
            if not isinstance(uri, str) or not uri.strip():
                raise ValidationFailed(f"Artifacts[{name}]: a URI or path is required")


class TargetKind(enum.StrEnum):
    FUNCTION = "function"
    ENDPOINT = "endpoint"


MIN_RATE_PER_S = 0.001  # one request in about 17 minutes
MAX_RATE_PER_S = 1_000_000.0
MAX_BURST = 1_000_000
_RATE = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,9})?)(?:/(s|sec|second|m|min|minute))?$")
_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``rate`` requests a second on average, bursts of up to ``burst``.

    What the API takes is bounded (``parse``: MIN_RATE_PER_S to MAX_RATE_PER_S, a burst of 1 to
    MAX_BURST); a limit itself need only be a usable bucket (finite, > 0), so that a route stored
    before those bounds still loads (the throttle copes with any such rate).
    """

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not math.isfinite(self.rate):
            raise ValidationFailed(f"Rate: must be a number of requests a second, got {self.rate!r}")
        if self.rate <= 0:
            raise ValidationFailed(f"Rate: must be > 0 requests a second, got {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValidationFailed(f"Burst: must be >= 1, got {self.burst!r}")

    @classmethod
    def parse(cls, rate: str, burst: int | None = None) -> RateLimit:
        """``"50/s"``, ``"600/m"`` or a bare number (a second), ASCII digits; the burst defaults to a second's worth."""
        found = _RATE.fullmatch(rate.strip().lower()) if isinstance(rate, str) else None
        if found is None:
            raise ValidationFailed(f"Rate: {rate!r} must be N/s or N/m (digits, at most one point), e.g. 50/s")
        per_second = float(found.group(1)) / _PER[found.group(2)]
        check_rate(per_second, "Rate")
        if burst is not None:
            check_burst(burst, "Burst")
        return cls(per_second, burst if burst is not None else max(1, round(per_second)))


def check_rate(rate: object, field: str) -> None:
    """A rate in requests a second: a finite number within MIN_RATE_PER_S..MAX_RATE_PER_S."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate):
        raise ValidationFailed(f"{field}: must be a number of requests a second, got {rate!r}")
    if not MIN_RATE_PER_S * (1 - 1e-9) <= rate <= MAX_RATE_PER_S:
        raise ValidationFailed(
            f"{field}: must be {MIN_RATE_PER_S:g} to {MAX_RATE_PER_S:,.0f} requests a second "
            f"(0.06/m to 1000000/s), got {rate:g}"
        )


def check_burst(burst: object, field: str) -> None:
    """A burst: a whole number of requests, 1..MAX_BURST."""
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_BURST:
        raise ValidationFailed(f"{field}: must be a whole number 1 to {MAX_BURST:,}, got {burst!r}")


@dataclass(frozen=True)
class Cors:
    """Which browser origins may call a route; preflights (OPTIONS) are answered by the gateway."""

    allow_origins: tuple[str, ...] = ("*",)
    allow_headers: tuple[str, ...] = ("content-type", "x-api-key", "authorization")
    expose_headers: tuple[str, ...] = ("x-amzn-requestid",)
    max_age_s: int = 600
    allow_credentials: bool = False

    def __post_init__(self) -> None:
        if not self.allow_origins or not all(isinstance(o, str) and o for o in self.allow_origins):
            raise ValidationFailed("Cors.AllowOrigins: give one or more origins (or *)")
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValidationFailed("Cors.AllowCredentials: browsers refuse credentials with origin *; list origins")
        if not isinstance(self.max_age_s, int) or not 0 <= self.max_age_s <= 86400:
            raise ValidationFailed(f"Cors.MaxAge: must be 0-86400 seconds, got {self.max_age_s!r}")

    def allows(self, origin: str) -> bool:
        return "*" in self.allow_origins or origin in self.allow_origins


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    target_kind: TargetKind
    target: str  # a function's or an endpoint's name
    api_key_required: bool = False
    rate_limit: RateLimit | None = None
    max_body_bytes: int = DEFAULT_BODY_LIMIT
    created_at: datetime | None = None
    cors: Cors | None = None
    request_schema: Mapping[str, Any] | None = None  # JSON Schema (2020-12) the JSON body must satisfy
    example: Any = None  # an example body, shown in the OpenAPI document (checked against the schema)
    summary: str | None = None
    response_schema: Mapping[str, Any] | None = None  # what a 200 answers, for the OpenAPI document only
    response_example: Any = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValidationFailed(f"Method: {self.method!r} is not one of {', '.join(METHODS)}")
        check_path(self.path)
        check_name(self.target, "Target")
        if not isinstance(self.max_body_bytes, int) or not 0 < self.max_body_bytes <= 64 * 1024 * 1024:
            raise ValidationFailed(f"MaxBodyBytes: must be 1 byte to 64 MB, got {self.max_body_bytes!r}")
        if self.summary is not None and (not isinstance(self.summary, str) or len(self.summary) > 200):
            raise ValidationFailed("Summary: at most 200 characters")
        if self.request_schema is not None:
            check_schema(self.request_schema, self.example)
        if self.response_schema is not None:
            check_schema(self.response_schema, self.response_example, "ResponseSchema", "ResponseExample")

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def check_path(path: str) -> None:
    """A route's path: absolute, plain segments or ``{name}`` parameters, not one of the platform's own."""
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise ValidationFailed(f"Path: {path!r} must start with / and name at least one segment")
    if path.startswith(RESERVED_PREFIXES) or path.rstrip("/") in ("/api", "/endpoints"):
        raise ValidationFailed(f"Path: {path!r} is the platform's own (/api/ and /endpoints/ are reserved)")
    segments = path.strip("/").split("/")
    names = []
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise ValidationFailed(f"Path: segment {segment!r} of {path!r} is neither plain nor a {{parameter}}")
        if segment.startswith("{"):
            names.append(segment[1:-1])
    if len(names) != len(set(names)):
        raise ValidationFailed(f"Path: {path!r} names a parameter twice")


MAX_PATTERN_CHARS = 1000  # a schema's ``pattern`` longer than this is refused (see docs/gateway.md: ReDoS)


def check_schema(
    schema: Mapping[str, Any], example: Any = None, field: str = "RequestSchema", example_field: str = "Example"
) -> None:
    """A route's request (or response) schema must be valid JSON Schema 2020-12, and its example satisfy it.

    The shape only: whether the schema can be applied without fetching anything is ``compile_schema``'s,
    which the API runs on create and update. A route read back from the store is not refused for
    that, so one stored before the check still loads (the front door answers its requests 500).
    """
    from jsonschema import Draft202012Validator
    from referencing import Registry

    document = _checked_shape(schema, field)
    if example is None:
        return
    try:
        error = next(iter(Draft202012Validator(document, registry=Registry()).iter_errors(example)), None)
    except Exception:
        return
    if error is not None:
        what = "request" if field == "RequestSchema" else "response"
        raise ValidationFailed(f"{example_field}: does not satisfy the {what} schema: {error.message}")


def _checked_shape(schema: Mapping[str, Any], field: str) -> dict[str, Any]:
    """``schema`` as a dict, refused unless it is valid JSON Schema 2020-12 (its metaschema; nothing fetched)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, Mapping):
        raise ValidationFailed(f"{field}: must be a JSON Schema object")
    document = dict(schema)
    try:
        Draft202012Validator.check_schema(document)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValidationFailed(f"{field}: not valid JSON Schema at {where}: {exc.message}") from None
    return document


def compile_schema(schema: Mapping[str, Any], field: str = "RequestSchema") -> Draft202012Validator:
    """A validator for ``schema`` that never fetches: its ``$ref``s must resolve inside the schema itself.

    jsonschema's default registry retrieves unknown URIs with urlopen (http://, file://) on every
    validation; an empty ``referencing.Registry`` retrieves nothing (the metaschemas are still known).
    Every ref is resolved here once, and the schema is tried on a sample, so that a route that was
    accepted can always be applied.
    """
    from jsonschema import Draft202012Validator
    from referencing import Registry

    document = _checked_shape(schema, field)
    _check_references(document, field)
    validator = Draft202012Validator(document, registry=Registry())
    try:
        next(iter(validator.iter_errors(None)), None)  # a dry run: an endless $ref loop shows here
    except RecursionError:
        raise ValidationFailed(f"{field}: its $refs loop without end") from None
    except Exception as exc:
        raise ValidationFailed(f"{field}: cannot be applied: {type(exc).__name__}: {exc}") from None
    return validator


def _check_references(document: dict[str, Any], field: str) -> None:
    """Every ``$ref``/``$dynamicRef`` resolves inside ``document``, and every ``pattern`` compiles and is short."""
    from jsonschema_specifications import REGISTRY  # type: ignore[import-untyped]  # the metaschemas jsonschema knows
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    root = DRAFT202012.create_resource(document)
    pending = [(root, REGISTRY.resolver_with_root(root))]
    while pending:
        resource, resolver = pending.pop()
        contents = resource.contents
        if isinstance(contents, dict):
            for keyword in ("$ref", "$dynamicRef"):
                ref = contents.get(keyword)
                if not isinstance(ref, str):
                    continue
                try:
                    resolver.lookup(ref)
                except Unresolvable:
                    raise ValidationFailed(
                        f"{field}: {keyword} {ref!r} does not resolve inside the schema"
                        " (nothing is fetched: no URLs, no files, no other documents)"
                    ) from None
            _check_patterns(contents, field)
        pending += [(sub, resolver.in_subresource(sub)) for sub in resource.subresources()]


def _check_patterns(contents: Mapping[str, Any], field: str) -> None:
    """``pattern`` and ``patternProperties`` regexes: they must compile and be at most MAX_PATTERN_CHARS long."""
    patterns = [contents["pattern"]] if isinstance(contents.get("pattern"), str) else []
    if isinstance(contents.get("patternProperties"), Mapping):
        patterns += [p for p in contents["patternProperties"] if isinstance(p, str)]
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ValidationFailed(f"{field}: a pattern of {len(pattern)} characters (at most {MAX_PATTERN_CHARS})")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValidationFailed(f"{field}: pattern {pattern[:100]!r} does not compile: {exc}") from None
