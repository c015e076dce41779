"""Keys bound to every log line of a block (`with bound(request_id=...)`): structlog's context
variables, as `structlog.contextvars.bound_contextvars` binds them, restored on exit.

A class, not structlog's generator-based one: every watched contact holds three of these for as
long as it is watched (docs/design.md, "What a watched contact holds").
"""

from __future__ import annotations

import contextvars
from typing import Any

from structlog.contextvars import bind_contextvars


class bound:
    """Bind `values` for the block; on exit each key is back to what it was before."""

    __slots__ = ("_tokens", "_values")

    def __init__(self, **values: Any) -> None:
        self._values: dict[str, Any] | None = values
        self._tokens: tuple[contextvars.Token[Any], ...] = ()

    def __enter__(self) -> None:
        assert self._values is not None  # noqa: S101 (entered once)
        self._tokens = tuple(bind_contextvars(**self._values).values())
        self._values = None  # not kept while the block runs

    def __exit__(self, *exc: object) -> None:
        for token in reversed(self._tokens):
            token.var.reset(token)
        self._tokens = ()
