"""The comparison poller of the detection scenario: round-robin under the same DescribeContact
budget.

It starts every contact (StartWebRTCContact with the same ClientTokens as the orchestrator), then
runs ONE loop that takes the next waiting contact in the ring, spends a token of the shared
budget (the orchestrator's own `RateBudget`, same quotas and headroom), describes it (a few calls
in flight, so that the budget's rate, not the round trip, sets the pace on a loaded machine), and
puts it back at the end of the ring while it still waits. A contact seen connected to an agent
leaves the ring and gets StartScreenSharing at once; one seen disconnected leaves the ring. Every
waiting contact is therefore polled once per cycle of `len(ring) / rate` seconds, whatever its
age: the policy the queue-aware watch is measured against.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from orchestrator.connect.gateway import connect_client_config
from orchestrator.connect.operations import Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.request import client_token
from orchestrator.testing.requests import REGION

from .harness import Quotas, request_id, request_params

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

#: Calls `start(index)` for each contact to start, when it is due; returns how many it started.
Feed = Callable[[Callable[[int], object]], Awaitable[int]]
#: DescribeContact calls in flight at most.
IN_FLIGHT = 20
_THROTTLED = frozenset(
    {"ThrottlingException", "LimitExceededException", "TooManyRequestsException"}
)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class RoundRobinPoller:
    def __init__(self, client: ConnectClient, budget: RateBudget, run: str) -> None:
        self._client = client
        self._budget = budget
        self._run = run
        self._ring: deque[tuple[int, str]] = deque()
        self._added = anyio.Event()
        #: How many contacts are started in all, once `feed` knows.
        self._count: int | None = None
        #: started, start_failures, polls, poll_errors, throttled, shared, share_failures
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    async def _until_done(
        self, operation: Operation, call: Callable[[], Awaitable[Any]], what: str
    ) -> Any:
        """`call()` within the budget, again after each 429; None (counted) after another
        error."""
        while True:
            await self._budget[operation].acquire()
            try:
                return await call()
            except ClientError as exc:
                if _code(exc) in _THROTTLED:
                    self._budget[operation].on_throttle()
                    continue
                self.counts[f"{what}_failures"] += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{what}: {_code(exc)}")
                return None

    async def _start(self, index: int, limiter: anyio.CapacityLimiter) -> None:
        token = client_token(request_id(self._run, index), "start")
        params: Any = {**request_params(index), "ClientToken": token}
        async with limiter:
            response = await self._until_done(
                Operation.START_WEBRTC_CONTACT,
                lambda: self._client.start_web_rtc_contact(**params),
                "start",
            )
        if response is not None:
            self.counts["started"] += 1
            self._ring.append((index, response["ContactId"]))
            self._added.set()

    async def _share(self, index: int, contact_id: str) -> None:
        token = client_token(request_id(self._run, index), "screen-sharing")
        instance = request_params(index)["InstanceId"]
        shared = await self._until_done(
            Operation.START_SCREEN_SHARING,
            lambda: self._client.start_screen_sharing(
                InstanceId=instance, ContactId=contact_id, ClientToken=token
            ),
            "share",
        )
        if shared is not None:
            self.counts["shared"] += 1

    async def run(self, feed: Feed, deadline_s: float) -> int:
        """Start the contacts `feed` asks for and follow them until none waits (and `feed` is
        done) or the deadline: how many still waited then."""
        deadline = time.monotonic() + deadline_s
        limiter = anyio.CapacityLimiter(50)
        async with anyio.create_task_group() as tg, anyio.create_task_group() as starts:

            async def feeding() -> None:
                self._count = await feed(
                    lambda index: starts.start_soon(self._start, index, limiter)
                )
                self._added.set()

            starts.start_soon(feeding)
            # The ring is polled while contacts are still being started.
            await self._poll(tg, deadline)
        return len(self._ring)  # the screen-sharing tasks leave the ring alone

    async def _poll(self, tg: anyio.abc.TaskGroup, deadline: float) -> None:
        """Take the next contact of the ring as each token comes, and poll it in a task of its
        own (a few in flight), so that the budget's rate, not the round trip, sets the pace: the
        poller spends its whole budget even when the machine is loaded. A polled contact goes
        back to the end of the ring."""
        describe = self._budget[Operation.DESCRIBE_CONTACT]
        in_flight = anyio.Semaphore(IN_FLIGHT)
        while time.monotonic() < deadline:
            if not self._ring:
                done = self.counts["started"] + self.counts["start_failures"]
                if self._count is not None and done >= self._count and in_flight.value == IN_FLIGHT:
                    return
                self._added = anyio.Event()
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                    await self._added.wait()
                continue
            index, contact_id = self._ring.popleft()
            await in_flight.acquire()
            await describe.acquire()
            tg.start_soon(self._describe, tg, in_flight, index, contact_id)

    async def _describe(
        self, tg: anyio.abc.TaskGroup, in_flight: anyio.Semaphore, index: int, contact_id: str
    ) -> None:
        describe = self._budget[Operation.DESCRIBE_CONTACT]
        try:
            response = await self._client.describe_contact(
                InstanceId=request_params(index)["InstanceId"], ContactId=contact_id
            )
        except ClientError as exc:
            self.counts["poll_errors"] += 1
            if _code(exc) in _THROTTLED:
                self.counts["throttled"] += 1
                describe.on_throttle()
            self._back(index, contact_id)
            return
        finally:
            in_flight.release()
            self._added.set()  # the loop may be waiting for the last calls in flight
        self.counts["polls"] += 1
        contact = response["Contact"]
        if (contact.get("AgentInfo") or {}).get("ConnectedToAgentTimestamp") is not None:
            tg.start_soon(self._share, index, contact_id)
        elif contact.get("DisconnectTimestamp") is None:
            self._back(index, contact_id)

    def _back(self, index: int, contact_id: str) -> None:
        self._ring.append((index, contact_id))
        self._added.set()


async def run_round_robin(
    endpoint_url: str, feed: Feed, run: str, quotas: Quotas, deadline_s: float
) -> dict[str, Any]:
    """Start the contacts `feed` asks for (`bench.center.feed`) and follow them round-robin;
    returns the poller's own counters."""
    budget = RateBudget({op: Quota(r, b) for op, (r, b) in quotas.items()}, headroom=0.03)
    started = time.monotonic()
    async with AioSession().create_client(
        "connect", region_name=REGION, endpoint_url=endpoint_url, config=connect_client_config()
    ) as client:
        poller = RoundRobinPoller(client, budget, run)
        waiting = await poller.run(feed, deadline_s)
    c, wall = poller.counts, time.monotonic() - started
    return {
        **{k: c[k] for k in ("started", "start_failures", "polls", "poll_errors")},
        "throttled_seen": c["throttled"],
        "screen_sharing_started": c["shared"],
        "screen_sharing_failures": c["share_failures"],
        "still_waiting_at_deadline": waiting,
        "wall_s": wall,
        "polls_per_s": c["polls"] / wall if wall > 0 else math.nan,
        "errors": poller.errors,
    }
