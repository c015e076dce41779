"""The emulated contact center: contacts, their transitions and the two queue models.

This is a discrete-event simulation. Every future transition (enqueue, agent connects, customer
abandons, call ends) sits in a heap with the exact time it happens. `advance(now)` applies every
transition due by `now` at its own scheduled time, so the timestamps DescribeContact reports and
the ground truth under `/_emulator/contacts` are exact, whenever the server happens to look.

Two queue models:

* simple (default): after the flow queues it, a contact waits uniform(`agent_delay_s`) for an
  agent, or (with probability `abandon_rate`) hangs up before that;
* contact center (`agents` set): contacts wait in one queue served by `agents` agents; an agent
  stays busy for uniform(`handle_time_s`) per call; a customer hangs up when uniform(`patience_s`)
  runs out. Time to agent emerges from the load. A free agent takes the oldest waiting contact
  (`service_order` "fifo") or, like skills-based routing seen from one queue, a uniformly random
  one ("random", drawn from the seeded generator).

A contact's life, as contact events name it: INITIATED, CONTACT_DATA_UPDATED (the flow stores the
request's data), QUEUED, CONNECTED_TO_AGENT, DISCONNECTED, then COMPLETED once the agent's
after-contact work ends (at once when no agent took the call).
"""

from __future__ import annotations

import base64
import heapq
import itertools
import random
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .config import EmulatorConfig

#: ClientToken idempotency window of StartWebRTCContact.
IDEMPOTENCY_WINDOW_S = 7 * 24 * 3600.0


class ContactState(StrEnum):
    INITIATED = "INITIATED"
    QUEUED = "QUEUED"
    CONNECTED_TO_AGENT = "CONNECTED_TO_AGENT"
    DISCONNECTED = "DISCONNECTED"


class Action(StrEnum):
    ENQUEUE = "enqueue"
    CONNECT = "connect"
    ABANDON = "abandon"
    HANG_UP = "hang_up"
    COMPLETE = "complete"
    #: Another application's contact arrives in the queue (`background_arrival_rate`).
    ARRIVE = "arrive"


#: The instance id of other applications' contacts: they share the queue and the agents, not
#: the instance's concurrent-call cap of the contacts under test.
BACKGROUND_INSTANCE = "background"


@dataclass
class Contact:
    """One WebRTC contact and everything the emulator knows about it."""

    id: str
    arn: str
    instance_id: str
    contact_flow_id: str
    client_token: str | None
    request: dict[str, Any]
    participant_id: str
    participant_token: str
    connection_data: dict[str, Any]
    queue_id: str
    created_at: float
    state: ContactState = ContactState.INITIATED
    enqueued_at: float | None = None
    connected_at: float | None = None
    disconnected_at: float | None = None
    disconnect_reason: str | None = None
    #: When after-contact work ended (COMPLETED); None while the contact or its wrap-up goes on.
    completed_at: float | None = None
    agent_id: str | None = None
    pool_agent: bool = False
    screen_sharing_started_at: float | None = None
    screen_sharing_count: int = 0
    screen_sharing_tokens: set[str] = field(default_factory=set)
    describe_calls: int = 0
    #: When a DescribeContact last answered for it: an agent who connected after that and
    #: before a stop was in the race no caller can close (see `ground_truth`).
    last_described_at: float | None = None
    #: When StopContact ended it, and whether an agent was on it then (which must never be).
    stopped_at: float | None = None
    stopped_with_agent: bool = False
    #: Kept from every agent by the control API (`hold`): it waits until it ends.
    held: bool = False
    #: Contact-event types of this contact that were never delivered (`events_drop_rate`).
    events_dropped: list[str] = field(default_factory=list)
    #: Bumped by a forced transition so that transitions scheduled before it no longer apply.
    version: int = 0
    #: Another application's contact (`background_contacts`): in the queue, not in `Contacts`.
    background: bool = False
    #: Place in the order of arrival in the queue (FIFO service order), once queued.
    queue_order: int | None = None
    #: GetContactMetrics calls for this contact.
    metrics_calls: int = 0

    @property
    def capabilities(self) -> dict[str, dict[str, str]]:
        allowed = self.request.get("AllowedCapabilities") or {}
        return {side: dict(allowed.get(side) or {}) for side in ("Customer", "Agent")}

    @property
    def last_update(self) -> float:
        stamps = (self.created_at, self.enqueued_at, self.connected_at, self.disconnected_at)
        return max(s for s in stamps if s is not None)

    def describe(self) -> dict[str, Any]:
        """The `Contact` member of a DescribeContact response."""
        contact: dict[str, Any] = {
            "Arn": self.arn,
            "Id": self.id,
            "InitialContactId": self.id,
            "InitiationMethod": "WEBRTC_API",
            "Channel": "VOICE",
            "InitiationTimestamp": self.created_at,
            "ConnectedToSystemTimestamp": self.created_at,
            "LastUpdateTimestamp": self.last_update,
            "Customer": {"Capabilities": self.capabilities["Customer"]},
        }
        if self.request.get("RelatedContactId"):
            contact["RelatedContactId"] = self.request["RelatedContactId"]
        if self.request.get("Description") is not None:
            contact["Description"] = self.request["Description"]
        if self.request.get("Attributes"):
            contact["Attributes"] = dict(self.request["Attributes"])
        if self.enqueued_at is not None:
            contact["QueueInfo"] = {"Id": self.queue_id, "EnqueueTimestamp": self.enqueued_at}
        if self.connected_at is not None:
            agent: dict[str, Any] = {
                "Id": self.agent_id,
                "ConnectedToAgentTimestamp": self.connected_at,
                "Capabilities": self.capabilities["Agent"],
            }
            if self.disconnected_at is not None:
                agent["AfterContactWorkStartTimestamp"] = self.disconnected_at
            if self.disconnected_at is not None and self.completed_at is not None:
                agent["AfterContactWorkEndTimestamp"] = self.completed_at
                agent["AfterContactWorkDuration"] = round(self.completed_at - self.disconnected_at)
            contact["AgentInfo"] = agent
        if self.disconnected_at is not None:
            contact["DisconnectTimestamp"] = self.disconnected_at
            contact["DisconnectReason"] = self.disconnect_reason
        return contact

    def ground_truth(self) -> dict[str, Any]:
        """What `/_emulator/contacts` reports; secrets (tokens, description) are redacted."""
        body = {k: v for k, v in self.request.items() if k != "ClientToken"}
        if "Description" in body:
            body["Description"] = "***"
        return {
            "ContactId": self.id,
            "InstanceId": self.instance_id,
            "ClientToken": self.client_token,
            "Request": body,
            "State": self.state.value,
            "AgentId": self.agent_id,
            "CreatedAt": self.created_at,
            "QueueId": self.queue_id,
            "EnqueuedAt": self.enqueued_at,
            "ConnectedToAgentAt": self.connected_at,
            "DisconnectedAt": self.disconnected_at,
            "DisconnectReason": self.disconnect_reason,
            "CompletedAt": self.completed_at,
            "ContactEventsDropped": list(self.events_dropped),
            "ScreenSharingStartedAt": self.screen_sharing_started_at,
            "ScreenSharingStarts": self.screen_sharing_count,
            "DescribeContactCalls": self.describe_calls,
            "LastDescribedAt": self.last_described_at,
            "GetContactMetricsCalls": self.metrics_calls,
            "Background": self.background,
            "StoppedAt": self.stopped_at,
            "StoppedWithAgent": self.stopped_with_agent,
            "Held": self.held,
        }


#: Called for every transition with the contact, the contact-event type (INITIATED,
#: CONTACT_DATA_UPDATED, QUEUED, CONNECTED_TO_AGENT, DISCONNECTED, COMPLETED) and when it happened.
TransitionListener = Callable[[Contact, str, float], None]


class ContactCenter:
    """Holds every contact and moves them through their lives."""

    def __init__(
        self,
        config: Callable[[], EmulatorConfig],
        *,
        clock: Callable[[], float],
        rng: random.Random,
        on_transition: TransitionListener | None = None,
        wrap_up_rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        #: After-contact work draws from its own generator, so that adding it left the sequence
        #: of the other draws (delays, abandons) under a seed as it was.
        self._wrap_up_rng = wrap_up_rng or random.Random()
        #: Contact ids and secrets come from a generator of their own, seeded afresh by every
        #: emulator and never by the seed: an emulator restarted with the same seed must not
        #: reissue a contact id that a worker, a queue or a DLQ may still hold. The seed makes the
        #: simulation reproducible (delays, abandons, agents), not the ids.
        self._id_rng = random.Random(secrets.randbits(128))
        rng.getrandbits(64)  # the draw that once seeded the ids: a seed's draws stay as they were
        self._on_transition = on_transition
        self._seq = itertools.count()
        self.reset()

    # -- state -------------------------------------------------------------------------------

    def reset(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self._by_token: dict[tuple[str, str], str] = {}
        self._active: dict[str, int] = {}
        self._heap: list[tuple[float, int, str, int, Action]] = []
        self._waiting: deque[str] = deque()
        self._agents: list[str] = []
        self._free_agents: deque[str] = deque()
        self.queue_id = self._uuid()
        self._arrival_pending = False
        self._background_started = False

    def background_started(self, now: float) -> None:
        """Put the configured `background_contacts` in the queue (once after each reset) and
        plan the first arrival of `background_arrival_rate` (when none is planned)."""
        cfg = self._config()
        if not cfg.contact_center_model:
            return
        if not self._background_started:
            self._background_started = True
            for _ in range(cfg.background_contacts):
                self._arrive(now)
        if cfg.background_arrival_rate > 0 and not self._arrival_pending:
            self._arrival_pending = True
            at = now + self._rng.expovariate(cfg.background_arrival_rate)
            heapq.heappush(self._heap, (at, next(self._seq), "", 0, Action.ARRIVE))

    def add_background(self, count: int, now: float) -> list[Contact]:
        """`count` contacts of other applications join the queue now."""
        self.advance(now)
        return [self._arrive(now) for _ in range(count)]

    def _arrive(self, at: float) -> Contact:
        contact_id = self._uuid(self._id_rng)
        contact = Contact(
            id=contact_id,
            arn=f"{self.instance_arn(BACKGROUND_INSTANCE)}/contact/{contact_id}",
            instance_id=BACKGROUND_INSTANCE,
            contact_flow_id="",
            client_token=None,
            request={},
            participant_id="",
            participant_token="",
            connection_data={},
            queue_id=self.queue_id,
            created_at=at,
            background=True,
        )
        self.contacts[contact_id] = contact
        self._enqueue(contact, at, patience=False)
        return contact

    def position(self, contact: Contact) -> int | None:
        """Where `contact` waits in its queue (1: next), counting every application's contacts
        in FIFO order of arrival; None when it is not in queue."""
        if contact.state is not ContactState.QUEUED or contact.queue_order is None:
            return None
        ahead = sum(
            1
            for other in self.contacts.values()
            if other.state is ContactState.QUEUED
            and other.queue_order is not None
            and other.queue_order < contact.queue_order
        )
        return ahead + 1

    def estimated_wait_s(self, contact: Contact, position: int, now: float) -> float:
        """The estimated wait: position * mean handle time / agents (contact-center model), or
        what is left of the mean agent delay (simple model)."""
        cfg = self._config()
        if cfg.contact_center_model and cfg.agents:
            return position * sum(cfg.handle_time_s) / 2 / cfg.agents
        waited = now - (contact.enqueued_at or now)
        return max(0.0, sum(cfg.agent_delay_s) / 2 - waited)

    def _uuid(self, rng: random.Random | None = None) -> str:
        return str(uuid.UUID(int=(rng or self._rng).getrandbits(128), version=4))

    def _secret(self, nbytes: int) -> str:
        return base64.urlsafe_b64encode(self._id_rng.randbytes(nbytes)).decode().rstrip("=")

    def instance_arn(self, instance_id: str) -> str:
        cfg = self._config()
        return f"arn:aws:connect:{cfg.region}:{cfg.account_id}:instance/{instance_id}"

    def active_calls(self, instance_id: str) -> int:
        return self._active.get(instance_id, 0)

    def next_event_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    # -- operations --------------------------------------------------------------------------

    def find_by_token(self, instance_id: str, client_token: str, now: float) -> Contact | None:
        contact_id = self._by_token.get((instance_id, client_token))
        if contact_id is None:
            return None
        contact = self.contacts[contact_id]
        if now - contact.created_at > IDEMPOTENCY_WINDOW_S:
            return None
        return contact

    def start_contact(self, params: dict[str, Any], now: float) -> Contact:
        """Create a contact for a validated StartWebRTCContact request."""
        cfg = self._config()
        instance_id = params["InstanceId"]
        contact_id = self._uuid(self._id_rng)
        meeting_id = self._uuid(self._id_rng)
        host = f"{meeting_id[:8]}.k.m1.ue1.app.chime.aws"
        connection_data = {
            "Attendee": {"AttendeeId": self._uuid(self._id_rng), "JoinToken": self._secret(48)},
            "Meeting": {
                "MediaRegion": cfg.region,
                "MeetingId": meeting_id,
                "MediaPlacement": {
                    "AudioHostUrl": f"{host}:3478",
                    "AudioFallbackUrl": f"wss://haxrp.m1.ue1.app.chime.aws:443/calls/{meeting_id}",
                    "SignalingUrl": "wss://signal.m1.ue1.app.chime.aws/control/" + meeting_id,
                    "TurnControlUrl": "https://2713.cell.us-east-1.meetings.chime.aws/v2/turn_sessions",
                    "EventIngestionUrl": "https://data.svc.ue1.ingest.chime.aws/v1/client-events",
                },
                "MeetingFeatures": {"Audio": {"EchoReduction": "AVAILABLE"}},
            },
        }
        contact = Contact(
            id=contact_id,
            arn=f"{self.instance_arn(instance_id)}/contact/{contact_id}",
            instance_id=instance_id,
            contact_flow_id=params["ContactFlowId"],
            client_token=params.get("ClientToken"),
            request=dict(params),
            participant_id=self._uuid(self._id_rng),
            participant_token=self._secret(192),
            connection_data=connection_data,
            queue_id=self.queue_id,
            created_at=now,
        )
        self.contacts[contact_id] = contact
        if contact.client_token:
            self._by_token[(instance_id, contact.client_token)] = contact_id
        self._active[instance_id] = self._active.get(instance_id, 0) + 1
        contact.held = contact.client_token in cfg.held_client_tokens
        self._notify(contact, "INITIATED", now)
        self._notify(contact, "CONTACT_DATA_UPDATED", now)
        self._schedule(now + cfg.flow_delay_s, contact, Action.ENQUEUE)
        return contact

    def force_connect(self, contact: Contact, now: float) -> bool:
        """Connect a waiting contact to an agent now, outside the pool. False if not waiting."""
        self.advance(now)
        if contact.state not in (ContactState.INITIATED, ContactState.QUEUED):
            return False
        contact.version += 1
        if contact.enqueued_at is None:
            self._queued(contact, now)
        self._connect(contact, now, agent_id=self._uuid(), pool_agent=False)
        return True

    def force_disconnect(self, contact: Contact, now: float) -> bool:
        """End a contact now, whatever its state. False if it had already ended."""
        self.advance(now)
        if contact.state is ContactState.DISCONNECTED:
            return False
        contact.version += 1
        reason = "AGENT_DISCONNECT" if contact.connected_at is not None else "CUSTOMER_DISCONNECT"
        self._disconnect(contact, now, reason)
        return True

    def stop_contact(self, contact: Contact, now: float) -> bool:
        """StopContact: end the contact now (DisconnectReason `API`); no agent ever gets it
        after. False if it had ended already."""
        self.advance(now)
        if contact.state is ContactState.DISCONNECTED:
            return False
        contact.version += 1  # what was scheduled for it (an agent, an abandon) never happens
        contact.stopped_at = now
        contact.stopped_with_agent = contact.state is ContactState.CONNECTED_TO_AGENT
        self._disconnect(contact, now, "API")
        return True

    def hold(self, contact: Contact, now: float) -> bool:
        """Keep a waiting contact from every agent: it stays queued until it is stopped or
        disconnected. False if it no longer waits."""
        self.advance(now)
        if contact.state not in (ContactState.INITIATED, ContactState.QUEUED):
            return False
        contact.version += 1
        contact.held = True
        if contact.enqueued_at is None:
            contact.enqueued_at = now
            contact.state = ContactState.QUEUED
            self._notify(contact, "QUEUED", now)
        return True

    # -- simulation --------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Apply every transition due at or before `now`, each at its own scheduled time."""
        while self._heap and self._heap[0][0] <= now:
            at, _, contact_id, version, action = heapq.heappop(self._heap)
            if action is Action.ARRIVE:
                self._arrival_pending = False
                self._arrive(at)
                self.background_started(at)
                continue
            contact = self.contacts.get(contact_id)
            if contact is None or contact.version != version:
                continue
            self._apply(contact, action, at)

    def _schedule(self, at: float, contact: Contact, action: Action) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), contact.id, contact.version, action))

    def _apply(self, contact: Contact, action: Action, at: float) -> None:
        cfg = self._config()
        if action is Action.ENQUEUE and contact.state is ContactState.INITIATED:
            if contact.held:  # held from its start: it waits until stopped or hung up
                self._queued(contact, at)
            elif cfg.contact_center_model:
                self._enqueue(contact, at, patience=True)
            else:
                self._queued(contact, at)
                wait = self._rng.uniform(*cfg.agent_delay_s)
                if self._rng.random() < cfg.abandon_rate:
                    self._schedule(at + self._rng.uniform(0.0, wait), contact, Action.ABANDON)
                else:
                    self._schedule(at + wait, contact, Action.CONNECT)
        elif action is Action.CONNECT and contact.state is ContactState.QUEUED:
            self._connect(contact, at, agent_id=self._uuid(), pool_agent=False)
        elif (action is Action.ABANDON and contact.state is ContactState.QUEUED) or (
            action is Action.HANG_UP and contact.state is ContactState.CONNECTED_TO_AGENT
        ):
            self._disconnect(contact, at, "CUSTOMER_DISCONNECT")
        elif action is Action.COMPLETE and contact.state is ContactState.DISCONNECTED:
            contact.completed_at = at
            if not contact.background:
                self._notify(contact, "COMPLETED", at)

    def _queued(self, contact: Contact, at: float) -> None:
        contact.state = ContactState.QUEUED
        contact.enqueued_at = at
        contact.queue_order = next(self._seq)
        if not contact.background:
            self._notify(contact, "QUEUED", at)

    def _enqueue(self, contact: Contact, at: float, *, patience: bool) -> None:
        """Contact-center model: the contact joins the line; agents take it in service order."""
        cfg = self._config()
        self._queued(contact, at)
        self._waiting.append(contact.id)
        if patience:
            self._schedule(at + self._rng.uniform(*cfg.patience_s), contact, Action.ABANDON)
        self._dispatch(at)

    def _connect(self, contact: Contact, at: float, *, agent_id: str, pool_agent: bool) -> None:
        cfg = self._config()
        contact.state = ContactState.CONNECTED_TO_AGENT
        contact.connected_at = at
        contact.agent_id = agent_id
        contact.pool_agent = pool_agent
        if not contact.background:
            self._notify(contact, "CONNECTED_TO_AGENT", at)
        talk = cfg.handle_time_s if pool_agent else cfg.talk_time_s
        self._schedule(at + self._rng.uniform(*talk), contact, Action.HANG_UP)

    def _disconnect(self, contact: Contact, at: float, reason: str) -> None:
        contact.state = ContactState.DISCONNECTED
        contact.disconnected_at = at
        contact.disconnect_reason = reason
        if not contact.background:
            self._active[contact.instance_id] -= 1
            self._notify(contact, "DISCONNECTED", at)
        wrap_up = 0.0
        if contact.connected_at is not None:
            wrap_up = self._wrap_up_rng.uniform(*self._config().after_contact_work_s)
        self._schedule(at + wrap_up, contact, Action.COMPLETE)
        if contact.pool_agent and contact.agent_id is not None:
            self._free_agents.append(contact.agent_id)
            self._dispatch(at)

    def _dispatch(self, at: float) -> None:
        """Contact-center model: free agents take waiting contacts, in `service_order`."""
        cfg = self._config()
        if not cfg.contact_center_model:
            return
        while cfg.agents is not None and len(self._agents) < cfg.agents:
            agent = self._uuid()
            self._agents.append(agent)
            self._free_agents.append(agent)
        while self._free_agents and self._waiting:
            if cfg.service_order == "random":
                index = self._rng.randrange(len(self._waiting))
                contact = self.contacts[self._waiting[index]]
                del self._waiting[index]
            else:
                contact = self.contacts[self._waiting.popleft()]
            if contact.state is not ContactState.QUEUED or contact.held:
                continue
            self._connect(contact, at, agent_id=self._free_agents.popleft(), pool_agent=True)

    def _notify(self, contact: Contact, event_type: str, at: float) -> None:
        if self._on_transition is not None:
            self._on_transition(contact, event_type, at)

    # -- screen sharing ----------------------------------------------------------------------

    def screen_sharing_refusal(self, contact: Contact) -> str | None:
        """Why StartScreenSharing cannot start on `contact` now, or None if it can."""
        if contact.state is ContactState.DISCONNECTED:
            return f"Contact {contact.id} has ended; screen sharing cannot start."
        if contact.state is not ContactState.CONNECTED_TO_AGENT:
            return f"Contact {contact.id} is not connected to an agent yet."
        caps = contact.capabilities
        if (
            caps["Customer"].get("ScreenShare") != "SEND"
            or caps["Agent"].get("ScreenShare") != "SEND"
        ):
            return (
                f"Screen sharing is not allowed on contact {contact.id}: AllowedCapabilities must "
                "set ScreenShare=SEND for both Customer and Agent."
            )
        return None

    def start_screen_sharing(self, contact: Contact, client_token: str | None, now: float) -> None:
        contact.screen_sharing_count += 1
        if contact.screen_sharing_started_at is None:
            contact.screen_sharing_started_at = now
        if client_token:
            contact.screen_sharing_tokens.add(client_token)
