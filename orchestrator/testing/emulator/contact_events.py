"""Publishes "Amazon Connect Contact Event" records, delivered the way EventBridge delivers them.

Connect sends these to EventBridge; a rule routes them to an SQS queue. The emulator sends them
straight to an SQS queue (through aiobotocore) and/or appends them to a JSONL file, so that an
event-driven watch can be built and tested against the same records.

Delivery is best effort, as in AWS: with `events_drop_rate` an event is never delivered, with
`events_duplicate_rate` it is delivered twice (same `id`), and `events_delay_s` delays every
delivered copy by its own random time, so events arrive out of order. Every decision comes from
one generator seeded from the emulator's seed, in the order the transitions happen.

The simulation calls `submit` synchronously; records wait in a heap ordered by delivery time and
one task (owned by the app's cleanup context) ships what is due, in SQS batches of up to ten.
Nothing on a request's path waits for a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog
from aiobotocore.session import get_session

from .center import Contact
from .config import EmulatorConfig

log = structlog.get_logger("orchestrator.testing.emulator")

DETAIL_TYPE = "Amazon Connect Contact Event"
#: What AWS's own CONTACT_DATA_UPDATED samples carry in timestamps that have no value yet.
PLACEHOLDER_TIMESTAMP = "1970-01-01T00:00:00.001Z"

_SQS_BATCH = 10
#: SQS batches sent at once by the delivery task.
_PARALLEL_BATCHES = 8

#: Credentials for a local SQS endpoint (it accepts any): the emulator runs without AWS keys.
_LOCAL_KEY = "emulator"


def iso_ms(ts: float) -> str:
    """Epoch seconds -> `2021-08-04T17:17:53.000Z`, the form of the timestamps in `detail`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_s(ts: float) -> str:
    """Epoch seconds -> `2021-08-04T17:43:48Z`, the form of the envelope's `time`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def contact_event(
    contact: Contact, event_type: str, at: float, config: EmulatorConfig, *, event_id: str
) -> dict[str, Any]:
    """One record: the contact as it is at `at`, in the EventBridge envelope Connect uses."""
    instance_arn = contact.arn.split("/contact/")[0]
    detail: dict[str, Any] = {
        "eventType": event_type,
        "contactId": contact.id,
        "initialContactId": contact.id,
        "channel": "VOICE",
        "instanceArn": instance_arn,
        "initiationMethod": "WEBRTC_API",
        "initiationTimestamp": iso_ms(contact.created_at),
    }
    if contact.enqueued_at is not None:
        detail["queueInfo"] = {
            "queueType": "STANDARD",
            "queueArn": f"{instance_arn}/queue/{contact.queue_id}",
            "enqueueTimestamp": iso_ms(contact.enqueued_at),
        }
    if contact.connected_at is not None:
        detail["agentInfo"] = {
            "agentArn": f"{instance_arn}/agent/{contact.agent_id}",
            "connectedToAgentTimestamp": iso_ms(contact.connected_at),
        }
    if event_type == "CONTACT_DATA_UPDATED":
        # AWS's samples fill timestamps that have no value yet with the epoch plus 1 ms: a
        # consumer deciding on the presence of `agentInfo` would think an agent answered.
        detail["connectedToSystemTimestamp"] = PLACEHOLDER_TIMESTAMP
        detail.setdefault("agentInfo", {"connectedToAgentTimestamp": PLACEHOLDER_TIMESTAMP})
    if contact.disconnected_at is not None:
        detail["disconnectTimestamp"] = iso_ms(contact.disconnected_at)
    detail["tags"] = {"aws:connect:instanceId": contact.instance_id}
    return {
        "version": "0",
        "id": event_id,
        "detail-type": DETAIL_TYPE,
        "source": "aws.connect",
        "account": config.account_id,
        "time": iso_s(at),
        "region": config.region,
        "resources": [contact.arn, instance_arn],
        "detail": detail,
    }


def _append(path: str, text: str) -> None:
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(text)


class ContactEventPublisher:
    """Turns transitions into records, decides their fate and ships them from one task."""

    def __init__(self, config: Callable[[], EmulatorConfig], *, seed: int | None) -> None:
        self._config = config
        #: Drop, duplicate and delay decisions.
        self._rng = random.Random(None if seed is None else seed + 3)
        #: Event ids: never from the seed, so that an emulator restarted with the same seed does
        #: not publish ids a consumer already saw (it would drop the new events as duplicates).
        self._id_rng = random.Random(secrets.randbits(128))
        self._pending: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._generation = 0
        self.reset()

    def reset(self) -> None:
        """Forget counters and records not yet shipped (a batch in flight is not counted)."""
        self._pending.clear()
        self._generation += 1
        #: Copies delivered (a duplicated event counts twice).
        self.published = 0
        self.failures = 0
        #: Events never delivered, and events delivered twice.
        self.dropped = 0
        self.duplicated = 0
        self.dropped_events: list[dict[str, str]] = []

    @property
    def enabled(self) -> bool:
        cfg = self._config()
        return bool(cfg.events_queue_url or cfg.events_jsonl_path)

    @property
    def pending(self) -> int:
        """Copies waiting for their delivery time."""
        return len(self._pending)

    def stats(self) -> dict[str, Any]:
        return {
            "contact_events_published": self.published,
            "contact_events_failed": self.failures,
            "contact_events_dropped": self.dropped,
            "contact_events_duplicated": self.duplicated,
            "contact_events_pending": self.pending,
            "events_dropped": list(self.dropped_events),
        }

    def submit(self, contact: Contact, event_type: str, at: float) -> None:
        """Record a transition; never blocks (called from the synchronous simulation)."""
        if not self.enabled:
            return
        cfg = self._config()
        event_id = str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))
        record = contact_event(contact, event_type, at, cfg, event_id=event_id)
        drop, duplicate = self._rng.random(), self._rng.random()
        if drop < cfg.events_drop_rate:
            self.dropped += 1
            contact.events_dropped.append(event_type)
            self.dropped_events.append(
                {"id": event_id, "contactId": contact.id, "eventType": event_type}
            )
            return
        copies = 2 if duplicate < cfg.events_duplicate_rate else 1
        self.duplicated += copies - 1
        now = time.monotonic()
        low, high = cfg.events_delay_s
        for _ in range(copies):
            delay = self._rng.uniform(low, high) if high > 0 else 0.0
            heapq.heappush(self._pending, (now + delay, next(self._seq), record))
        self._wakeup.set()

    def _take_due(self, now: float) -> list[dict[str, Any]]:
        due: list[dict[str, Any]] = []
        while self._pending and self._pending[0][0] <= now:
            due.append(heapq.heappop(self._pending)[2])
            if len(due) == _SQS_BATCH * _PARALLEL_BATCHES:
                break
        return due

    async def run(self) -> None:
        """Ship records as they fall due, until cancelled."""
        if not self.enabled:
            return
        cfg = self._config()
        async with contextlib.AsyncExitStack() as stack:
            sqs = None
            if cfg.events_queue_url:
                sqs = await stack.enter_async_context(
                    get_session().create_client(
                        "sqs",
                        region_name=cfg.region,
                        endpoint_url=cfg.events_endpoint_url,
                        # A local SQS server takes any key; the emulator needs none of its own.
                        aws_access_key_id=_LOCAL_KEY if cfg.events_endpoint_url else None,
                        aws_secret_access_key=_LOCAL_KEY if cfg.events_endpoint_url else None,
                    )
                )
            while True:
                self._wakeup.clear()
                now = time.monotonic()
                due = self._take_due(now)
                if due:
                    await self._deliver(due, sqs)
                    continue
                timeout = self._pending[0][0] - now if self._pending else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _deliver(self, records: list[dict[str, Any]], sqs: Any) -> None:
        cfg = self._config()
        generation = self._generation
        delivered, failed = len(records), 0
        if cfg.events_jsonl_path:
            lines = "".join(json.dumps(r) + "\n" for r in records)
            try:
                await anyio.to_thread.run_sync(_append, cfg.events_jsonl_path, lines)
            except OSError as exc:
                log.warning("emulator.contact_events_failed", error=repr(exc))
                delivered, failed = 0, len(records)
        if sqs is not None and cfg.events_queue_url and delivered:
            batches = [records[i : i + _SQS_BATCH] for i in range(0, len(records), _SQS_BATCH)]
            results = await asyncio.gather(
                *(self._send_batch(sqs, cfg.events_queue_url, batch) for batch in batches)
            )
            failed = sum(results)
            delivered = len(records) - failed
        if generation == self._generation:
            self.published += delivered
            self.failures += failed

    @staticmethod
    async def _send_batch(sqs: Any, queue_url: str, batch: list[dict[str, Any]]) -> int:
        """Send one batch; answers how many records failed."""
        try:
            answer = await sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "MessageBody": json.dumps(r)} for i, r in enumerate(batch)],
            )
        except Exception as exc:  # a test tool: report and keep going
            log.warning("emulator.contact_events_failed", error=repr(exc))
            return len(batch)
        failed = answer.get("Failed", [])
        if failed:
            log.warning("emulator.contact_events_failed", error=repr(failed[0]))
        return len(failed)
