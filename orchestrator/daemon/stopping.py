"""How long a stop takes: the deadlines of `Worker.stop()` and the bound the deploy files'
termination grace periods are derived from (docs/operations.md, "Stopping").

From the first SIGTERM (or SIGINT):

* the pending long poll may return what it took (it goes back to the queue at once), but no
  later than `wait_time_s + POLL_MARGIN_S` after the signal (a wedged poll) nor than the end
  of the grace period: whichever comes first (`poll_deadline`);
* started lifecycles run on until the grace period ends, `grace_period_s` after the signal,
  the poll's wait included (`stop_deadline`); unstarted messages go back at once;
* then what is left is cancelled and handed back, the sinks flush and the process exits,
  within `STOP_MARGIN_S`.

So a worker exits at most `stop_bound_s(grace_period_s)` after the signal:

    stop_bound_s = grace_period_s + STOP_MARGIN_S

and a deploy file's termination grace (compose `stop_grace_period`, Kubernetes
`terminationGracePeriodSeconds`, systemd `TimeoutStopSec`) must be at least that; the files
shipped in deploy/ add `DEPLOY_SLACK_S` for a slow host (30 + 5 + 10 = 45 s by default).
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


def poll_deadline(now: float, stop_at: float, options: WorkerOptions) -> float:
    """The latest a long poll pending at a stop may return: within its wait (plus a margin for
    a wedged one) and within the grace period."""
    return min(stop_at, now + options.wait_time_s + POLL_MARGIN_S)


def stop_bound_s(grace_period_s: float) -> float:
    """Seconds from the first signal to the worker's exit, at most."""
    return grace_period_s + STOP_MARGIN_S


def deploy_grace_s(grace_period_s: float) -> float:
    """The termination grace period the deploy files give the worker."""
    return stop_bound_s(grace_period_s) + DEPLOY_SLACK_S
