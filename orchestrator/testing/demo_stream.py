"""The demo's stream: one line per lifecycle event as the requester receives it, and what the
worker's log records tell about requests between receive and start (the capacity gate, waits for
the start rate or for call capacity), all with one rounding and good grammar."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO


def plural(count: int, word: str) -> str:
    """`1 poll`, `2 polls`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def seconds(value: Any) -> str:
    """A duration as every line of the demo shows it: one decimal, then `s`."""
    return "?" if value is None else f"{float(value):.1f} s"


class Printer:
    """One line per lifecycle event, and per wait the worker reports (marked `worker`)."""

    def __init__(self, out: TextIO, started: float, total: int) -> None:
        self.out = out
        self.started = started
        self.total = total
        self.done = 0

    def _line(self, marker: str, subject: str, kind: str, text: str) -> None:
        t = time.monotonic() - self.started
        self.out.write(f"{t:6.1f}s {marker:<7} {subject:<18} {kind:<25} {text}".rstrip() + "\n")
        self.out.flush()

    def event(self, record: dict[str, Any]) -> None:
        if record.get("final"):
            self.done += 1
        marker = f"[{self.done:>2}/{self.total}]" if record.get("final") else ""
        self._line(marker, record["request_id"], record["type"], detail(record))

    def worker(self, subject: str, kind: str, text: str) -> None:
        self._line("worker", subject, kind, text)


def detail(record: dict[str, Any]) -> str:
    """What a lifecycle event's line shows after its type."""
    kind, data = record["type"], record.get("data", {})
    polls = f", {plural(int(data['polls']), 'poll')}" if data.get("polls") is not None else ""
    sides = f" ({', '.join(data['sides'])})" if data.get("sides") else ""
    meeting = data.get("ConnectionData", {}).get("Meeting", {}).get("MeetingId", "?")
    joined = ", join data delivered" if "ParticipantToken" in data else ""
    stopped = ", contact stopped" if data.get("contact_stopped") else ""
    details: dict[str, Callable[[], str]] = {
        "contact.started": lambda: (
            f"contact {record['contact_id'][:8]}, meeting {meeting[:8]}" + joined
        ),
        "contact.agent_connected": lambda: (
            f"after {seconds(data.get('waited_s'))} in queue" + polls
        ),
        "contact.disconnected": lambda: (
            f"{data.get('reason', 'reason unknown')} before an agent" + polls
        ),
        "contact.timed_out": lambda: f"no agent by {data.get('deadline')}{polls}{stopped}",
        "request.cancelled": lambda: f"{data.get('stage')}{stopped}",
        "screen_sharing.skipped": lambda: f"{data.get('reason')}{sides}",
        "request.rejected": lambda: "; ".join(
            f"{e['field']}: {e['message']}" for e in data.get("errors", [])
        ),
        "request.failed": lambda: f"{data.get('error_code')}: {data.get('message')}",
        "request.expired": lambda: f"{seconds(data.get('age_s'))} old ({data.get('limit')})",
        "contact.queue_position": lambda: (
            f"#{data.get('position')} in line, about {seconds(data.get('estimated_wait_s'))} "
            f"to wait ({data.get('source')})"
        ),
        "request.waiting": lambda: (
            f"for {data.get('reason')}"
            + (
                f", about {seconds(data.get('estimated_start_s'))}"
                if data.get("estimated_start_s") is not None
                else ""
            )
        ),
    }
    return details[kind]() if kind in details else ""


#: Beyond one token interval of the start rate, the margin a start may take by itself (the first
#: calls of a run open connections; every call takes some milliseconds on loopback).
_MARGIN_S = 0.25


class Waits:
    """What the worker's log records tell about requests between receive and start: the
    capacity gate closing and opening, and, when a contact starts, how long its request waited
    for call capacity (the gate was closed meanwhile) or for the start rate (StartWebRTCContact's
    rate budget: nothing else stands between a received request and its start)."""

    def __init__(
        self,
        printer: Printer,
        waited: dict[str, str],
        *,
        rate_per_s: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.printer = printer
        self.clock = clock
        #: Requests that waited between receive and start: for "the start rate" or "call
        #: capacity" (filled in here).
        self.waited = waited
        self.rate = f"StartWebRTCContact {rate_per_s:g}/s, burst {burst:g}"
        #: A request started this long after its receive waited for something: a start that
        #: only waited for the call itself, or for one token, is not worth a line.
        self.threshold_s = 1 / rate_per_s + _MARGIN_S
        #: Requests received and not started (nor ended) yet: when they were received.
        self.unstarted: dict[str, float] = {}
        self.closed_since: float | None = None
        self.closed: list[tuple[float, float]] = []

    def record(self, record: dict[str, Any]) -> None:
        """One record of the worker's JSON log."""
        name, rid, now = record.get("event"), record.get("request_id"), self.clock()
        if name == "request.received" and rid:
            self.unstarted.setdefault(rid, now)
        elif name == "contact.started" and rid in self.unstarted:
            self._started(rid, self.unstarted.pop(rid), now)
        elif rid and record.get("final"):
            self.unstarted.pop(rid, None)
        elif name == "connect.capacity_reached":
            self.closed_since = now
            count = len(self.unstarted)
            waiting = f"{plural(count, 'request')} {'waits' if count == 1 else 'wait'}"
            self.printer.worker(
                "-", "capacity gate closed", f"at the concurrent-call cap; {waiting}"
            )
        elif name == "connect.capacity_available" and self.closed_since is not None:
            self.closed.append((self.closed_since, now))
            self.closed_since = None
            self.printer.worker("-", "capacity gate open", "a start got through")

    def _started(self, rid: str, received: float, now: float) -> None:
        if now - received < self.threshold_s:
            return
        closed = self.closed + ([(self.closed_since, now)] if self.closed_since is not None else [])
        capacity = any(start < now and end > received for start, end in closed)
        reason = "call capacity" if capacity else "the start rate"
        self.waited[rid] = reason
        cause = "the concurrent-call cap" if capacity else self.rate
        self.printer.worker(rid, f"waited for {reason}", f"{seconds(now - received)} ({cause})")


class LogTap:
    """The worker's log stream: every line goes to the log file, and the records the worker's
    own thread writes also go to `on_record` (other threads' lines only to the file)."""

    def __init__(self, file: TextIO, on_record: Callable[[dict[str, Any]], None]) -> None:
        self.file = file
        self.on_record = on_record
        self.thread = threading.get_ident()
        self.pending = ""

    def write(self, text: str) -> int:
        self.file.write(text)
        if threading.get_ident() == self.thread:
            self.pending += text
            *complete, self.pending = self.pending.split("\n")
            for line in complete:
                with contextlib.suppress(ValueError):
                    self.on_record(json.loads(line))
        return len(text)

    def flush(self) -> None:
        self.file.flush()
