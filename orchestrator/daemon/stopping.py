"""How long a stop takes: the deadlines of `Worker.stop()` and the bound the deploy files'
termination grace periods are derived from (docs/operations.md, "Stopping").

From the first SIGTERM (or SIGINT):

* messages whose contact has not started go back at once;
* started lifecycles run on until the grace period ends, `grace_period_s` after the signal
  (`stop_deadline`), the pending long poll's wait included;
* the pending long poll returns what it took (it goes back to the queue at once) within its wait,
  `wait_time_s`; one still pending `POLL_MARGIN_S` later is wedged and cut off
  (`poll_deadline`). It is not cut at the signal: SQS goes on with an abandoned poll, which
  would take the messages handed back meanwhile and hide them for their visibility timeout;
* then what is left is cancelled and handed back, the sinks flush and the process exits,
  within `STOP_MARGIN_S`.

So a worker exits at most `stop_bound_s` after the signal:

    stop_bound_s = max(grace_period_s, wait_time_s + POLL_MARGIN_S) + STOP_MARGIN_S

(grace_period_s + 5 s whenever the grace period covers the longest poll, 20 + 5 s), and a deploy
file's termination grace (compose `stop_grace_period`, Kubernetes
`terminationGracePeriodSeconds`, systemd `TimeoutStopSec`) must be at least that; the files in
deploy/ add `DEPLOY_SLACK_S` for a slow host: max(30, 25) + 5 + 10 = 45 s by default.
"""

from __future__ import annotations

from orchestrator.daemon.options import WorkerOptions

#: A long poll still pending this long past its wait time after a stop is wedged: cut it off.
POLL_MARGIN_S = 5.0
#: After the grace period: cancel and hand back what is left, flush the sinks, exit.
STOP_MARGIN_S = 5.0
#: What the deploy files give a stop beyond `stop_bound_s`, for a slow or loaded host.
DEPLOY_SLACK_S = 10.0


def stop_deadline(signalled_at: float, options: WorkerOptions) -> float:
    """When the grace period of a stop signalled at `signalled_at` ends (same clock)."""
    return signalled_at + options.grace_period_s


def poll_deadline(now: float, options: WorkerOptions) -> float:
    """The latest a long poll pending at a stop may return (its wait, plus a margin for a
    wedged one)."""
    return now + options.wait_time_s + POLL_MARGIN_S


def stop_bound_s(grace_period_s: float, wait_time_s: float) -> float:
    """Seconds from the first signal to the worker's exit, at most."""
    return max(grace_period_s, wait_time_s + POLL_MARGIN_S) + STOP_MARGIN_S


def deploy_grace_s(grace_period_s: float, wait_time_s: float) -> float:
    """The termination grace period the deploy files give the worker."""
    return stop_bound_s(grace_period_s, wait_time_s) + DEPLOY_SLACK_S
