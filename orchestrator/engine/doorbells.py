"""Doorbells: how a watch is woken before its pause ends.

Each watch has a `Doorbell`; `ContactNotifier.ring(contact_id)` rings the doorbells of a contact
(Connect contact events, queue-aware polling); a rung watch polls at once and `rearm`s its
doorbell, and a watch woken by a contact event polls at top priority (the budget goes to
confirmations first). Polling stays the fallback: a lost notification costs at most one backoff
interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio

from orchestrator.engine.frontier import QueueFrontier


class Doorbell:
    """A watch's doorbell: `event` is set when someone rings; `urgent` when a contact event rang
    it since the last `rearm`."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.urgent = anyio.Event()

    @property
    def by_event(self) -> bool:
        """Whether a contact event rang since the last `rearm`."""
        return self.urgent.is_set()

    def ring(self, *, by_event: bool = False) -> None:
        if by_event:
            self.urgent.set()
        self.event.set()

    def rearm(self) -> None:
        if self.event.is_set():
            self.event = anyio.Event()
        if self.urgent.is_set():
            self.urgent = anyio.Event()


class ContactNotifier:
    """The watches of one engine: wakes them on outside notifications (e.g. Connect contact
    events) and keeps the queue frontier that queue-aware polling reads."""

    def __init__(self) -> None:
        self._doorbells: dict[str, list[Doorbell]] = {}
        self.frontier = QueueFrontier()
        #: Asked when a watch subscribes: did a contact event for this contact arrive before
        #: anyone watched it? (Set by `LocalContactEvents`.) If so, the watch polls at once.
        self.early_events: Callable[[str], bool] | None = None

    @contextmanager
    def subscribe(self, contact_id: str) -> Iterator[Doorbell]:
        doorbell = Doorbell()
        if self.early_events is not None and self.early_events(contact_id):
            doorbell.ring(by_event=True)
        self._doorbells.setdefault(contact_id, []).append(doorbell)
        try:
            yield doorbell
        finally:
            remaining = self._doorbells[contact_id]
            remaining.remove(doorbell)
            if not remaining:
                del self._doorbells[contact_id]
                self.frontier.forget(contact_id)

    def watches(self, contact_id: str) -> bool:
        """Whether a watch of `contact_id` runs here."""
        return contact_id in self._doorbells

    def ring(self, contact_id: str, *, by_event: bool = False) -> bool:
        """Wake every watch of `contact_id` (`by_event`: a contact event says something happened
        to it); False if nobody watches it here."""
        doorbells = self._doorbells.get(contact_id)
        if not doorbells:
            return False
        for doorbell in doorbells:
            doorbell.ring(by_event=by_event)
        return True

    def __len__(self) -> int:
        return len(self._doorbells)
