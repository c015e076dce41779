"""What a lifecycle knows of cancels: its `Cancellation`, and the tombstones cancels leave.

A requester cancels a request with a cancel message (`engine/request.py`, `CancelRequest`). The
worker that receives it records a `Tombstone` (request id -> when, and the contact id if the
cancel named one) in its `Tombstones`: in memory, or in Redis for a fleet. A lifecycle asks for a
tombstone before every StartWebRTCContact attempt and once its contact has started, so a cancel
that came first (SQS keeps no order) still stops its request. A cancel for a request whose
lifecycle is running here sets that lifecycle's `Cancellation` (`request`), which ends a wait
for the start budget or the capacity gate and wakes the watch.

How far the lifecycle got decides what a cancel does (`Stage`): before the start it withdraws
the request (it never reaches Connect); while the contact waits for an agent it stops the contact;
once an agent has it, it is too late and nothing changes. A cancel received by the worker that
holds the lifecycle is counted once, by what it achieved (`settle`: `cancelled` or `too_late`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Protocol

import anyio

from orchestrator.clock import Clock, SystemClock
from orchestrator.engine.doorbells import Expiring
from orchestrator.errors import OrchestratorError


@dataclass(frozen=True)
class Tombstone:
    """A cancel, remembered: the request it names, when it was recorded (epoch seconds), and
    the contact and instance it named, if any."""

    request_id: str
    cancelled_at: float
    contact_id: str | None = None
    instance_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Tombstone:
        return cls(**json.loads(text))


class TombstoneUnrecorded(OrchestratorError):
    """A tombstone could not be recorded (Redis unreachable): the cancel is not acknowledged."""


class Tombstones(Protocol):
    """Where cancels are remembered for the requests that have not come yet (or come again)."""

    async def record(self, tombstone: Tombstone) -> None:
        """Remember `tombstone`; `TombstoneUnrecorded` when it cannot be."""
        ...

    async def lookup(self, request_id: str) -> Tombstone | None:
        """The request's tombstone; None when there is none, or when it cannot be read now (a
        start is not held up for it: a cancel not recorded is not acknowledged either)."""
        ...


class MemoryTombstones:
    """Tombstones in this process: kept `ttl_s`, at most `limit` (the oldest go first)."""

    def __init__(self, *, ttl_s: float, limit: int = 100_000, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._kept: Expiring[Tombstone] = Expiring(ttl_s, limit)

    def __len__(self) -> int:
        return len(self._kept)

    async def record(self, tombstone: Tombstone) -> None:
        now = self._clock.monotonic()
        self._kept.expire(now)
        self._kept.add(tombstone.request_id, now, tombstone)

    async def lookup(self, request_id: str) -> Tombstone | None:
        now = self._clock.monotonic()
        self._kept.expire(now)
        return self._kept.get(request_id, now)


class Stage(StrEnum):
    """How far a lifecycle got, as a cancel sees it."""

    #: No contact yet: a cancel withdraws the request.
    BEFORE_START = "before_start"
    #: The contact waits for an agent: a cancel stops it.
    WAITING_FOR_AGENT = "waiting_for_agent"
    #: An agent has the contact, or the request has its final event: too late.
    TOO_LATE = "too_late"


class CancelResult(StrEnum):
    """What a cancel achieved (`orchestrator_cancels_total{result}`)."""

    CANCELLED = "cancelled"
    TOO_LATE = "too_late"
    UNKNOWN = "unknown"
    MALFORMED = "malformed"


@dataclass(eq=False)
class Cancellation:
    """One lifecycle's side of a cancel (built by the worker's registry, passed to the engine).

    It is also what a start waits on (the gateway's `Withdrawal`): `requested` ends a wait for the
    start budget or the capacity gate, and `withdrawn()` is asked before every attempt.
    """

    request_id: str
    #: A cancel may withdraw the request before its start: on its first delivery only, since a
    #: redelivery's contact may exist already (it is found again, then stopped).
    withdrawable: bool = True
    tombstones: Tombstones | None = None
    #: Counts a cancel received here once its result is known (None: not counted).
    count: Callable[[CancelResult], None] | None = None
    #: The cancel's tombstone, once known (when it was cancelled, the contact it named).
    tombstone: Tombstone | None = None
    stage: Stage = Stage.BEFORE_START
    #: The request's contact, once started.
    contact_id: str | None = None
    #: A cancel received here waits for the lifecycle to say what it achieved.
    _uncounted: bool = False
    #: The request is cancelled (a cancel message, a fleet notice or a tombstone).
    _is_requested: bool = False
    #: Set on a cancel: what a start waits on (made when first asked for, dropped once started:
    #: an event holds about 1 KiB, and thousands of watches hold a Cancellation).
    _requested: anyio.Event | None = None
    #: Called on a cancel while the contact is watched: rings its doorbell (`watching`).
    _ring: Callable[[], object] | None = None

    def is_cancelled(self) -> bool:
        """Whether a cancel is known here (`cancelled` also looks for a tombstone)."""
        return self._is_requested

    @property
    def requested(self) -> anyio.Event:
        """Set once the request is cancelled: ends a wait for the start budget or capacity."""
        if self._requested is None:
            self._requested = anyio.Event()
            if self._is_requested:
                self._requested.set()
        return self._requested

    def request(self, tombstone: Tombstone | None = None, *, counted: bool = False) -> None:
        """The request is cancelled. `counted`: this worker received the cancel and counts it
        (a second cancel for the same request is counted `too_late` at once)."""
        if counted:
            if self._is_requested or self.stage is Stage.TOO_LATE:
                self._count(CancelResult.TOO_LATE)
            else:
                self._uncounted = True
        self.tombstone = self.tombstone or tombstone
        self._is_requested = True
        if self._requested is not None:
            self._requested.set()
        if self._ring is not None:
            self._ring()

    def settle(self, result: CancelResult) -> None:
        """The lifecycle acted on the cancel: count it, if it was received here."""
        if self._uncounted:
            self._uncounted = False
            self._count(result)

    def started(self, contact_id: str) -> None:
        self.contact_id = contact_id
        self.stage = Stage.WAITING_FOR_AGENT
        if not self._is_requested:  # no start waits on it any more
            self._requested = None

    def watching(self, ring: Callable[[], object]) -> _Watching:
        """Within the block a cancel calls `ring` (the watch's doorbell), not a task per watch."""
        return _Watching(self, ring)

    def too_late(self) -> None:
        """An agent has the contact, or the request has its final event: a cancel changes
        nothing any more."""
        self.stage = Stage.TOO_LATE
        self.settle(CancelResult.TOO_LATE)

    async def cancelled(self) -> bool:
        """Whether the request is cancelled: a cancel came, or its tombstone is found."""
        if self._is_requested:
            return True
        if self.tombstones is not None:
            found = await self.tombstones.lookup(self.request_id)
            if found is not None:
                self.request(found)
                return True
        return False

    async def withdrawn(self) -> bool:
        """Asked before a start attempt: whether the request was cancelled before its start."""
        return self.withdrawable and self.contact_id is None and await self.cancelled()

    def _count(self, result: CancelResult) -> None:
        if self.count is not None:
            self.count(result)


class _Watching:
    """`Cancellation.watching`'s block (a class: docs/design.md, "What a watched contact holds")."""

    __slots__ = ("_cancellation", "_ring")

    def __init__(self, cancellation: Cancellation, ring: Callable[[], object]) -> None:
        self._cancellation, self._ring = cancellation, ring

    def __enter__(self) -> None:
        self._cancellation._ring = self._ring

    def __exit__(self, *exc: object) -> None:
        self._cancellation._ring = None
