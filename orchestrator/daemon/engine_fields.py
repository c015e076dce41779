"""How a setting feeds an engine value: one home per default, bound and description.

A setting that configures an engine value (`WorkerOptions`, `WatchPolicy`, `RetryPolicy`,
`GatewayPolicies`, `RequestDefaults`, `BudgetShare`, a `Quota`) takes its default, bounds and
description from that value's field, as `orchestrator.bounds.described` declared them
(`engine_field`); assembly then builds the engine value from the sections (`engine_values`).
Settings that configure nothing below the daemon (endpoints, sinks, fleet, observability,
logging) declare theirs in `settings.py` with `Field`. Either way each is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from orchestrator import bounds
from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota


@dataclass(frozen=True)
class EngineRef:
    """Which engine field a setting feeds (kept in the settings field's metadata)."""

    owner: type[Any]
    name: str
    #: Turns the setting's value into the engine's (a TOML list into a frozenset, say).
    convert: Callable[[Any], Any] | None = None


_UNSET: Any = object()


def engine_field(
    owner: type[Any],
    name: str,
    *,
    default: Any = _UNSET,
    description: str | None = None,
    convert: Callable[[Any], Any] | None = None,
    **extra: Any,
) -> Any:
    """The settings field that feeds `owner.name`: its default, bounds and description as the
    engine declares them. `default`/`description` replace the engine's (a section that feeds the
    same field differently); `extra` adds `Field` options (examples, a tighter operator bound)."""
    field, spec = bounds.spec(owner, name)
    value = bounds.default_of(field) if default is _UNSET else default
    if isinstance(value, frozenset | tuple):
        value = sorted(value)
    info: Any = Field(
        value,
        description=description or spec.description,
        **{**spec.bounds.as_kwargs(), **extra},
    )
    info.metadata.append(EngineRef(owner, name, convert))
    return info


def engine_refs(section: type[BaseModel]) -> dict[str, EngineRef]:
    """The settings of `section` that feed an engine field, by setting name."""
    refs: dict[str, EngineRef] = {}
    for key, info in section.model_fields.items():
        refs.update((key, m) for m in info.metadata if isinstance(m, EngineRef))
    return refs


def engine_values(owner: type[Any], *sections: BaseModel) -> dict[str, Any]:
    """Keyword arguments for `owner` from the settings that feed its fields (a later section
    wins over an earlier one)."""
    values: dict[str, Any] = {}
    for section in sections:
        for key, ref in engine_refs(type(section)).items():
            if ref.owner is owner:
                value = getattr(section, key)
                values[ref.name] = ref.convert(value) if ref.convert else value
    return values


def quota_key(operation: Operation, part: Literal["rate", "burst"]) -> str:
    """`[connect]`'s key for one quota: `describe_contact_rate`, `start_webrtc_contact_burst`."""
    return f"{operation.name.lower()}_{part}"


def quota_field(operation: Operation, part: Literal["rate", "burst"]) -> Any:
    """The settings field of one quota: Connect's default (`DEFAULT_QUOTAS`), `Quota`'s bounds."""
    _, spec = bounds.spec(Quota, part)
    return Field(
        getattr(DEFAULT_QUOTAS[operation], part),
        description=f"{operation}: {spec.description[0].lower()}{spec.description[1:]} "
        "The default is Connect's; raise it here after raising it in Service Quotas.",
        **spec.bounds.as_kwargs(),
    )


def bounds_of(info: FieldInfo) -> bounds.Bounds:
    """The numeric bounds a settings field enforces (pydantic keeps them as `Gt(gt=0)`, ...)."""
    limits = {
        name: getattr(m, name)
        for m in info.metadata
        for name in ("gt", "ge", "lt", "le")
        if type(m).__name__.lower() == name
    }
    return bounds.Bounds(**limits)
