"""Where each waiting customer is in line: `contact.queue_position` events, with GetContactMetrics
spent where the answer most likely changed.

No contact event announces a position change: it has to be asked for, one contact per call, from
a small budget (2/s for the whole account by default). So one loop per engine (`QueuePositions.run`,
a service of the worker's task group) asks one contact at a time as tokens come, and the choice of
whom to ask is a pure function (`next_to_ask`) of what is known:

* a contact queued but never answered yet goes first (oldest first): the customer's first
  position should come within seconds of `contact.started`;
* then the expected change since the last answer: in a queue that serves the oldest contact first,
  every contact leaves from the head, so **each answer about one contact tells how many left ahead
  of every contact behind it too** (its position fell by more than the departures already known),
  and so does each connection of one of our contacts (by contact event or poll), and a first answer
  nearer than one behind the nearest contact of ours ahead of it. The queue's count
  of departures (`_Line.departed`) thus moves with every answer and every connection seen, and the
  queue's service rate (departures per second, learned from them) times the time since the last
  answer is how many departures are expected but not known yet. Once that reaches
  `min_expected_change`, one contact of the queue is asked: the one whose own answer is oldest
  relative to its place (the head more often, a contact at #40 rarely, but each at least every
  `max_age_s`);
* between calls, a contact's position is **inferred**: its last confirmed position minus the
  departures ahead known since (never below 1), emitted with `data.source = "inferred"`; a
  confirmed answer carries `source = "connect"`. Other applications' contacts share the queue, so
  a position is never our own rank: it is Connect's number, moved by what was seen since.
  Without inference (`infer = false`), each contact's expected change is its own (the queue's
  rate times the age of its answer) and only answers are emitted.

A contact's events go through the lifecycle's sink in order (`PositionUpdates`), and none after
`contact.agent_connected` or a final event: the lifecycle closes the contact's updates under the
same lock before it emits either. Connect's answers decide nothing else: an answer "not in queue"
(before queueing, after the agent) emits nothing and is asked again later; AccessDenied or an
operation this endpoint does not know turns the feature off for the process, with one warning.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from orchestrator.bounds import Bounded, declared
from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.gateway import ConnectGateway, ContactMetrics, ContactSnapshot
from orchestrator.engine.frontier import QueueFrontier
from orchestrator.errors import ConnectError, FeatureUnavailable, SinkError, ThrottledError

log = structlog.get_logger("orchestrator.engine.queue_position")

#: Departures per second assumed for a queue before anything was learned of it.
_PRIOR_RATE = 0.1
#: A queue's service rate is measured over its answers of the last this many seconds...
_RATE_WINDOW_S = 60.0
#: ...once they span at least this long (before: Connect's estimate, else the prior).
_RATE_MIN_SPAN_S = 5.0
#: The key of contacts whose queue is not known (asked all the same, never inferred).
_UNPLACED = ""


@dataclass(frozen=True)
class PositionPolicy(Bounded):
    """When to ask GetContactMetrics, and what counts as news. Defaults: docs/design.md."""

    enabled: bool = declared(
        True,
        "Tell waiting customers their place in line: contact.queue_position events from "
        "GetContactMetrics (its budget is [connect] get_contact_metrics_rate/_burst).",
    )
    infer: bool = declared(
        True,
        "Between calls, infer each position from the departures seen ahead of it since its "
        "last answer (connections of our older contacts, other contacts' answers); inferred "
        'events carry data.source = "inferred".',
    )
    min_expected_change: float = declared(
        0.5,
        "Ask again once this many places of change are expected since the last answer (the "
        "queue's service rate times the time since).",
        gt=0,
    )
    max_age_s: float = declared(
        60.0, "Ask each waiting contact at least this often (seconds).", gt=0
    )
    unplaced_after_s: float = declared(
        3.0,
        "A contact whose queue is not known yet (no QUEUED event, no poll showing it) is asked "
        "this many seconds after it started all the same.",
        gt=0,
    )
    retry_s: float = declared(
        2.0,
        "A contact not in queue yet, or whose call failed, is asked again after this long.",
        gt=0,
    )
    estimate_change_s: float = declared(
        10.0,
        "A new estimated wait is news only if it moved by more than max(this many seconds, "
        "estimate_change_share of the last one told).",
        ge=0,
    )
    estimate_change_share: float = declared(0.2, "See estimate_change_s.", ge=0)
    fixed_refresh_s: float = declared(
        0.0,
        "For comparison only (the naive approach): ask every waiting contact every this many "
        "seconds and nothing else. 0: the policy above.",
        ge=0,
    )
    #: With nothing to ask, the loop looks again this often (placements arrive without a ring).
    idle_recheck_s: float = 0.25


# -- the policy: whom to ask next ---------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """What the policy knows of one waiting contact."""

    contact_id: str
    #: Epoch seconds: when it was registered, and when its last answer was asked (None: never).
    registered_at: float
    asked_at: float | None
    #: Its queue is known (a QUEUED event or a poll placed it).
    placed: bool
    #: Its position as last confirmed or inferred (None: no answer yet).
    position: int | None
    #: Places of change expected since its position was last known.
    expected_change: float
    #: Not to be asked before this (epoch seconds): not in queue yet, or its call failed.
    retry_at: float = 0.0


def next_to_ask(candidates: list[Candidate], policy: PositionPolicy, now: float) -> str | None:
    """The contact whose answer most likely changed, or None when none is worth a call now."""
    ready = [
        c
        for c in candidates
        if c.retry_at <= now and (c.placed or now - c.registered_at >= policy.unplaced_after_s)
    ]
    never = [c for c in ready if c.asked_at is None or c.position is None]
    if never:
        return min(never, key=lambda c: c.registered_at).contact_id
    if policy.fixed_refresh_s > 0:
        due = [
            c
            for c in ready
            if c.asked_at is not None and now - c.asked_at >= policy.fixed_refresh_s
        ]
        return min(due, key=lambda c: c.asked_at or 0.0).contact_id if due else None

    def age(c: Candidate) -> float:
        return now - (c.asked_at if c.asked_at is not None else c.registered_at)

    worth = [
        c
        for c in ready
        if c.expected_change >= policy.min_expected_change or age(c) >= policy.max_age_s
    ]
    if not worth:
        return None
    # The most change expected; among equals (a queue's departures are shared), the oldest
    # answer relative to its place: the head is asked more often than #40.
    best = max(
        worth,
        key=lambda c: (
            round(c.expected_change, 6),
            age(c) / math.sqrt(max(1, c.position or 1)),
        ),
    )
    return best.contact_id


def is_news(
    heard: tuple[int, float | None] | None,
    position: int,
    estimate: float | None,
    policy: PositionPolicy,
) -> bool:
    """Whether (position, estimate) is worth an event after `heard`, the last one told."""
    if heard is None or heard[0] != position:
        return True
    told = heard[1]
    if estimate is None or told is None:
        return (estimate is None) != (told is None)
    return abs(estimate - told) > max(policy.estimate_change_s, policy.estimate_change_share * told)


# -- one contact's events -------------------------------------------------------------------------

#: Publishes one `contact.queue_position` event with this data and this sequence number.
Publish = Callable[[dict[str, Any], int], Awaitable[None]]


class PositionUpdates:
    """One contact's position events, in order, and none once closed: the lifecycle closes them
    (after any publish in progress) before `contact.agent_connected` or a final event."""

    def __init__(self, publish: Publish, clock: Clock) -> None:
        self._publish = publish
        self._clock = clock
        #: Set when the publish in progress is over (None: none in progress). An event only
        #: while publishing, not a lock per watched contact (an anyio.Lock holds about 1 KiB).
        self._busy: anyio.Event | None = None
        self._last_seq = 0
        self.closed = False
        self.published = 0

    async def _turn(self) -> None:
        """Until no publish is in progress."""
        while self._busy is not None:
            await self._busy.wait()

    async def publish(self, data: dict[str, Any]) -> bool:
        """Emit one event (False: closed, nothing emitted)."""
        await self._turn()
        if self.closed:
            return False
        busy = self._busy = anyio.Event()
        try:
            # Distinct per emission, across redeliveries too: milliseconds of the emission time,
            # kept increasing.
            seq = max(self._last_seq + 1, math.floor(self._clock.time() * 1000))
            self._last_seq = seq
            await self._publish(data, seq)
            self.published += 1
            return True
        finally:
            self._busy = None
            busy.set()

    async def close(self) -> None:
        """No event after this returns; one being published finishes first."""
        await self._turn()
        self.closed = True


# -- the loop ----------------------------------------------------------------------------------


@dataclass
class _Tracked:
    instance_id: str
    updates: PositionUpdates
    registered_at: float
    queue_id: str = _UNPLACED
    enqueued_ms: int = 0
    asked_at: float | None = None
    retry_at: float = 0.0
    #: The last answer: position, estimated wait, and the queue's departures count then.
    confirmed: int | None = None
    estimate: float | None = None
    base: float = 0.0
    #: Departures ahead of it known besides the queue's count (our contacts that hung up ahead).
    left_ahead: int = 0
    #: The last (position, estimate) told the customer.
    heard: tuple[int, float | None] | None = None


@dataclass
class _Line:
    """What is known of one queue: departures from its head, counted, and their rate."""

    departed: float = 0.0
    #: Departures per second as Connect's estimated wait implies (position / estimate).
    estimated_rate: float | None = None
    #: When (epoch seconds) the last answer about one of its contacts was asked.
    answered_at: float | None = None
    #: (asked at, departures count then) of its recent answers, oldest first.
    history: deque[tuple[float, float]] = field(default_factory=deque)

    def answered(self, asked_at: float) -> None:
        if self.answered_at is None or asked_at >= self.answered_at:
            self.answered_at = asked_at
            self.history.append((asked_at, self.departed))
        while self.history and self.history[0][0] < asked_at - _RATE_WINDOW_S:
            self.history.popleft()

    @property
    def rate(self) -> float:
        """Departures per second: measured over the recent answers, else Connect's estimate,
        else the prior."""
        if len(self.history) >= 2:
            (first, before), (last, after) = self.history[0], self.history[-1]
            if last - first >= _RATE_MIN_SPAN_S:
                return max(0.0, after - before) / (last - first)
        return self.estimated_rate or _PRIOR_RATE


@dataclass(frozen=True)
class Reading:
    """A contact's position as it would be told now."""

    position: int
    estimated_wait_s: float | None
    source: str


@dataclass
class QueuePositions:
    """The engine's position service: contacts register while they wait; `run` asks Connect."""

    gateway: ConnectGateway
    frontier: QueueFrontier
    policy: PositionPolicy = field(default_factory=PositionPolicy)
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self._tracked: dict[str, _Tracked] = {}
        self._lines: dict[str, _Line] = {}
        self._wake = anyio.Event()
        #: Set once AccessDenied or an unknown operation turned the feature off.
        self.unavailable: str | None = None
        self.calls = 0
        self.throttled = 0

    @property
    def active(self) -> bool:
        return self.policy.enabled and self.unavailable is None

    def __len__(self) -> int:
        return len(self._tracked)

    # -- registration (the lifecycle) -----------------------------------------------------------

    def tracking(self, instance_id: str, contact_id: str, publish: Publish) -> Tracking:
        """While the `with` block runs, `contact_id` is asked about and its positions published;
        the block ends with `Tracking.close` (or without it, on an error or cancellation)."""
        return Tracking(self, instance_id, contact_id, PositionUpdates(publish, self.clock))

    def register(self, instance_id: str, contact_id: str, updates: PositionUpdates) -> bool:
        """`Tracking`'s entry: False (and `updates` closed) when positions are not asked."""
        if not self.active:
            updates.closed = True
            return False
        self._tracked[contact_id] = _Tracked(instance_id, updates, self.clock.time())
        self._ring()
        return True

    def unregister(self, contact_id: str, updates: PositionUpdates) -> None:
        """`Tracking`'s exit."""
        updates.closed = True
        self._tracked.pop(contact_id, None)

    def _ring(self) -> None:
        self._wake.set()

    def left(self, contact_id: str, snapshot: ContactSnapshot) -> None:
        """`contact_id` left its queue as `snapshot` shows: taken by an agent (everyone behind
        moves up, and in a FIFO queue it left from the head) or gone (those behind it move up)."""
        me = self._tracked.pop(contact_id, None)
        if me is None or not me.queue_id:
            return
        line = self._lines.setdefault(me.queue_id, _Line())
        connected = snapshot.agent_connected_at
        if connected is not None and self.frontier.fifo(me.queue_id):
            if line.answered_at is None or connected >= line.answered_at:
                line.departed += 1  # not in an answer yet: a departure from the head
        else:
            for other in self._tracked.values():
                if other.queue_id == me.queue_id and other.enqueued_ms > me.enqueued_ms:
                    other.left_ahead += 1
        self._ring()

    # -- what is known ------------------------------------------------------------------------

    def _place(self, contact_id: str, me: _Tracked) -> None:
        if me.queue_id:
            return
        place = self.frontier.place(contact_id)
        if place is not None:
            me.queue_id, me.enqueued_ms = place

    def _inferring(self, me: _Tracked) -> bool:
        return self.policy.infer and bool(me.queue_id) and self.frontier.fifo(me.queue_id)

    def reading(self, contact_id: str) -> Reading | None:
        """What `contact_id`'s customer would be told now (None: nothing known yet)."""
        me = self._tracked.get(contact_id)
        if me is None or me.confirmed is None:
            return None
        if not self._inferring(me):
            return Reading(me.confirmed, me.estimate, "connect")
        line = self._lines.get(me.queue_id, _Line())
        moved = line.departed - me.base + me.left_ahead
        position = max(1, round(me.confirmed - moved))
        if position == me.confirmed:
            return Reading(position, me.estimate, "connect")
        estimate = None if me.estimate is None else me.estimate * position / me.confirmed
        return Reading(position, estimate, "inferred")

    def candidates(self, now: float) -> list[Candidate]:
        out: list[Candidate] = []
        for contact_id, me in self._tracked.items():
            self._place(contact_id, me)
            line = self._lines.get(me.queue_id)
            rate = _PRIOR_RATE if line is None else line.rate
            reading = self.reading(contact_id)
            if self._inferring(me) and line is not None and line.answered_at is not None:
                expected = rate * (now - line.answered_at)
            else:
                expected = 0.0 if me.asked_at is None else rate * (now - me.asked_at)
            out.append(
                Candidate(
                    contact_id,
                    registered_at=me.registered_at,
                    asked_at=me.asked_at,
                    placed=bool(me.queue_id),
                    position=None if reading is None else reading.position,
                    expected_change=expected,
                    retry_at=me.retry_at,
                )
            )
        return out

    def _answered(self, contact_id: str, asked_at: float, answer: ContactMetrics) -> None:
        me = self._tracked.get(contact_id)
        if me is None:
            return
        line = self._lines.setdefault(me.queue_id, _Line())
        if me.confirmed is not None and me.queue_id:
            # What it says of everyone behind: departures ahead not known yet.
            known = line.departed - me.base + me.left_ahead
            unseen = (me.confirmed - known) - answer.position
            if unseen > 0 and self.frontier.fifo(me.queue_id):
                line.departed += unseen
        elif me.queue_id and self._inferring(me):
            # A first answer: the contacts of ours ahead of it still wait ahead of it, so it
            # stands at least one behind the nearest of them with a position; nearer means
            # departures not known yet.
            bound = self._behind_ours(contact_id, me)
            if bound is not None and answer.position < bound:
                line.departed += bound - answer.position
        if answer.estimated_wait_s:
            line.estimated_rate = answer.position / max(answer.estimated_wait_s, 1.0)
        line.answered(asked_at)
        me.confirmed, me.estimate = answer.position, answer.estimated_wait_s
        me.base, me.left_ahead = line.departed, 0

    def _behind_ours(self, contact_id: str, me: _Tracked) -> int | None:
        """The least position `contact_id` can have: one behind the nearest contact of ours
        ahead of it in its queue with a position (counting ours in between); None if none."""
        ahead = sorted(
            (other.enqueued_ms, cid)
            for cid, other in self._tracked.items()
            if cid != contact_id
            and other.queue_id == me.queue_id
            and other.enqueued_ms < me.enqueued_ms
        )
        for between, (_, cid) in enumerate(reversed(ahead)):
            reading = self.reading(cid)
            if reading is not None:
                return reading.position + between + 1
        return None

    async def _announce(self) -> None:
        """Tell every customer whose position (or estimate) changed."""
        for contact_id, me in list(self._tracked.items()):
            reading = self.reading(contact_id)
            if reading is None or me.updates.closed:
                continue
            if not is_news(me.heard, reading.position, reading.estimated_wait_s, self.policy):
                continue
            data = {
                "position": reading.position,
                "estimated_wait_s": None
                if reading.estimated_wait_s is None
                else round(reading.estimated_wait_s, 1),
                "queue_id": me.queue_id or None,
                "source": reading.source,
            }
            try:
                told = await me.updates.publish(data)
            except SinkError as error:
                # Not worth a worker: the sinks' outage shows in every other event; this one
                # is told again at the next round if it is still news then.
                log.warning("queue_position.not_delivered", contact_id=contact_id, error=str(error))
                continue
            if told:
                me.heard = (reading.position, reading.estimated_wait_s)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Ask, one contact at a time as the budget allows, until cancelled (or turned off)."""
        if not self.policy.enabled:
            return
        while self.unavailable is None:
            now = self.clock.time()
            contact_id = next_to_ask(self.candidates(now), self.policy, now)
            if contact_id is None:
                await self._announce()
                await self.clock.sleep(self.policy.idle_recheck_s, self._wake)
                if self._wake.is_set():
                    self._wake = anyio.Event()
                continue
            await self._ask(contact_id)
            await self._announce()

    async def _ask(self, contact_id: str) -> None:
        me = self._tracked[contact_id]
        asked_at = self.clock.time()
        me.asked_at = asked_at
        self.calls += 1
        try:
            answer = await self.gateway.get_contact_metrics(
                me.instance_id, contact_id, priority=me.registered_at
            )
        except FeatureUnavailable as error:
            self.unavailable = error.code
            log.warning(
                "queue_position.unavailable",
                error=error.code,
                detail="GetContactMetrics is not available to this deployment: no "
                "contact.queue_position events until restart; everything else goes on",
            )
            for tracked in self._tracked.values():
                tracked.updates.closed = True
            return
        except ThrottledError:
            self.throttled += 1
            me.retry_at = self.clock.time() + self.policy.retry_s
            return
        except ConnectError as error:
            log.info("queue_position.call_failed", contact_id=contact_id, error=error.code)
            me.retry_at = self.clock.time() + self.policy.retry_s
            return
        if answer is None:  # not in queue (yet, or any more): nothing to say
            me.retry_at = self.clock.time() + self.policy.retry_s
            if me.confirmed is None:
                me.asked_at = None
            return
        self._place(contact_id, me)
        self._answered(contact_id, asked_at, answer)


class Tracking:
    """One contact's registration, as the lifecycle holds it: a `with` block (a class:
    docs/design.md, "What a watched contact holds")."""

    __slots__ = ("_contact_id", "_instance_id", "_registered", "_service", "updates")

    def __init__(
        self,
        service: QueuePositions,
        instance_id: str,
        contact_id: str,
        updates: PositionUpdates,
    ) -> None:
        self._service = service
        self._instance_id = instance_id
        self._contact_id = contact_id
        self._registered = False
        self.updates = updates

    def __enter__(self) -> Tracking:
        self._registered = self._service.register(self._instance_id, self._contact_id, self.updates)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._registered:
            self._service.unregister(self._contact_id, self.updates)

    async def close(self, snapshot: ContactSnapshot) -> None:
        """The watch is over (`snapshot` says how): no position event from here on, and the
        contacts behind learn that this one left."""
        await self.updates.close()
        self._service.left(self._contact_id, snapshot)
