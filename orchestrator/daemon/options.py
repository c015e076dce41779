"""What a worker is told: `WorkerOptions`, built from the settings by `daemon.assembly`."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.engine.request import RequestDefaults


@dataclass(frozen=True)
class WorkerOptions:
    max_in_flight: int = 1000
    #: Messages held but not started yet, at most (admission by start capacity).
    max_waiting_to_start: int = 10
    wait_time_s: float = 20.0
    visibility_timeout_s: int = 60
    #: Visibility of a received message until its contact starts (then `visibility_timeout_s`).
    unstarted_visibility_timeout_s: int = 15
    #: Used when the queue has no redrive policy to read it from.
    max_receive_count: int = 5
    delete_rejected: bool = False
    retry_base_delay_s: int = 10
    retry_max_delay_s: int = 900
    grace_period_s: float = 30.0
    #: A request not started this long after it was sent expires (0: never).
    request_ttl_s: float = 0.0
    request_defaults: RequestDefaults = field(default_factory=RequestDefaults)
    #: Back-off bounds of the receive loop after errors, and of a lifecycle retried in place
    #: while the deployment is at fault.
    receive_backoff_s: tuple[float, float] = (1.0, 30.0)
    fault_backoff_s: tuple[float, float] = (1.0, 30.0)
    #: How often the redrive policy is read again once known, and the progress line's period.
    redrive_refresh_s: float = 300.0
    progress_interval_s: float = 30.0
