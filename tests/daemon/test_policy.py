"""The worker's policies as pure functions (no queue, no emulator): admission's room, the
hand-back delay, a request's shelf life, and the one backoff formula they build on."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from orchestrator.daemon.policy import expiry, hand_back_delay_s, room
from orchestrator.engine.request import parse_request
from orchestrator.retry import FULL_JITTER, backoff_s
from orchestrator.sqs import MAX_VISIBILITY_TIMEOUT_S, QueueMessage
from tests.support import request_body

ROOMY = {"max_in_flight": 100, "max_waiting_to_start": 10}


@pytest.mark.parametrize(
    ("held", "waiting", "at_capacity", "faulted", "expected"),
    [
        (0, 0, False, False, 10),  # the start budget bounds what may wait
        (50, 7, False, False, 3),
        (98, 0, False, False, 2),  # the watch bound binds
        (5, 10, False, False, 0),
        (5, 0, True, False, 1),  # at the call cap: one probe...
        (5, 1, True, False, 0),  # ...and only one
        (100, 0, True, False, 0),
        (0, 0, False, True, 0),  # a deployment fault: nothing new
    ],
)
def test_admission_room(
    held: int, waiting: int, at_capacity: bool, faulted: bool, expected: int
) -> None:
    got = room(
        held=held,
        waiting_to_start=waiting,
        at_capacity=at_capacity,
        faulted=faulted,
        **ROOMY,
    )
    assert got == expected


def test_backoff_doubles_from_the_first_delay_up_to_the_cap() -> None:
    delays = [backoff_s(n, first_s=1.0, max_s=30.0) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_s(10_000, first_s=1.0, max_s=30.0) == 30.0  # no overflow, however many


def test_backoff_jitter_draws_within_its_fractions_of_the_delay() -> None:
    rng = random.Random(4)
    full = [backoff_s(3, first_s=1.0, max_s=30.0, jitter=FULL_JITTER, rng=rng) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in full) and max(full) - min(full) > 3.0
    half = [backoff_s(3, first_s=1.0, max_s=30.0, jitter=(0.5, 1.0), rng=rng) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in half)


def test_hand_back_delay_grows_per_receive_and_stays_within_sqs_limit() -> None:
    rng = random.Random(1)
    delays = [hand_back_delay_s(n, base_s=10, max_s=900, rng=rng) for n in range(1, 9)]
    ceilings = [10, 20, 40, 80, 160, 320, 640, 900]
    assert all(0.8 * c - 1 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    huge = hand_back_delay_s(30, base_s=40_000, max_s=10**6, rng=rng)
    assert huge <= MAX_VISIBILITY_TIMEOUT_S


def message(receive_count: int = 1, sent_at: float | None = 1_000.0) -> QueueMessage:
    return QueueMessage("m-1", "{}", "receipt", receive_count=receive_count, sent_at=sent_at)


def test_shelf_life_is_the_earlier_of_the_ttl_and_expires_at() -> None:
    plain = parse_request(request_body("r-1"))
    by_ttl = expiry(message(), plain, ttl_s=300)
    assert by_ttl is not None and (by_ttl.not_after, by_ttl.limit) == (1_300.0, "request_ttl_s=300")
    stamp = datetime.fromtimestamp(1_100.0, UTC).isoformat()
    dated = parse_request(request_body("r-2", ExpiresAt=stamp))
    by_date = expiry(message(), dated, ttl_s=300)
    assert by_date is not None and by_date.not_after == 1_100.0
    assert by_date.limit.startswith("ExpiresAt=")
    assert expiry(message(), plain, ttl_s=0) is None
    assert expiry(message(sent_at=None), plain, ttl_s=300) is None


def test_a_redelivery_never_expires_its_contact_may_exist() -> None:
    stamp = datetime.fromtimestamp(1_100.0, UTC).isoformat()
    dated = parse_request(request_body("r-3", ExpiresAt=stamp))
    assert expiry(message(receive_count=2), dated, ttl_s=300) is None
