"""Reading a worker process's JSON log: what a test or a benchmark can learn from it alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Log events that end a held message without its contact starting.
UNSTARTED_ENDS = frozenset({"worker.handing_back", "lifecycle.retry_later", "message.given_up"})


def log_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a worker's log (a SIGKILL may cut the last one short)."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def admission_bound(records: Sequence[Mapping[str, Any]]) -> int:
    """The bound the worker announced in its `worker.started` line."""
    started = next(r for r in records if r.get("event") == "worker.started")
    return int(started["max_waiting_to_start"])


def most_waiting_to_start(records: Sequence[Mapping[str, Any]]) -> int:
    """The most messages the worker held between their `request.received` and their contact's
    start (or another end), up to the signal that stopped it."""
    waiting: set[str] = set()
    most = 0
    for record in records:
        event, message = record.get("event"), record.get("message_id")
        if event == "worker.signal":
            break
        if message is None:
            continue
        if event == "request.received":
            waiting.add(message)
            most = max(most, len(waiting))
        elif event == "contact.started" or record.get("final") or event in UNSTARTED_ENDS:
            waiting.discard(message)
    return most
