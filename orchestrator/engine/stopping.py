"""Ending a contact the orchestrator lets go of: confirm that no agent has it, then StopContact.

Nothing documented ends a WebRTC contact whose customer never joins, or one nobody watches any
more: Connect keeps it queued and an agent may answer it minutes later, to a customer who was
told the call failed or who has gone. So whenever a lifecycle ends while its contact waits for an
agent (timed out, failed after its start, given up on its last receive, cancelled), it stops the
contact first and only then says what happened (`data.contact_stopped`).

A contact an agent has is never stopped: right before StopContact, once its StopContact token is
in hand (tokens may be seconds away when many contacts are let go at once, and an agent may
answer meanwhile), a DescribeContact at the confirmation priority checks that no agent is
connected (and that the contact has not ended by itself). What is left is a race of
milliseconds: an agent who takes the contact between that DescribeContact and StopContact. The
emulator counts such stops (`StoppedWithAgent`, told apart by `testing.ground_truth.cut_off`); the
tests and the chaos soak require that no stop follows a DescribeContact that showed an agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import structlog

from orchestrator.connect.gateway import ConnectGateway, ContactSnapshot
from orchestrator.errors import ConnectError, DeploymentError
from orchestrator.metrics import Metrics
from orchestrator.waiters import Priority

log = structlog.get_logger("orchestrator.engine.stopping")

#: DescribeContact's DisconnectReason for a contact ended by StopContact.
STOPPED_BY_API = "API"


class StopReason(StrEnum):
    """Why the orchestrator lets go of a contact (`orchestrator_contacts_stopped_total{reason}`)."""

    TIMED_OUT = "timed_out"
    FAILED = "failed"
    GIVEN_UP = "given_up"
    CANCELLED = "cancelled"


class StopResult(StrEnum):
    """What letting go found and did (`orchestrator_contacts_stopped_total{result}`)."""

    #: StopContact ended it.
    STOPPED = "stopped"
    #: It had ended already (the customer left, someone stopped it, or a 410).
    ALREADY_ENDED = "already_ended"
    #: An agent has it: it is not stopped.
    AGENT_CONNECTED = "agent_connected"
    #: The confirmation or the stop failed (after retries): it may still wait.
    ERROR = "error"


@dataclass(frozen=True)
class LetGo:
    """The outcome of letting go of a contact: `snapshot` is the confirming DescribeContact
    (None if it failed), `error` what failed."""

    result: StopResult
    snapshot: ContactSnapshot | None = None
    error: ConnectError | None = None

    @property
    def contact_stopped(self) -> bool:
        """Whether StopContact ended the contact: now, or before (its DisconnectReason is API)."""
        if self.result is StopResult.STOPPED:
            return True
        return (
            self.result is StopResult.ALREADY_ENDED
            and self.snapshot is not None
            and self.snapshot.disconnect_reason == STOPPED_BY_API
        )


async def let_go(
    gateway: ConnectGateway,
    instance_id: str,
    contact_id: str,
    reason: StopReason,
    *,
    metrics: Metrics,
    priority: Priority | float,
    fresh_since: float | None = None,
) -> LetGo:
    """Stop the contact unless an agent has it (or it has ended). Connect errors are reported
    in the answer (`StopResult.ERROR`), but for a deployment fault (StopContact not allowed, say),
    which is raised: every stop would fail the same way."""
    snapshot: ContactSnapshot | None = None
    unconfirmed: ConnectError | None = None

    async def still_waiting() -> bool:
        nonlocal snapshot, unconfirmed
        try:
            snapshot = await gateway.describe_contact(
                instance_id, contact_id, fresh_since=fresh_since, priority=priority
            )
        except DeploymentError:
            raise
        except ConnectError as error:  # retried already: the stop's policy must not retry it
            unconfirmed = error
            return False
        return snapshot.agent_connected_at is None and snapshot.disconnected_at is None

    try:
        stopped = await gateway.stop_contact(
            instance_id, contact_id, priority=priority, confirm=still_waiting
        )
    except DeploymentError:
        raise
    except ConnectError as error:
        return _told(LetGo(StopResult.ERROR, snapshot, error), reason, contact_id, metrics=metrics)
    if unconfirmed is not None:
        outcome = LetGo(StopResult.ERROR, snapshot, unconfirmed)
    elif stopped:
        outcome = LetGo(StopResult.STOPPED, snapshot)
    elif snapshot is not None and snapshot.agent_connected_at is not None:
        outcome = LetGo(StopResult.AGENT_CONNECTED, snapshot)
    else:  # it had ended, by itself or between the confirmation and the stop
        outcome = LetGo(StopResult.ALREADY_ENDED, snapshot)
    return _told(outcome, reason, contact_id, metrics=metrics)


def _told(outcome: LetGo, reason: StopReason, contact_id: str, *, metrics: Metrics) -> LetGo:
    """Count and log how letting go of a contact ended."""
    metrics.contacts_stopped.labels(reason.value, outcome.result.value).inc()
    told = log.bind(contact_id=contact_id, reason=reason.value)
    if outcome.error is not None:
        told.error(
            "contact.stop_failed", operation=outcome.error.operation, error=outcome.error.code
        )
    elif outcome.snapshot is not None:
        told.info(
            "contact.let_go",
            result=outcome.result.value,
            disconnect_reason=outcome.snapshot.disconnect_reason,
        )
    return outcome
