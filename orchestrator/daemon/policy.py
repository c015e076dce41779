"""The worker's policies, as pure functions: how many messages admission lets in, how long a
message waits before it comes back after a transient failure, when a request's shelf life ends."""

from __future__ import annotations

import random
from datetime import UTC

from orchestrator.daemon.renewal import earlier_receives
from orchestrator.engine.lifecycle import Expiry
from orchestrator.engine.request import CallRequest
from orchestrator.retry import backoff_s
from orchestrator.sqs import MAX_VISIBILITY_TIMEOUT_S, QueueMessage


def room(
    *,
    held: int,
    waiting_to_start: int,
    max_in_flight: int,
    max_waiting_to_start: int,
    at_capacity: bool,
    faulted: bool,
) -> int:
    """How many messages the worker may receive now (admission by start capacity): none while
    the deployment is at fault; at the instance's concurrent-call cap, one to probe whether
    capacity freed up (when none is waiting already); else what both bounds leave."""
    if faulted:
        return 0
    if at_capacity:
        return 1 if waiting_to_start == 0 and held < max_in_flight else 0
    return min(max_in_flight - held, max_waiting_to_start - waiting_to_start)


def hand_back_delay_s(
    receive_count: int, *, base_s: float, max_s: float, rng: random.Random | None = None
) -> int:
    """Hand-back delay after a transient failure: `base_s` doubled per receive after the first,
    capped at `max_s`, 80 to 100 % of that (so a burst of failures comes back spread out), and
    never more than SQS can hide a message."""
    delay = backoff_s(receive_count, first_s=base_s, max_s=max_s, jitter=(0.8, 1.0), rng=rng)
    return int(min(MAX_VISIBILITY_TIMEOUT_S, delay))


def expiry(message: QueueMessage, request: CallRequest, *, ttl_s: float) -> Expiry | None:
    """The request's shelf life: `ttl_s` after the message was sent (0: none) or the request's
    own ExpiresAt, whichever comes first; none for a redelivery (or a renewed copy,
    `renewal.py`), whose contact may exist."""
    if message.receive_count > 1 or earlier_receives(message):
        return None
    limits: list[tuple[float, str]] = []
    if ttl_s > 0 and message.sent_at is not None:
        limits.append((message.sent_at + ttl_s, f"request_ttl_s={ttl_s:g}"))
    if request.expires_at is not None:
        stamp = request.expires_at.astimezone(UTC)
        limits.append((stamp.timestamp(), "ExpiresAt=" + stamp.isoformat()))
    if not limits:
        return None
    not_after, limit = min(limits)
    return Expiry(not_after, limit, sent_at=message.sent_at)
