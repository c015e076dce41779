"""Fields of value types declared once: default, bounds and description together.

An engine value (`WatchPolicy`, `WorkerOptions`, `RetryPolicy`, a `Quota`, ...) is a frozen
`Bounded` dataclass whose fields are `declared(default, description, bounds...)` (or carry
`metadata=described(...)`). It checks its own bounds when built, and the daemon's settings
read the same declaration (`spec`) for their defaults, bounds and descriptions, so no default
or bound is written twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_SPEC = "orchestrator.bounds"


@dataclass(frozen=True)
class Bounds:
    """Numeric bounds of a field: any of >, >=, <, <= (None: unbounded on that side)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def admits(self, value: float) -> bool:
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def __str__(self) -> str:
        """`> 0`, `>= 1`, `in (0, 1]`, `in [0, 20]`: how the bounds read in messages and docs."""
        low = f"({_num(self.gt)}" if self.gt is not None else None
        low = f"[{_num(self.ge)}" if self.ge is not None else low
        high = f"{_num(self.lt)})" if self.lt is not None else None
        high = f"{_num(self.le)}]" if self.le is not None else high
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">" if low[0] == "(" else ">=") + f" {low[1:]}"
        if high:
            return ("<" if high[-1] == ")" else "<=") + f" {high[:-1]}"
        return ""

    def as_kwargs(self) -> dict[str, Any]:
        """The bounds as pydantic `Field` keywords."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Spec:
    """What `described` declared for one field."""

    description: str
    bounds: Bounds


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def described(
    description: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> dict[str, Spec]:
    """A dataclass field's `metadata`: its description and bounds.

    `first_delay_s: float = field(default=2.0, metadata=described("...", gt=0))`
    """
    return {_SPEC: Spec(" ".join(description.split()), Bounds(gt=gt, ge=ge, lt=lt, le=le))}


def declared(
    default: Any,
    description: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    """A dataclass field with its default, description and bounds, declared once.

    `first_delay_s: float = declared(2.0, "...", gt=0)`
    """
    return dataclasses.field(
        default=default, metadata=described(description, gt=gt, ge=ge, lt=lt, le=le)
    )


def spec(owner: type[Any], name: str) -> tuple[dataclasses.Field[Any], Spec]:
    """The dataclass field `name` of `owner` and what `described` declared for it."""
    field = {f.name: f for f in dataclasses.fields(owner)}[name]
    declared = field.metadata.get(_SPEC)
    if declared is None:
        raise TypeError(f"{owner.__name__}.{name} has no described(...) metadata")
    return field, declared


def default_of(field: dataclasses.Field[Any]) -> Any:
    """The field's default value (built by its factory if it has one)."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"{field.name} has no default")


@dataclass(frozen=True)
class Bounded:
    """Base of a frozen dataclass whose fields are `declared`: it checks their bounds when built
    (a subclass with checks of its own calls `super().__post_init__()` first)."""

    def __post_init__(self) -> None:
        check_bounds(self)


def check_bounds(instance: Any) -> None:
    """Raise `ValueError` naming the first field of `instance` outside its declared bounds."""
    for field in dataclasses.fields(instance):
        declared = field.metadata.get(_SPEC)
        if declared is None:
            continue
        value = getattr(instance, field.name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and not declared.bounds.admits(value):
            raise ValueError(f"{field.name} must be {declared.bounds}, got {value!r}")
