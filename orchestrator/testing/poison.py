"""A poison message: a body that is not a valid call request, with the outcome it must have.

The chaos soak sends a fixed set of them (`orchestrator.testing.chaos.plan.poison_set`); the
parser's property tests draw them from Hypothesis strategies. Both describe one the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Poison"]


@dataclass(frozen=True)
class Poison:
    body: str | bytes
    #: The RequestId its `request.rejected` is filed under (the parser must report it); None
    #: when none can be read.
    request_id: str | None
    #: How it was made, for failure reports.
    recipe: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        """The body of a poison meant for SQS (always text)."""
        if not isinstance(self.body, str):
            raise TypeError("SQS bodies are text")
        return self.body

    def __repr__(self) -> str:
        head = self.body[:160]
        return (
            f"Poison(recipe={self.recipe}, request_id={self.request_id!r}, "
            f"{len(self.body)} long: {head!r})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # noqa: ARG002 (its protocol)
        """How Hypothesis shows a falsifying example: the recipe and the start of the body."""
        printer.text(repr(self))
