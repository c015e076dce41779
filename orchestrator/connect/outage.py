"""Connect unreachable: a call whose transient failures (no answer, 5xx) outlast its retry
budget waits and retries in place instead of failing its request.

The gateway hands each such call to an `OutageHold` (the daemon's deployment faults implement
it): `hold` declares the outage, pauses with a growing delay and lets the call try again;
`release` says the call is over (answered, or cancelled). Nothing here ends a request, hands a
message back or logs per retry: the hold decides what is said, and how often.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from orchestrator.errors import ConnectError, ConnectUnavailable

T = TypeVar("T")


class OutageHold(Protocol):
    """Where calls wait while Connect does not answer."""

    @property
    def declared(self) -> bool:
        """Whether an outage is declared now (per-retry warnings are then debug lines)."""
        ...

    async def hold(self, error: ConnectError, held: int) -> None:
        """Pause before the call's next try; `held` counts this call's holds from 1 (the first
        one declares the outage for it)."""
        ...

    def release(self, *, answered: bool) -> None:
        """The call that was held is over: Connect answered it (`answered`), or it ended
        otherwise (cancelled, or a failure that is not an outage)."""
        ...


async def through_outage(outage: OutageHold | None, call: Callable[[int], Awaitable[T]]) -> T:
    """`call(held)` until it ends without `ConnectUnavailable`, held in place in between
    (`held`: how many times it was held so far). Without an `outage`, a single call."""
    if outage is None:
        return await call(0)
    held = 0
    answered = False
    try:
        while True:
            try:
                result = await call(held)
            except ConnectUnavailable as error:
                held += 1
                await outage.hold(error, held)
                continue
            except ConnectError:
                # Connect answered, if not as hoped: the outage is over for this call.
                answered = True
                raise
            answered = True
            return result
    finally:
        if held:
            outage.release(answered=answered)
