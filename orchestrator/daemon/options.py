"""What a worker is told: `WorkerOptions`, built from the settings by `daemon.assembly`.

Each field declares its default, bounds and description once (`orchestrator.bounds`); the
`[queue]`, `[shutdown]` and `[observability]` settings read them."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.bounds import Bounded, declared
from orchestrator.daemon.cancels import TOMBSTONE_FLOOR_S
from orchestrator.engine.request import RequestDefaults
from orchestrator.sqs import MAX_VISIBILITY_TIMEOUT_S, MAX_WAIT_TIME_S


@dataclass(frozen=True)
class WorkerOptions(Bounded):
    max_in_flight: int = declared(
        1000,
        "Contacts watched at once by this worker (started lifecycles). Each mostly waits, "
        "so thousands are fine. Messages received but not started yet are bounded "
        "separately (max_waiting_to_start).",
        ge=1,
        le=100_000,
    )
    max_waiting_to_start: int = declared(
        10,
        "Messages held but not started yet, at most: admission receives a request only "
        "when StartWebRTCContact can start it soon, and the backlog stays in the queue "
        "(durable, shared by every replica, visible to autoscalers).",
        ge=1,
        le=1000,
    )
    wait_time_s: int = declared(
        MAX_WAIT_TIME_S, "Long-poll wait of ReceiveMessage, seconds.", ge=0, le=MAX_WAIT_TIME_S
    )
    visibility_timeout_s: int = declared(
        60,
        "Visibility timeout given to received messages, seconds. A heartbeat extends it "
        "while the lifecycle runs, so it only bounds how long a crashed worker's messages "
        "stay hidden.",
        ge=1,
        le=MAX_VISIBILITY_TIMEOUT_S,
    )
    unstarted_visibility_timeout_s: int = declared(
        15,
        "Visibility given on receive, until the message's contact starts (then "
        "visibility_timeout_s): a crashed worker's unstarted messages come back after this "
        "long.",
        ge=2,
        le=MAX_VISIBILITY_TIMEOUT_S,
    )
    max_receive_count: int = declared(
        5,
        "Deliveries before a request is on its last attempt (a transient failure then ends "
        "it with request.failed instead of handing it back). Read from the queue's redrive "
        "policy when it has one; this value is used when it has none.",
        ge=1,
        le=1000,
    )
    delete_rejected: bool = declared(
        False,
        "Delete invalid messages after their request.rejected event instead of handing "
        "them back so the redrive policy moves them to the dead-letter queue.",
    )
    retry_base_delay_s: int = declared(
        10,
        "After a transient failure the message is handed back hidden for "
        "min(retry_max_delay_s, retry_base_delay_s * 2^(receives - 1)) seconds, jittered.",
        ge=0,
        le=MAX_VISIBILITY_TIMEOUT_S,
    )
    retry_max_delay_s: int = declared(
        900,
        "The longest hand-back delay after a transient failure, seconds.",
        ge=0,
        le=MAX_VISIBILITY_TIMEOUT_S,
    )
    grace_period_s: float = declared(
        30.0,
        "After SIGTERM/SIGINT: seconds in-flight lifecycles may run on before they are "
        "cancelled and their messages handed back (visible at once) for another worker to "
        "resume. A second signal skips the rest. Keep your orchestrator's termination "
        "grace period above this.",
        ge=0,
    )
    request_ttl_s: float = declared(
        300.0,
        "A request not started within this many seconds of being sent (the message's "
        "SentTimestamp) ends with request.expired and never reaches Connect: a customer who "
        'pressed "call us" five minutes ago has gone. 0: never. A redelivery whose '
        "contact may already exist is never expired. Cancels that come before their "
        f"request are remembered max(request_ttl_s, {TOMBSTONE_FLOOR_S:g}) seconds.",
        ge=0,
    )
    request_defaults: RequestDefaults = field(default_factory=RequestDefaults)
    #: Back-off bounds of the receive loop after errors, and of a lifecycle retried in place
    #: while the deployment is at fault.
    receive_backoff_s: tuple[float, float] = (1.0, 30.0)
    fault_backoff_s: tuple[float, float] = (1.0, 30.0)
    #: How often the redrive policy is read again once known.
    redrive_refresh_s: float = 300.0
    progress_interval_s: float = declared(
        30.0,
        "A worker.progress log line (in flight, waiting to start, the most waiting since "
        "the last line, waiting for capacity, deployment faults, done) this often while "
        "the numbers change.",
        gt=0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
