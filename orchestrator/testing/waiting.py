"""Waiting for a condition with a deadline: how tests wait, never with a fixed sleep.

```python
contact = await eventually(lambda: emulator.center.contact_for(token), within=5)
await eventually(async_predicate, message="the queue to drain")
```
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import anyio

T = TypeVar("T")


@overload
async def eventually(
    predicate: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...


@overload
async def eventually(
    predicate: Callable[[], T | None],
    *,
    within: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...


async def eventually(
    predicate: Callable[[], Any],
    *,
    within: float = 20.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that.

    Raises AssertionError after `within` seconds, naming `message` and the last answer.
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {message} ({result!r})")
        await anyio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], T | None],
    *,
    within: float = 20.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """`eventually` for code outside an event loop: sleeps the thread between polls."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {message} ({result!r})")
        time.sleep(interval)
