"""Publishes EventBridge-shaped "Amazon Connect Contact Event" records for every transition.

Connect sends these to EventBridge; a rule routes them to an SQS queue. The emulator sends them
straight to an SQS queue (through aiobotocore) and/or appends them to a JSONL file, so that an
event-driven watch can be built and tested against the same records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog
from aiobotocore.session import get_session

from .center import Contact
from .config import EmulatorConfig

log = structlog.get_logger("orchestrator.testing.emulator")

_BATCH = 10


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def contact_event(contact: Contact, event_type: str, config: EmulatorConfig) -> dict[str, Any]:
    """One record, shaped like the EventBridge event Connect publishes."""
    instance_arn = contact.arn.split("/contact/")[0]
    detail: dict[str, Any] = {
        "eventType": event_type,
        "contactId": contact.id,
        "initialContactId": contact.id,
        "channel": "VOICE",
        "instanceArn": instance_arn,
        "initiationMethod": "WEBRTC_API",
        "initiationTimestamp": _iso(contact.created_at),
    }
    if contact.enqueued_at is not None:
        detail["queueInfo"] = {
            "queueArn": f"{instance_arn}/queue/{contact.queue_id}",
            "enqueueTimestamp": _iso(contact.enqueued_at),
        }
    if contact.connected_at is not None:
        detail["agentInfo"] = {
            "agentArn": f"{instance_arn}/agent/{contact.agent_id}",
            "connectedToAgentTimestamp": _iso(contact.connected_at),
        }
    if contact.disconnected_at is not None:
        detail["disconnectTimestamp"] = _iso(contact.disconnected_at)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Amazon Connect Contact Event",
        "source": "aws.connect",
        "account": config.account_id,
        "time": _iso(contact.last_update),
        "region": config.region,
        "resources": [instance_arn, contact.arn],
        "detail": detail,
    }


def _append(path: str, text: str) -> None:
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(text)


class ContactEventPublisher:
    """Buffers records from the (synchronous) simulation and ships them from one task."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.published = 0
        self.failures = 0

    def reset(self) -> None:
        """Forget counters and records not yet shipped."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self.published = 0
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return bool(self._config.events_queue_url or self._config.events_jsonl_path)

    def submit(self, contact: Contact, event_type: str) -> None:
        if self.enabled:
            self._queue.put_nowait(contact_event(contact, event_type, self._config))

    async def run(self) -> None:
        """Ship records until cancelled."""
        if not self.enabled:
            return
        cfg = self._config
        queue_url = cfg.events_queue_url
        async with contextlib.AsyncExitStack() as stack:
            sqs = None
            if queue_url:
                sqs = await stack.enter_async_context(
                    get_session().create_client(
                        "sqs", region_name=cfg.region, endpoint_url=cfg.events_endpoint_url
                    )
                )
            while True:
                batch = [await self._queue.get()]
                while len(batch) < _BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                try:
                    if cfg.events_jsonl_path:
                        lines = "".join(json.dumps(r) + "\n" for r in batch)
                        await anyio.to_thread.run_sync(_append, cfg.events_jsonl_path, lines)
                    if sqs is not None and queue_url:
                        await sqs.send_message_batch(
                            QueueUrl=queue_url,
                            Entries=[
                                {"Id": str(i), "MessageBody": json.dumps(r)}
                                for i, r in enumerate(batch)
                            ],
                        )
                    self.published += len(batch)
                except Exception as exc:  # a test tool: report and keep going
                    self.failures += len(batch)
                    log.warning("emulator.contact_events_failed", error=repr(exc))
