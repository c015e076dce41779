"""Dead-letter queue tools (SQS client passed in): what sits in a DLQ and why, and moving it back.

`inspect` lists a DLQ without consuming it: messages are received with a short visibility
timeout, held while the scan goes on (so each receive returns new ones) and handed back with
`ChangeMessageVisibility 0` when it ends, whatever happens. Each message is run through the same
validation the worker applies (`parse_request` with the configured request defaults), so a poison
message explains itself; a valid request was dead-lettered by transient failures or a crash.

`redrive` sends the chosen messages to the source queue and then deletes them from the DLQ, in
batches, at a pace the worker's admission can absorb; the rest are handed back untouched. The
source queue sees new messages, so their receive counts start again from zero.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from orchestrator.engine.request import RequestDefaults, RequestRejected, parse_request

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

T = TypeVar("T")

#: SQS limits of one batch call: entries, and the summed payload of their bodies.
BATCH_ENTRIES = 10
BATCH_BYTES = 256 * 1024
#: A FIFO queue drops a message whose deduplication id it saw within this window.
FIFO_DEDUP_WINDOW_S = 300.0
VALID = "valid request"


def sqs_batches(
    items: Iterable[T], size: Callable[[T], int], *, max_bytes: int = BATCH_BYTES
) -> Iterator[list[T]]:
    """`items` in batches SQS accepts: at most 10 entries and `max_bytes` of payload each.

    An item that alone exceeds `max_bytes` is yielded on its own (the caller reports it).
    """
    batch: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if batch and (len(batch) == BATCH_ENTRIES or total + n > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch


def body_bytes(body: str) -> int:
    return len(body.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class DeadLetter:
    """One message in a DLQ, and why it is there."""

    message_id: str
    receipt: str
    body: str
    #: Deliveries before this look (SQS's ApproximateReceiveCount less our own receive).
    receive_count: int
    #: When the message was sent (epoch seconds, SQS's SentTimestamp), if known.
    sent_at: float | None
    group_id: str | None
    dedup_id: str | None
    message_attributes: dict[str, Any]
    request_id: str | None
    #: Why validation refuses it; None when it is a valid request.
    problem: str | None

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
            "receive_count": self.receive_count,
            "age_s": None if age is None else round(age, 3),
            "sent_at": self.sent_at,
            "group_id": self.group_id,
            "valid": self.problem is None,
            "reason": self.reason,
        }


def diagnose(body: str, defaults: RequestDefaults) -> tuple[str | None, str | None]:
    """(RequestId when readable, why the worker refuses the body or None when it is valid)."""
    try:
        request = parse_request(body, defaults)
    except RequestRejected as exc:
        return exc.request_id, str(exc)
    return request.request_id, None


def _dead_letter(raw: Any, defaults: RequestDefaults) -> DeadLetter:
    attributes = raw.get("Attributes", {})
    body = raw.get("Body", "")
    request_id, problem = diagnose(body, defaults)
    sent = attributes.get("SentTimestamp")
    return DeadLetter(
        message_id=raw["MessageId"],
        receipt=raw["ReceiptHandle"],
        body=body,
        receive_count=max(0, int(attributes.get("ApproximateReceiveCount", "1")) - 1),
        sent_at=int(sent) / 1000 if sent else None,
        group_id=attributes.get("MessageGroupId"),
        dedup_id=attributes.get("MessageDeduplicationId"),
        message_attributes=dict(raw.get("MessageAttributes") or {}),
        request_id=request_id,
        problem=problem,
    )


@dataclass(frozen=True)
class Selection:
    """Which dead letters to move: by RequestId, by age (seconds since sent), valid ones only."""

    request_ids: frozenset[str] = frozenset()
    older_than_s: float | None = None
    newer_than_s: float | None = None
    #: Leave messages the worker's validation refuses (they would only come back).
    valid_only: bool = False

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
    #: Seen but not chosen (left in the DLQ).
    skipped: int = 0
    #: (message, why): not sent, so still in the DLQ; or sent but not deleted (a duplicate).
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)
    #: Why the scan ended early (a limit, messages repeating), else None.
    stopped: str | None = None


class DeadLetterQueue:
    """One dead-letter queue. `hold_s` is how long a scan hides what it has received."""

    def __init__(
        self,
        client: SQSClient,
        url: str,
        *,
        defaults: RequestDefaults | None = None,
        hold_s: int = 60,
        wait_time_s: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.url = url
        self._defaults = defaults or RequestDefaults()
        self._hold_s = hold_s
        self._wait_time_s = wait_time_s
        self._clock = clock

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
            response = await self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=BATCH_ENTRIES,
                VisibilityTimeout=self._hold_s,
                WaitTimeSeconds=self._wait_time_s,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                return
            fresh = []
            repeated = False
            for raw in messages:
                letter = _dead_letter(raw, self._defaults)
                if letter.message_id in held:
                    repeated = True
                    # Only the newest receipt handle can hand it back.
                    held[letter.message_id] = letter
                else:
                    held[letter.message_id] = letter
                    fresh.append(letter)
            if repeated:
                yield None
                return
            yield fresh

    async def _release(self, letters: Sequence[DeadLetter]) -> None:
        """Hand `letters` back, visible at once; shielded, so a cancelled scan hides nothing."""
        with anyio.CancelScope(shield=True):
            for start in range(0, len(letters), BATCH_ENTRIES):
                chunk = letters[start : start + BATCH_ENTRIES]
                await self._client.change_message_visibility_batch(
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": d.receipt, "VisibilityTimeout": 0}
                        for i, d in enumerate(chunk)
                    ],
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
        fifo = to_url.endswith(".fifo")
        batch_size = max(1, min(BATCH_ENTRIES, int(pace.rate)))
        for batch in sqs_batches(letters, lambda d: body_bytes(d.body)):
            for start in range(0, len(batch), batch_size):
                part = batch[start : start + batch_size]
                await pace.wait(len(part))
                entries = [self._entry(i, d, fifo) for i, d in enumerate(part)]
                response = await self._client.send_message_batch(QueueUrl=to_url, Entries=entries)
                failed = {
                    f["Id"]: f.get("Message", f.get("Code", "")) for f in response.get("Failed", [])
                }
                sent = [d for i, d in enumerate(part) if str(i) not in failed]
                for i, letter in enumerate(part):
                    if str(i) in failed:
                        report.failed.append((letter, f"not sent: {failed[str(i)]}"))
                if sent:
                    await self._delete(sent, report, held)

    async def _delete(
        self, letters: list[DeadLetter], report: RedriveReport, held: dict[str, DeadLetter]
    ) -> None:
        with anyio.CancelScope(shield=True):  # sent: the delete must not be cut off
            response = await self._client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": d.receipt} for i, d in enumerate(letters)],
            )
        failed = {f["Id"]: f.get("Message", f.get("Code", "")) for f in response.get("Failed", [])}
        for i, letter in enumerate(letters):
            if str(i) in failed:
                report.failed.append((letter, f"sent but not deleted: {failed[str(i)]}"))
            else:
                report.moved.append(letter)
                del held[letter.message_id]

    def _entry(self, index: int, letter: DeadLetter, fifo: bool) -> Any:
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": letter.body}
        if letter.message_attributes:
            entry["MessageAttributes"] = letter.message_attributes
        if fifo:
            entry["MessageGroupId"] = letter.group_id or letter.request_id or letter.message_id
            entry["MessageDeduplicationId"] = self._dedup_id(letter)
        return entry

    def _dedup_id(self, letter: DeadLetter) -> str:
        """The original deduplication id once its 5-minute window has passed (by SentTimestamp,
        which a FIFO DLQ resets on arrival, so never late). Within the window the source queue
        would accept the send and silently drop it; a fresh id derived from the DLQ message id is
        used instead (a repeated redrive of the same message still deduplicates)."""
        age = letter.age_s(self._clock())
        if letter.dedup_id and age is not None and age > FIFO_DEDUP_WINDOW_S:
            return letter.dedup_id
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


async def queue_arn(client: SQSClient, url: str) -> str:
    response = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return response["Attributes"]["QueueArn"]


async def dead_letter_target(client: SQSClient, url: str) -> str | None:
    """The ARN of the DLQ the redrive policy of queue `url` names, or None."""
    response = await client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    policy = response.get("Attributes", {}).get("RedrivePolicy")
    return str(json.loads(policy)["deadLetterTargetArn"]) if policy else None


async def dead_letter_queue_of(client: SQSClient, url: str) -> str | None:
    """The URL of queue `url`'s DLQ (from its redrive policy), or None."""
    arn = await dead_letter_target(client, url)
    if arn is None:
        return None
    *_, account, name = arn.split(":")
    response = await client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    return response["QueueUrl"]


async def approximate_size(client: SQSClient, url: str) -> int:
    response = await client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(response.get("Attributes", {}).get("ApproximateNumberOfMessages", "0"))


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
