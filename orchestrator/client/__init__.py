"""The producer's side: submit a call request and await its connection data and its outcome.

See `client.CallClient` (and docs/integrating.md)."""

from orchestrator.client.call import Call
from orchestrator.client.client import CallClient
from orchestrator.client.events import CallEnded, CallEvent, CallTimeout, ClientError
from orchestrator.client.reply_queue import (
    CREATED_AT_TAG,
    RETENTION_S,
    ROLE,
    ROLE_TAG,
    create_reply_queue,
    stale_reply_queues,
)
from orchestrator.engine.events import EventType
from orchestrator.engine.request import RequestRejected

__all__ = [
    "CREATED_AT_TAG",
    "RETENTION_S",
    "ROLE",
    "ROLE_TAG",
    "Call",
    "CallClient",
    "CallEnded",
    "CallEvent",
    "CallTimeout",
    "ClientError",
    "EventType",
    "RequestRejected",
    "create_reply_queue",
    "stale_reply_queues",
]
