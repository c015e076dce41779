"""A worker for tests: fast settings against local peers, and a queue source that records what
the worker asks of it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator.daemon.settings import Settings, load_settings
from orchestrator.sqs import QueueMessage, QueueSource
from orchestrator.testing.requests import REGION


def settings_for(emulator_url: str, sqs_url: str, queue_url: str, **sections: Any) -> Settings:
    """Settings for a fast worker against local peers; `sections` patch individual keys."""
    base: dict[str, dict[str, Any]] = {
        "aws": {"region": REGION, "endpoint_url": sqs_url},
        "queue": {
            "url": queue_url,
            "wait_time_s": 1,
            "visibility_timeout_s": 30,
            "retry_base_delay_s": 1,
            "retry_max_delay_s": 2,
        },
        "connect": {
            "endpoint_url": emulator_url,
            "retry_max_attempts": 4,
            "retry_max_time_s": 5,
            "capacity_max_wait_s": 20,
        },
        "watch": {
            "first_delay_s": 0.05,
            "multiplier": 1.5,
            "max_interval_s": 0.25,
            "max_wait_s": 20,
        },
        "shutdown": {"grace_period_s": 5},
        "observability": {"enabled": False},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return load_settings(None, **base)


@dataclass
class RecordingSource:
    """Wraps a real `QueueSource` and records what the worker asks of it, in order."""

    inner: QueueSource
    #: The worker's visibility timeouts (started, unstarted): a change to one of them is an
    #: extension, anything else a hand-back.
    extension_s: tuple[int, ...] = (30, 15)
    calls: list[tuple[float, str, Any]] = field(default_factory=list)
    outstanding: int = 0
    max_outstanding: int = 0

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        got = await self.inner.receive(
            max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )
        self.calls.append((time.monotonic(), "receive", (max_messages, len(got))))
        self.outstanding += len(got)
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        return got

    async def delete(self, message: QueueMessage) -> None:
        # The worker lets go of a message when it hands it over for deletion.
        self.outstanding -= 1
        await self.inner.delete(message)
        self.calls.append((time.monotonic(), "delete", message))

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        if timeout_s not in self.extension_s:  # a hand-back, not a heartbeat extension
            self.outstanding -= 1
        await self.inner.change_visibility(message, timeout_s)
        self.calls.append((time.monotonic(), "visibility", (message, timeout_s)))

    async def max_receive_count(self) -> int | None:
        return await self.inner.max_receive_count()
