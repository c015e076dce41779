"""Dead-letter queue tools (SQS client passed in): what sits in a DLQ and why, and moving it back.

`inspect` lists a DLQ without consuming it: messages are received and hidden for the time a scan
of the queue's size takes (so each receive returns new ones), then handed back with visibility 0
when it ends, whatever happens. Each message is run through the same validation the worker
applies (`parse_message` with the configured request defaults), so a poison message explains
itself; a valid request was dead-lettered by transient failures or a crash.

Receive counts are not shown per message: SQS counts every receive, a listing's included, so the
figure would grow each time someone looks. What does not change by looking is the source
queue's redrive policy: a message it dead-lettered was received `maxReceiveCount` times there.

`redrive` sends the chosen messages to the source queue and then deletes them from the DLQ, in
batches, at a pace the worker's admission can absorb; the rest are handed back untouched. The
source queue sees new messages, so their receive counts start again from zero. By default only
valid requests move: poison would only come back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from botocore.exceptions import ClientError

from orchestrator.engine.request import RequestDefaults, RequestRejected, parse_message
from orchestrator.errors import ConfigError
from orchestrator.sqs import (
    COPY_ATTRIBUTES,
    FIFO_DEDUP_WINDOW_S,
    MAX_BATCH_ENTRIES,
    MAX_VISIBILITY_TIMEOUT_S,
    OutgoingMessage,
    QueueMessage,
    RedrivePolicy,
    approximate_counts,
    batches,
    change_visibility_batch,
    delete_batch,
    is_fifo,
    queue_arn,
    receive,
    redrive_policy,
    send_batch,
    url_of_arn,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

VALID = "valid request"


def diagnose(body: str, defaults: RequestDefaults) -> tuple[str | None, str | None]:
    """(RequestId when readable, why the worker refuses the body or None when it is valid: a
    call request or a cancel)."""
    try:
        request = parse_message(body, defaults)
    except RequestRejected as exc:
        return exc.request_id, str(exc)
    return request.request_id, None


@dataclass(frozen=True)
class DeadLetter:
    """One message in a DLQ, and why it is there."""

    message: QueueMessage
    request_id: str | None
    #: Why validation refuses it; None when it is a valid request.
    problem: str | None

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def sent_at(self) -> float | None:
        """When the message was sent (epoch seconds, SQS's SentTimestamp), if known."""
        return self.message.sent_at

    @property
    def reason(self) -> str:
        return self.problem or VALID

    def age_s(self, now: float) -> float | None:
        return None if self.sent_at is None else max(0.0, now - self.sent_at)

    def as_dict(self, now: float) -> dict[str, Any]:
        age = self.age_s(now)
        return {
            "message_id": self.message_id,
            "request_id": self.request_id,
            "age_s": None if age is None else round(age, 3),
            "sent_at": self.sent_at,
            "group_id": self.message.group_id,
            "valid": self.problem is None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Selection:
    """Which dead letters to move: by RequestId, by age (seconds since sent), valid ones only."""

    request_ids: frozenset[str] = frozenset()
    older_than_s: float | None = None
    newer_than_s: float | None = None
    #: Leave messages the worker's validation refuses (they would only come back).
    valid_only: bool = True

    def matches(self, letter: DeadLetter, now: float) -> bool:
        if self.valid_only and letter.problem is not None:
            return False
        if self.request_ids and letter.request_id not in self.request_ids:
            return False
        age = letter.age_s(now)
        if self.older_than_s is not None and (age is None or age < self.older_than_s):
            return False
        return not (self.newer_than_s is not None and (age is None or age >= self.newer_than_s))


@dataclass
class RedriveReport:
    dry_run: bool
    moved: list[DeadLetter] = field(default_factory=list)
    #: Seen but not chosen (left in the DLQ); `invalid_kept` of them for being invalid.
    skipped: int = 0
    invalid_kept: int = 0
    #: (message, why): not sent, so still in the DLQ; or sent but not deleted (a duplicate).
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)
    #: Why the scan ended early (a limit, messages repeating), else None.
    stopped: str | None = None


# -- which queues ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """A dead-letter queue and, when known, the source queue whose redrive policy names it."""

    url: str
    source: str | None = None
    policy: RedrivePolicy | None = None

    def redrive_target(self, to: str | None) -> str:
        """Where a redrive sends messages: `to`, else the source queue that dead-lettered them."""
        if to is not None:
            return to
        if self.source is None:
            raise ConfigError(
                "--to is required: the configuration's [queue] url does not name "
                f"{self.url} as its dead-letter queue"
            )
        return self.source


async def locate(client: SQSClient, dlq_url: str | None, source: str | None) -> Located:
    """The DLQ `dlq_url`, else the one the redrive policy of `source` names; linked to `source`
    when that policy names it."""
    if dlq_url is None:
        policy = await redrive_policy(client, source) if source else None
        if policy is None:
            raise ConfigError(
                "--queue-url is required: the configuration's [queue] url has no redrive policy "
                "naming a dead-letter queue"
            )
        return Located(await url_of_arn(client, policy.dead_letter_target_arn), source, policy)
    try:
        policy = await redrive_policy(client, source) if source else None
    except ClientError:  # the configured queue is not what this DLQ is about
        return Located(dlq_url)
    if policy is not None and policy.dead_letter_target_arn == await queue_arn(client, dlq_url):
        return Located(dlq_url, source, policy)
    return Located(dlq_url)


# -- how long a scan hides what it received ------------------------------------------------


def inspect_hold_s(size: int) -> int:
    """A listing hides each message until it ends: 30 s, plus 1 s per 20 messages queued (a
    receive takes 10 in a few milliseconds), within SQS's 12 hours."""
    return min(MAX_VISIBILITY_TIMEOUT_S, 30 + size // 20)


def redrive_hold_s(size: int, rate_per_s: float) -> int:
    """A redrive hides what it has not moved yet until it ends: a minute, plus twice the time
    moving `size` messages at `rate_per_s` takes, within SQS's 12 hours."""
    return int(min(MAX_VISIBILITY_TIMEOUT_S, 60 + 2 * size / rate_per_s))


async def inspect(
    client: SQSClient, located: Located, *, defaults: RequestDefaults, limit: int
) -> tuple[list[DeadLetter], str | None]:
    """`DeadLetterQueue.inspect` with a hold sized to the queue."""
    size, _ = await approximate_counts(client, located.url)
    queue = DeadLetterQueue(client, located.url, defaults=defaults, hold_s=inspect_hold_s(size))
    return await queue.inspect(limit=limit)


async def redrive(
    client: SQSClient,
    located: Located,
    to: str,
    selection: Selection,
    *,
    defaults: RequestDefaults,
    rate_per_s: float,
    dry_run: bool,
    limit: int | None,
) -> RedriveReport:
    """`DeadLetterQueue.redrive` with a hold sized to the queue and the pace."""
    size, _ = await approximate_counts(client, located.url)
    queue = DeadLetterQueue(
        client, located.url, defaults=defaults, hold_s=redrive_hold_s(size, rate_per_s)
    )
    return await queue.redrive(to, selection, rate_per_s=rate_per_s, dry_run=dry_run, limit=limit)


class DeadLetterQueue:
    """One dead-letter queue. A message is judged as the worker would judge it, with the
    configured request `defaults` (`[connect]`); `hold_s` is how long a scan hides what it has
    received (`inspect_hold_s`, `redrive_hold_s`)."""

    def __init__(
        self,
        client: SQSClient,
        url: str,
        *,
        defaults: RequestDefaults,
        hold_s: int,
        wait_time_s: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client, self.url, self._defaults = client, url, defaults
        self._hold_s, self._wait_time_s, self._clock = hold_s, wait_time_s, clock

    async def inspect(self, limit: int = 100) -> tuple[list[DeadLetter], str | None]:
        """Up to `limit` messages, all left in place; and why the listing stopped early, if so."""
        held: dict[str, DeadLetter] = {}
        stopped: str | None = None
        try:
            async for batch in self._scan(held):
                if batch is None:
                    stopped = "messages began to repeat (the hold expired); listing is partial"
                    break
                if len(held) >= limit:
                    stopped = f"stopped after {limit} message(s) (--limit)"
                    break
        finally:
            await self._release(list(held.values()))
        letters = sorted(held.values(), key=lambda d: d.sent_at or 0.0)
        return letters[:limit], stopped

    async def redrive(
        self,
        to_url: str,
        selection: Selection,
        *,
        rate_per_s: float,
        dry_run: bool = False,
        limit: int | None = None,
    ) -> RedriveReport:
        """Move the selected messages to `to_url` at `rate_per_s` (send, then delete)."""
        report = RedriveReport(dry_run=dry_run)
        kept: dict[str, DeadLetter] = {}
        pace = _Pace(rate_per_s)
        try:
            async for batch in self._scan(kept):
                if batch is None:
                    report.stopped = "messages began to repeat (the hold expired)"
                    break
                now = self._clock()
                chosen = [d for d in batch if selection.matches(d, now)]
                if limit is not None:
                    chosen = chosen[: max(0, limit - len(report.moved))]
                report.skipped += len(batch) - len(chosen)
                if selection.valid_only:
                    report.invalid_kept += sum(1 for d in batch if d.problem is not None)
                if dry_run:
                    report.moved.extend(chosen)  # and handed back with the rest
                else:
                    await self._move(chosen, to_url, pace, report, kept)
                if limit is not None and len(report.moved) >= limit:
                    report.stopped = f"stopped after {limit} message(s) (--limit)"
                    break
        finally:
            await self._release(list(kept.values()))
        return report

    # -- internals ---------------------------------------------------------------------------

    async def _scan(self, held: dict[str, DeadLetter]) -> AsyncIterator[list[DeadLetter] | None]:
        """Yield each receive's new messages (adding them to `held`); None once one repeats."""
        while True:
            messages = await receive(
                self._client,
                self.url,
                wait_time_s=self._wait_time_s,
                visibility_timeout_s=self._hold_s,
                system_attributes=COPY_ATTRIBUTES,
                message_attributes=True,
            )
            if not messages:
                return
            fresh = []
            repeated = False
            for message in messages:
                letter = DeadLetter(message, *diagnose(message.body, self._defaults))
                repeated = repeated or letter.message_id in held
                if letter.message_id not in held:
                    fresh.append(letter)
                # Only the newest receipt handle can hand it back.
                held[letter.message_id] = letter
            if repeated:
                yield None
                return
            yield fresh

    async def _release(self, letters: Sequence[DeadLetter]) -> None:
        """Hand `letters` back, visible at once; shielded, so a cancelled scan hides nothing."""
        with anyio.CancelScope(shield=True):
            for start in range(0, len(letters), MAX_BATCH_ENTRIES):
                chunk = letters[start : start + MAX_BATCH_ENTRIES]
                await change_visibility_batch(
                    self._client, self.url, [(d.message, 0) for d in chunk]
                )

    async def _move(
        self,
        letters: list[DeadLetter],
        to_url: str,
        pace: _Pace,
        report: RedriveReport,
        held: dict[str, DeadLetter],
    ) -> None:
        """Send, then delete what was sent; what is still in the DLQ stays in `held`."""
        fifo = is_fifo(to_url)
        copies = [(letter, self._copy(letter, fifo)) for letter in letters]
        batch_size = max(1, min(MAX_BATCH_ENTRIES, int(pace.rate)))
        for batch in batches(copies, lambda pair: pair[1].size):
            for start in range(0, len(batch), batch_size):
                part = batch[start : start + batch_size]
                await pace.wait(len(part))
                results = await send_batch(self._client, to_url, [copy for _, copy in part])
                sent = []
                for (letter, _), result in zip(part, results, strict=True):
                    if result.error is None:
                        sent.append(letter)
                    else:
                        report.failed.append((letter, f"not sent: {result.error}"))
                if sent:
                    await self._delete(sent, report, held)

    async def _delete(
        self, letters: list[DeadLetter], report: RedriveReport, held: dict[str, DeadLetter]
    ) -> None:
        with anyio.CancelScope(shield=True):  # sent: the delete must not be cut off
            errors = await delete_batch(self._client, self.url, [d.message for d in letters])
        for letter, error in zip(letters, errors, strict=True):
            if error is not None:
                report.failed.append((letter, f"sent but not deleted: {error}"))
            else:
                report.moved.append(letter)
                del held[letter.message_id]

    def _copy(self, letter: DeadLetter, fifo: bool) -> OutgoingMessage:
        message = letter.message
        if not fifo:
            return OutgoingMessage(message.body, attributes=message.attributes)
        return OutgoingMessage(
            message.body,
            attributes=message.attributes,
            group_id=message.group_id or letter.request_id or letter.message_id,
            dedup_id=self._dedup_id(letter),
        )

    def _dedup_id(self, letter: DeadLetter) -> str:
        """The original deduplication id once its 5-minute window has passed (by SentTimestamp,
        which a FIFO DLQ resets on arrival, so never late). Within the window the source queue
        would accept the send and silently drop it; a fresh id derived from the DLQ message id is
        used instead (a repeated redrive of the same message still deduplicates)."""
        age = letter.age_s(self._clock())
        if letter.message.dedup_id and age is not None and age > FIFO_DEDUP_WINDOW_S:
            return letter.message.dedup_id
        digest = hashlib.sha256(f"redrive:{letter.message_id}".encode()).hexdigest()
        return f"redrive-{digest[:64]}"


class _Pace:
    """At most `rate` messages per second, starting at once."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = time.monotonic()

    async def wait(self, n: int) -> None:
        now = time.monotonic()
        if self._next > now:
            await anyio.sleep(self._next - now)
        self._next = max(now, self._next) + n / self.rate


def listing(
    letters: Sequence[DeadLetter], located: Located, stopped: str | None, now: float
) -> list[str]:
    """`orchestrator dlq inspect`'s table: one line per message, then what the figures mean."""
    lines = [f"{'REQUEST ID':<40} {'AGE':>7}  WHY"]
    lines += [
        f"{d.request_id or '-':<40} {format_age(d.age_s(now)):>7}  {d.reason}" for d in letters
    ]
    valid = sum(1 for d in letters if d.problem is None)
    lines.append(
        f"{len(letters)} message(s) in {located.url}: {valid} valid request(s) (transient failures "
        f"or crashes), {len(letters) - valid} refused by validation; all left in place"
    )
    note = "receive counts are not shown: SQS counts every receive, this listing's too"
    if located.policy is not None:
        note += (
            f"; messages reach this queue after {located.policy.max_receive_count} receives "
            f"from {located.source} (its redrive policy's maxReceiveCount)"
        )
    return [*lines, note] + ([f"note: {stopped}"] if stopped else [])


def listing_document(
    letters: Sequence[DeadLetter], located: Located, stopped: str | None, now: float
) -> dict[str, Any]:
    """`orchestrator dlq inspect --json`."""
    return {
        "queue_url": located.url,
        "messages": [d.as_dict(now) for d in letters],
        "stopped": stopped,
        "source_queue_url": located.source,
        "dead_lettered_after_receives": located.policy and located.policy.max_receive_count,
    }


def redrive_lines(report: RedriveReport, url: str, to: str, rate: float, now: float) -> list[str]:
    """`orchestrator dlq redrive`'s account of what moved (failures are the caller's)."""
    verb = "would move" if report.dry_run else "moved"
    lines = [f"{verb} {d.request_id or '-'} ({format_age(d.age_s(now))})" for d in report.moved]
    lines.append(
        f"{verb} {len(report.moved)} message(s) from {url} to {to} at up to {rate:g}/s; "
        f"{report.skipped} not selected" + (" (dry run: nothing moved)" if report.dry_run else "")
    )
    if report.invalid_kept:
        lines.append(
            f"note: {report.invalid_kept} invalid request(s) stay unless --include-invalid "
            "(they would only come back)"
        )
    return lines + ([f"note: {report.stopped}"] if report.stopped else [])


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
