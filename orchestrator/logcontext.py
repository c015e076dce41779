"""Keys bound to every log line of a block (`with bound(request_id=...)`): structlog's context
variables, as `structlog.contextvars.bound_contextvars` binds them, restored on exit.

A class, not structlog's generator-based one: every watched contact holds three of these for as
long as it is watched (docs/design.md, "What a watched contact holds").
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from structlog.contextvars import bind_contextvars, reset_contextvars


class bound:
    """Bind `values` for the block; on exit each key is back to what it was before."""

    __slots__ = ("_tokens", "_values")

    def __init__(self, **values: Any) -> None:
        self._values: dict[str, Any] | None = values
        self._tokens: Mapping[str, contextvars.Token[Any]] = {}

    def __enter__(self) -> None:
        assert self._values is not None  # noqa: S101 (entered once)
        self._tokens = bind_contextvars(**self._values)
        self._values = None  # not kept while the block runs

    def __exit__(self, *exc: object) -> None:
        reset_contextvars(**self._tokens)
        self._tokens = {}
