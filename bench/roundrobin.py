"""The comparison poller of scenario 2: round-robin under the same DescribeContact budget.

It starts every contact (StartWebRTCContact with the same ClientTokens as the orchestrator), then
runs ONE loop that takes the next waiting contact in the ring, spends a token of the shared
budget (the orchestrator's own `RateBudget`, same quotas and headroom), describes it, and puts it
back at the end of the ring while it still waits. A contact seen connected to an agent leaves the
ring and gets StartScreenSharing at once; one seen disconnected leaves the ring. Every waiting
contact is therefore polled once per cycle of `len(ring) / rate` seconds, whatever its age: the
policy the queue-aware watch is measured against.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from botocore.exceptions import ClientError

from orchestrator.connect.gateway import connect_client_config
from orchestrator.connect.operations import Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.request import client_token

from .common import REGION, request_id, request_params
from .daemon import aio_session

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

_THROTTLED = frozenset(
    {"ThrottlingException", "LimitExceededException", "TooManyRequestsException"}
)


@dataclass
class RoundRobinStats:
    started: int = 0
    start_failures: int = 0
    polls: int = 0
    poll_errors: int = 0
    throttled: int = 0
    shared: int = 0
    share_failures: int = 0
    gave_up: int = 0
    errors: list[str] = field(default_factory=list)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class RoundRobinPoller:
    def __init__(self, client: ConnectClient, budget: RateBudget, run: str) -> None:
        self._client = client
        self._budget = budget
        self._run = run
        self._ring: deque[tuple[int, str]] = deque()
        self._added = anyio.Event()
        self.stats = RoundRobinStats()

    def _note(self, text: str) -> None:
        if len(self.stats.errors) < 20:
            self.stats.errors.append(text)

    async def _start(self, index: int, limiter: anyio.CapacityLimiter) -> None:
        params: Any = {
            **request_params(index),
            "ClientToken": client_token(request_id(self._run, index), "start"),
        }
        async with limiter:
            while True:
                await self._budget[Operation.START_WEBRTC_CONTACT].acquire()
                try:
                    response = await self._client.start_web_rtc_contact(**params)
                except ClientError as exc:
                    if _code(exc) in _THROTTLED:
                        self._budget[Operation.START_WEBRTC_CONTACT].on_throttle()
                        continue
                    self.stats.start_failures += 1
                    self._note(f"start {index}: {_code(exc)}")
                    return
                break
        self.stats.started += 1
        self._ring.append((index, response["ContactId"]))
        self._added.set()

    async def _share(self, index: int, contact_id: str) -> None:
        token = client_token(request_id(self._run, index), "screen-sharing")
        while True:
            await self._budget[Operation.START_SCREEN_SHARING].acquire()
            try:
                await self._client.start_screen_sharing(
                    InstanceId=request_params(index)["InstanceId"],
                    ContactId=contact_id,
                    ClientToken=token,
                )
            except ClientError as exc:
                if _code(exc) in _THROTTLED:
                    self._budget[Operation.START_SCREEN_SHARING].on_throttle()
                    continue
                self.stats.share_failures += 1
                self._note(f"share {index}: {_code(exc)}")
                return
            self.stats.shared += 1
            return

    async def run(self, count: int, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        limiter = anyio.CapacityLimiter(50)
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as starts:
                for index in range(count):
                    starts.start_soon(self._start, index, limiter)
                # The ring is polled while contacts are still being started.
                await self._poll(tg, count, deadline)
            self.stats.gave_up = len(self._ring)

    async def _poll(self, tg: anyio.abc.TaskGroup, count: int, deadline: float) -> None:
        describe = self._budget[Operation.DESCRIBE_CONTACT]
        while time.monotonic() < deadline:
            finished = self.stats.started + self.stats.start_failures
            if not self._ring:
                if finished >= count:
                    return
                self._added = anyio.Event()
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                    await self._added.wait()
                continue
            index, contact_id = self._ring.popleft()
            await describe.acquire()
            try:
                response = await self._client.describe_contact(
                    InstanceId=request_params(index)["InstanceId"], ContactId=contact_id
                )
            except ClientError as exc:
                self.stats.poll_errors += 1
                if _code(exc) in _THROTTLED:
                    self.stats.throttled += 1
                    describe.on_throttle()
                self._ring.append((index, contact_id))
                continue
            self.stats.polls += 1
            contact = response["Contact"]
            if (contact.get("AgentInfo") or {}).get("ConnectedToAgentTimestamp") is not None:
                tg.start_soon(self._share, index, contact_id)
            elif contact.get("DisconnectTimestamp") is None:
                self._ring.append((index, contact_id))


async def run_round_robin(
    endpoint_url: str, count: int, run: str, quotas: Mapping[str, Quota], deadline_s: float
) -> dict[str, Any]:
    """Start `count` contacts and follow them round-robin; returns the poller's own counters."""
    session = aio_session()
    budget = RateBudget(quotas, headroom=0.03)
    started = time.monotonic()
    async with session.create_client(
        "connect", region_name=REGION, endpoint_url=endpoint_url, config=connect_client_config()
    ) as client:
        poller = RoundRobinPoller(client, budget, run)
        await poller.run(count, deadline_s)
    s = poller.stats
    wall = time.monotonic() - started
    return {
        "started": s.started,
        "start_failures": s.start_failures,
        "polls": s.polls,
        "poll_errors": s.poll_errors,
        "throttled_seen": s.throttled,
        "screen_sharing_started": s.shared,
        "screen_sharing_failures": s.share_failures,
        "still_waiting_at_deadline": s.gave_up,
        "wall_s": wall,
        "polls_per_s": s.polls / wall if wall > 0 else math.nan,
        "errors": s.errors,
    }
