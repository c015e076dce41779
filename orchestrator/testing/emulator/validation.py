"""Request validation taken from botocore's own Connect service model.

The emulator never hard-codes a length or an enum: it walks the input shape of the operation in
`botocore/data/connect/.../service-2.json` and checks required members, types, lengths, enums and
patterns, plus the documented cross-member limits the model cannot express (attribute and reference
byte budgets, attribute key charset). The first violation becomes an `InvalidParameterException`
whose message names the member, as Connect's own validation messages do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

import botocore.session

from .wire import ApiError

ATTRIBUTES_MAX_BYTES = 32_768
REFERENCES_MAX_BYTES = 4_096
_ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # fullmatch: `$` would allow a trailing "\n"


@cache
def _service_model() -> Any:
    return botocore.session.get_session().get_service_model("connect")


def input_shape(operation: str) -> Any:
    return _service_model().operation_model(operation).input_shape


def _invalid(path: str, constraint: str) -> ApiError:
    return ApiError(
        "InvalidParameterException",
        "1 validation error detected: "
        f"Value at '{path}' failed to satisfy constraint: {constraint}",
    )


def _check(shape: Any, value: Any, path: str) -> None:
    checker = _CHECKERS.get(shape.type_name)
    if checker is not None:
        checker(shape, value, path)


def _check_structure(shape: Any, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _invalid(path, "Member must be an object")
    for name in shape.required_members:
        if value.get(name) is None:
            raise _invalid(_join(path, name), "Member must not be null")
    for name, member in shape.members.items():
        if value.get(name) is not None:
            _check(member, value[name], _join(path, name))


def _check_map(shape: Any, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _invalid(path, "Member must be a map")
    _check_length(shape.metadata, len(value), path)
    for key, item in value.items():
        _check(shape.key, key, f"{path}[{key!r}] key")
        _check(shape.value, item, f"{path}[{key!r}]")


def _check_list(shape: Any, value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise _invalid(path, "Member must be a list")
    _check_length(shape.metadata, len(value), path)
    for index, item in enumerate(value):
        _check(shape.member, item, f"{path}[{index}]")


def _check_string(shape: Any, value: Any, path: str) -> None:
    meta = shape.metadata
    if not isinstance(value, str):
        raise _invalid(path, "Member must be a string")
    _check_length(meta, len(value), path)
    if "enum" in meta and value not in meta["enum"]:
        raise _invalid(path, f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    if "pattern" in meta and not re.search(meta["pattern"], value):
        raise _invalid(path, f"Member must satisfy regular expression pattern: {meta['pattern']}")


def _check_integer(shape: Any, value: Any, path: str) -> None:
    meta = shape.metadata
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(path, "Member must be an integer")
    if "min" in meta and value < meta["min"]:
        raise _invalid(path, f"Member must have value greater than or equal to {meta['min']}")
    if "max" in meta and value > meta["max"]:
        raise _invalid(path, f"Member must have value less than or equal to {meta['max']}")


def _check_boolean(_shape: Any, value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise _invalid(path, "Member must be a boolean")


_CHECKERS: dict[str, Callable[[Any, Any, str], None]] = {
    "structure": _check_structure,
    "map": _check_map,
    "list": _check_list,
    "string": _check_string,
    "integer": _check_integer,
    "long": _check_integer,
    "boolean": _check_boolean,
}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_length(meta: dict[str, Any], length: int, path: str) -> None:
    if "min" in meta and length < meta["min"]:
        raise _invalid(path, f"Member must have length greater than or equal to {meta['min']}")
    if "max" in meta and length > meta["max"]:
        raise _invalid(path, f"Member must have length less than or equal to {meta['max']}")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def validate_request(operation: str, params: dict[str, Any]) -> None:
    """Raise `ApiError(InvalidParameterException)` for the first violation in `params`."""
    _check(input_shape(operation), params, "")
    if operation == "StartWebRTCContact":
        _check_budgets(params)


def _check_budgets(params: dict[str, Any]) -> None:
    attributes = params.get("Attributes") or {}
    for key in attributes:
        if not _ATTRIBUTE_KEY.fullmatch(key):
            raise _invalid(
                f"Attributes[{key!r}] key",
                "Member must contain only alphanumeric characters, '-' and '_'",
            )
    size = sum(_utf8_len(k) + _utf8_len(v) for k, v in attributes.items())
    if size > ATTRIBUTES_MAX_BYTES:
        raise _invalid(
            "Attributes",
            f"Attributes must not exceed {ATTRIBUTES_MAX_BYTES} UTF-8 bytes in total (got {size})",
        )
    references = params.get("References") or {}
    ref_size = sum(
        _utf8_len(name) + _utf8_len(ref.get("Value") or "") for name, ref in references.items()
    )
    if ref_size > REFERENCES_MAX_BYTES:
        raise _invalid(
            "References",
            f"References must not exceed {REFERENCES_MAX_BYTES} UTF-8 bytes in total "
            f"(got {ref_size})",
        )
