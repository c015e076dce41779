"""What a chaos run does: its sizes, faults and schedule (`ChaosPlan`), the requests it sends
(valid ones of three kinds, and a set of poison messages), and how its processes are configured."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.request import RequestRejected, parse_request
from orchestrator.testing.poison import Poison
from orchestrator.testing.requests import FLOW_ID, INSTANCE_ID, cancel_body, customer_document


@dataclass(frozen=True)
class ChaosPlan:
    """Sizes, faults and the chaos schedule of one run. The defaults are the short run of the
    test suite (well under a minute on a loaded 2-core machine); `bench.soak` scales them up."""

    requests: int = 100
    #: The share of the valid requests that are also cancelled: their cancel is shuffled in with
    #: everything else, so it comes before its request, while it waits, or after its end.
    cancel_share: float = 0.1
    #: Copies of the poison set (12 messages each, ids made unique per copy).
    poison_sets: int = 1
    workers: int = 2
    kills: int = 3
    graceful_stops: int = 1
    seed: int = 20261121
    # Queues.
    visibility_timeout_s: int = 5
    max_receive_count: int = 5
    max_in_flight: int = 60
    # The emulated contact center and its faults.
    error_rate: float = 0.05
    drop_rate: float = 0.02
    latency_ms: tuple[float, float] = (5.0, 80.0)
    abandon_rate: float = 0.10
    agent_delay_s: tuple[float, float] = (0.3, 2.0)
    talk_time_s: tuple[float, float] = (3.0, 8.0)
    max_concurrent_calls: int = 40
    #: (operation, rate per second, burst): the account's quotas, emulated and configured.
    quotas: tuple[tuple[str, float, float], ...] = (
        ("StartWebRTCContact", 8.0, 5.0),
        ("DescribeContact", 30.0, 30.0),
        ("StartScreenSharing", 8.0, 5.0),
    )
    #: Valid requests on the queue without a final event yet, at most (None: send all at once).
    #: moto's ReceiveMessage costs O(queue depth) (about 0.5 s a call at 1,000 messages), so a
    #: long soak feeds the queue as it drains, as producers do, instead of filling it up front.
    backlog: int | None = None
    #: Chaos strikes when this share of the valid requests has a final event, drawn uniformly.
    window: tuple[float, float] = (0.05, 0.8)
    #: How long the queue may take to drain, and a worker to exit after SIGTERM.
    deadline_s: float = 100.0
    stop_timeout_s: float = 30.0
    grace_period_s: float = 2.0


@dataclass(frozen=True)
class Planned:
    request_id: str
    body: str
    #: "share" (screen sharing wanted and allowed), "declines" (ScreenSharing false) or
    #: "not-allowed" (the customer may not share their screen).
    kind: str


def plan_requests(plan: ChaosPlan, rng: random.Random) -> list[Planned]:
    """The valid requests: 70 % want screen sharing, 15 % decline it, 15 % may not share."""
    out = []
    for index in range(plan.requests):
        request_id = f"chaos-{plan.seed}-{index:05d}"
        document = customer_document(request_id, index)
        draw = rng.random()
        if draw < 0.70:
            kind = "share"
        elif draw < 0.85:
            kind = "declines"
            document["ScreenSharing"] = False
        else:
            kind = "not-allowed"
            document["AllowedCapabilities"]["Customer"] = {"Video": "SEND"}
        out.append(Planned(request_id, json.dumps(document), kind))
    return out


def plan_cancels(plan: ChaosPlan, valid: list[Planned]) -> list[str]:
    """The requests that are cancelled too (drawn from their own seeded generator, so the rest
    of the schedule does not change with `cancel_share`)."""
    rng = random.Random(plan.seed + 20)
    return [v.request_id for v in valid if rng.random() < plan.cancel_share]


def poison_set(copy: int, seed: int) -> list[Poison]:
    """Twelve invalid messages: unreadable ones (no RequestId can be read, or none to tell) and
    readable ones."""
    p = f"poison-{seed}-{copy}"
    surrogate = (
        '{"RequestId": "%s-surrogate", "InstanceId": "%s", "ContactFlowId": "%s", '  # noqa: UP031
        '"ParticipantDetails": {"DisplayName": "Jane \\ud800"}}' % (p, INSTANCE_ID, FLOW_ID)
    )
    poisons = [
        Poison(f"this is not JSON, copy {copy} {{", None),
        Poison(f"[{copy}, 2, 3]", None),
        Poison(json.dumps({**customer_document(12345, copy), "Note": copy}), None),
        Poison(
            json.dumps(
                {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": p}
            ),
            None,
        ),
        Poison("[" * 5000 + str(copy) + "]" * 5000, None),
        Poison(
            json.dumps(
                customer_document(
                    f"{p}-long-name", 0, ParticipantDetails={"DisplayName": "x" * 300}
                )
            ),
            f"{p}-long-name",
        ),
        Poison(
            json.dumps(
                customer_document(f"{p}-types", 0, ParticipantDetails="Jane", ScreenSharing="yes")
            ),
            f"{p}-types",
        ),
        Poison(
            json.dumps(
                customer_document(
                    f"{p}-attributes", 0, Attributes={f"k{i}": "v" * 1000 for i in range(40)}
                )
            ),
            f"{p}-attributes",
        ),
        Poison(
            json.dumps(customer_document(f"{p}-callback", 0, CallbackUrl="https://evil.example/")),
            f"{p}-callback",
        ),
        Poison(surrogate, f"{p}-surrogate"),
        # A malformed cancel naming a live request: nothing may be emitted for that request.
        Poison(cancel_body(f"chaos-{seed}-{copy:05d}", X=1), None),
        Poison(
            json.dumps(
                {**customer_document(f"{p}-many-keys", 0), **{f"x{i}": 0 for i in range(5000)}}
            ),
            f"{p}-many-keys",
        ),
    ]
    for poison in poisons:  # the plan checks itself: each is rejected as expected
        if _rejected_as(poison.text) != (poison.request_id,):
            raise AssertionError(f"not rejected as planned: {poison.text[:80]}")
    return poisons


def _rejected_as(body: str) -> tuple[str | None, ...]:
    """(the RequestId of the rejection,) or () when the body is accepted."""
    try:
        parse_request(body)
    except RequestRejected as rejected:
        return (rejected.request_id,)
    return ()


# -- how the processes are configured -------------------------------------------------------------


def quotas(plan: ChaosPlan) -> dict[str, tuple[float, float]]:
    """{operation: (rate, burst)}: the account's quotas, emulated and configured."""
    return {operation: (rate, burst) for operation, rate, burst in plan.quotas}


def worker_settings(plan: ChaosPlan) -> dict[str, Any]:
    """The settings of this plan's `orchestrator run` workers, beyond endpoints, queues and
    quotas (`orchestrator.testing.workers.worker_env` adds those)."""
    return {
        "QUEUE__WAIT_TIME_S": 1,
        "QUEUE__VISIBILITY_TIMEOUT_S": plan.visibility_timeout_s,
        "QUEUE__MAX_IN_FLIGHT": plan.max_in_flight,
        "QUEUE__RETRY_BASE_DELAY_S": 1,
        "QUEUE__RETRY_MAX_DELAY_S": 4,
        # Every worker takes the whole quota: together they overshoot it and get throttled.
        "CONNECT__QUOTA_SHARE": 1.0,
        "CONNECT__RETRY_MAX_ATTEMPTS": 8,
        "CONNECT__RETRY_MAX_TIME_S": 30,
        "CONNECT__CAPACITY_MAX_WAIT_S": 60,
        "WATCH__FIRST_DELAY_S": 0.2,
        "WATCH__MULTIPLIER": 1.5,
        "WATCH__MAX_INTERVAL_S": 1.0,
        "WATCH__MAX_WAIT_S": 120,
        "WATCH__HEAD_INTERVAL_S": 0.5,
        "SHUTDOWN__GRACE_PERIOD_S": plan.grace_period_s,
    }


def emulator_args(plan: ChaosPlan) -> list[str]:
    """The `orchestrator emulator` options of this plan's contact center and faults (its quotas
    are `quotas`)."""

    def span(pair: tuple[float, float]) -> str:
        return f"{pair[0]:g}:{pair[1]:g}"

    return [
        "--seed", str(plan.seed),
        "--agent-delay", span(plan.agent_delay_s),
        "--talk-time", span(plan.talk_time_s),
        "--abandon-rate", str(plan.abandon_rate),
        "--max-concurrent-calls", str(plan.max_concurrent_calls),
        "--error-rate", str(plan.error_rate),
        "--drop-rate", str(plan.drop_rate),
        "--latency", span(plan.latency_ms),
    ]  # fmt: skip
