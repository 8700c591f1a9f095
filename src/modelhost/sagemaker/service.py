"""SageMaker's service model, read from the installed botocore rather than written down again.

botocore ships the model AWS's own SDKs are generated from: the operations, their input and
output shapes and the constraints on every field. ``validate`` checks a request against it as
SageMaker's servers do (required, type, length, range, enum, pattern) and words the failures as
they do: ``1 validation error detected: Value 'x' at 'modelName' failed to satisfy constraint: ...``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel, Shape

from modelhost.errors import ValidationFailed

# Shapes whose pattern modelhost widens: a model's data may also be a file:// URI or a local path.
_WIDENED_PATTERNS = frozenset({"Url", "S3ModelUri", "DestinationS3Uri"})


@functools.cache
def service_model() -> ServiceModel:
    """Loaded once, on the first SageMaker call (about 0.25 s)."""
    return ServiceModel(Loader().load_service_model("sagemaker", "service-2"), "sagemaker")


def operation(name: str) -> OperationModel:
    return service_model().operation_model(name)


def validate(operation_name: str, params: Mapping[str, Any]) -> None:
    """Raise ValidationFailed listing every constraint ``params`` breaks (members the model does
    not know are ignored: a newer SDK may send fields this botocore has not heard of)."""
    shape = operation(operation_name).input_shape
    errors: list[str] = []
    if shape is not None:
        _check(shape, dict(params), "", errors)
    if errors:
        count = len(errors)
        raise ValidationFailed(f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(errors))


def _member_path(path: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 100 else f"'{value[:100]}...'"
    return "null" if value is None else repr(value)


@functools.cache
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:  # Java-only syntax such as \p{L}: not checked here
        return None


def _check(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    kind = shape.type_name
    meta = shape.metadata
    where = f"at '{path}'"
    if kind == "structure":
        if not isinstance(value, dict):
            errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be an object")
            return
        required = getattr(shape, "required_members", [])
        for name in required:
            if value.get(name) is None:
                errors.append(
                    f"Value null at '{_member_path(path, name)}' failed to satisfy constraint: Member must not be null"
                )
        members = shape.members
        for name, item in value.items():
            if name in members and item is not None:
                _check(members[name], item, _member_path(path, name), errors)
    elif kind == "list":
        if not isinstance(value, list):
            errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be a list")
            return
        _check_size(len(value), meta, where, value, errors)
        for index, item in enumerate(value, start=1):
            _check(shape.member, item, f"{path}.{index}.member", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be a map")
            return
        _check_size(len(value), meta, where, value, errors)
        for key, item in value.items():
            _check(shape.key, key, f"{path}.{key}.key", errors)
            _check(shape.value, item, f"{path}.{key}.value", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be a string")
            return
        _check_size(len(value), meta, where, value, errors)
        if shape.enum and value not in shape.enum:
            errors.append(
                f"Value {_show(value)} {where} failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
            )
        pattern = meta.get("pattern")
        if pattern and shape.name not in _WIDENED_PATTERNS:
            compiled = _pattern(pattern)
            if compiled is not None and not compiled.fullmatch(value):
                errors.append(
                    f"Value {_show(value)} {where} failed to satisfy constraint: "
                    f"Member must satisfy regular expression pattern: {pattern}"
                )
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be an integer")
            return
        _check_range(value, meta, where, errors)
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be a number")
            return
        _check_range(value, meta, where, errors)
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be a boolean")
    elif kind == "timestamp" and (not isinstance(value, (int, float, str)) or isinstance(value, bool)):
        errors.append(f"Value {_show(value)} {where} failed to satisfy constraint: Member must be a timestamp")


def _check_size(size: int, meta: Mapping[str, Any], where: str, value: Any, errors: list[str]) -> None:
    if "min" in meta and size < meta["min"]:
        errors.append(
            f"Value {_show(value)} {where} failed to satisfy constraint: "
            f"Member must have length greater than or equal to {meta['min']}"
        )
    if "max" in meta and size > meta["max"]:
        errors.append(
            f"Value {_show(value)} {where} failed to satisfy constraint: "
            f"Member must have length less than or equal to {meta['max']}"
        )


def _check_range(value: float, meta: Mapping[str, Any], where: str, errors: list[str]) -> None:
    if "min" in meta and value < meta["min"]:
        errors.append(
            f"Value {_show(value)} {where} failed to satisfy constraint: "
            f"Member must have value greater than or equal to {meta['min']}"
        )
    if "max" in meta and value > meta["max"]:
        errors.append(
            f"Value {_show(value)} {where} failed to satisfy constraint: "
            f"Member must have value less than or equal to {meta['max']}"
        )
