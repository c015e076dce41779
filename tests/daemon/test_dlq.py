"""Dead-letter queue tools against a real SQS server: inspect leaves everything in place and says
why each message is there; redrive moves what was chosen back, at a pace, and nothing else."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from orchestrator.daemon.dlq import DeadLetterQueue, Selection, diagnose
from orchestrator.engine.request import RequestDefaults
from orchestrator.sqs import FIFO_DEDUP_WINDOW_S
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.requests import cancel_body
from tests.support import (
    INSTANCE_ID,
    create_queue_with_dlq,
    drain_bodies,
    eventually,
    queue_counts,
    request_body,
    send_all,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)

FAST = 1000.0  # messages per second: pacing is not what most tests are about
POISON = ["{not json", json.dumps({"RequestId": "no-details", "InstanceId": INSTANCE_ID})]


async def dead_letter(sqs: SQSClient, queue: str, dlq: str, count: int) -> None:
    """Receive from `queue` until SQS's redrive policy has moved `count` messages to `dlq`."""

    async def moved() -> bool:
        await sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return (await queue_counts(sqs, dlq))[0] >= count

    await eventually(moved, within=30, message=f"{count} message(s) dead-lettered")


async def receive_counts(sqs: SQSClient, queue: str) -> dict[str, int]:
    """RequestId -> ApproximateReceiveCount of every message on `queue` (received once here)."""
    counts: dict[str, int] = {}
    while True:
        got = await sqs.receive_message(
            QueueUrl=queue,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages = got.get("Messages", [])
        if not messages:
            return counts
        for m in messages:
            rid = json.loads(m.get("Body", "{}")).get("RequestId", "?")
            counts[rid] = int(m.get("Attributes", {})["ApproximateReceiveCount"])


def dlq_of(
    sqs: SQSClient, url: str, *, defaults: RequestDefaults | None = None, **kwargs: Any
) -> DeadLetterQueue:
    """The queue as the CLI opens it, without a long poll (no defaults configured unless given)."""
    return DeadLetterQueue(
        sqs, url, defaults=defaults or RequestDefaults(), hold_s=60, wait_time_s=0, **kwargs
    )


async def test_inspect_lists_everything_leaves_it_in_place_and_explains_poison(
    sqs_client: SQSClient,
) -> None:
    _, dlq = await create_queue_with_dlq(sqs_client)
    valid = [request_body(f"dead-{i}") for i in range(13)]
    await send_all(sqs_client, dlq, valid + POISON)

    letters, stopped = await dlq_of(sqs_client, dlq).inspect()

    assert stopped is None
    assert len(letters) == 15
    by_id = {d.request_id: d for d in letters}
    assert {f"dead-{i}" for i in range(13)} <= set(by_id)
    assert all(by_id[f"dead-{i}"].reason == "valid request" for i in range(13))
    assert by_id["no-details"].reason.startswith("invalid call request: ")
    assert "ContactFlowId: required" in by_id["no-details"].reason
    unreadable = by_id[None]
    assert "body: not valid JSON" in unreadable.reason
    assert all(d.age_s(time.time()) is not None for d in letters)
    # Nothing consumed, nothing left hidden.
    assert await queue_counts(sqs_client, dlq) == (15, 0)
    assert sorted(await drain_bodies(sqs_client, dlq)) == sorted(valid + POISON)


async def test_inspect_validates_with_the_configured_request_defaults(
    sqs_client: SQSClient,
) -> None:
    _, dlq = await create_queue_with_dlq(sqs_client)
    body = json.loads(request_body("uses-defaults"))
    del body["InstanceId"], body["ContactFlowId"]
    await send_all(sqs_client, dlq, [json.dumps(body)])

    [bare], _ = await dlq_of(sqs_client, dlq).inspect()
    assert "InstanceId: required (and no default is configured)" in bare.reason

    defaults = RequestDefaults(instance_id="i-1", contact_flow_id="f-1")
    [defaulted], _ = await dlq_of(sqs_client, dlq, defaults=defaults).inspect()
    assert defaulted.reason == "valid request"

    refusing = RequestDefaults(
        instance_id="i-1", contact_flow_id="f-1", allowed_instance_ids=frozenset({"i-2"})
    )
    [refused], _ = await dlq_of(sqs_client, dlq, defaults=refusing).inspect()
    assert "not an instance this worker may use" in refused.reason


async def test_inspect_stops_at_its_limit_and_still_hands_everything_back(
    sqs_client: SQSClient,
) -> None:
    _, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, dlq, [request_body(f"many-{i}") for i in range(25)])
    letters, stopped = await dlq_of(sqs_client, dlq).inspect(limit=12)
    assert len(letters) == 12
    assert stopped is not None and "12" in stopped
    assert await queue_counts(sqs_client, dlq) == (25, 0)


async def test_redrive_moves_everything_back_and_receive_counts_start_again(
    sqs_client: SQSClient,
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=2)
    await send_all(sqs_client, queue, [request_body(f"back-{i}") for i in range(12)])
    await dead_letter(sqs_client, queue, dlq, 12)

    report = await dlq_of(sqs_client, dlq).redrive(queue, Selection(), rate_per_s=FAST)

    assert sorted(d.request_id or "" for d in report.moved) == sorted(
        f"back-{i}" for i in range(12)
    )
    assert report.failed == [] and report.skipped == 0
    assert await queue_counts(sqs_client, dlq) == (0, 0)
    assert await receive_counts(sqs_client, queue) == {f"back-{i}": 1 for i in range(12)}


async def test_redrive_by_request_id_moves_only_those(sqs_client: SQSClient) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, dlq, [request_body(f"pick-{i}") for i in range(6)] + POISON)

    report = await dlq_of(sqs_client, dlq).redrive(
        queue, Selection(request_ids=frozenset({"pick-1", "pick-4"})), rate_per_s=FAST
    )

    assert sorted(d.request_id or "" for d in report.moved) == ["pick-1", "pick-4"]
    assert report.skipped == 6
    assert sorted(json.loads(b)["RequestId"] for b in await drain_bodies(sqs_client, queue)) == [
        "pick-1",
        "pick-4",
    ]
    assert await queue_counts(sqs_client, dlq) == (6, 0)


async def test_redrive_moves_valid_requests_only_unless_told_to_include_invalid_ones(
    sqs_client: SQSClient,
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, dlq, [request_body("fine-1"), *POISON, request_body("fine-2")])

    report = await dlq_of(sqs_client, dlq).redrive(queue, Selection(), rate_per_s=FAST)

    assert sorted(d.request_id or "" for d in report.moved) == ["fine-1", "fine-2"]
    assert (report.skipped, report.invalid_kept) == (2, 2)
    assert await queue_counts(sqs_client, dlq) == (2, 0)

    everything = await dlq_of(sqs_client, dlq).redrive(
        queue, Selection(valid_only=False), rate_per_s=FAST
    )
    assert len(everything.moved) == 2 and everything.invalid_kept == 0
    assert await queue_counts(sqs_client, dlq) == (0, 0)
    assert sorted(await drain_bodies(sqs_client, queue)) == sorted(
        [request_body("fine-1"), request_body("fine-2"), *POISON]
    )


async def test_redrive_by_age_moves_older_or_newer_messages(sqs_client: SQSClient) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, dlq, [request_body("early")])
    [early], _ = await dlq_of(sqs_client, dlq).inspect()
    assert early.sent_at is not None
    first_sent = early.sent_at

    def clock_moved_on() -> bool:
        return time.time() > first_sent + 0.05

    await eventually(clock_moved_on, message="the clock to move on")
    await send_all(sqs_client, dlq, [request_body("late")])
    letters, _ = await dlq_of(sqs_client, dlq).inspect()
    late = next(d for d in letters if d.request_id == "late")
    assert late.sent_at is not None and late.sent_at > early.sent_at
    now = late.sent_at + 600.0  # a fixed clock: ages are exact
    between = now - (early.sent_at + late.sent_at) / 2

    older = await dlq_of(sqs_client, dlq, clock=lambda: now).redrive(
        queue, Selection(older_than_s=between), rate_per_s=FAST
    )
    assert [d.request_id for d in older.moved] == ["early"]
    newer = await dlq_of(sqs_client, dlq, clock=lambda: now).redrive(
        queue, Selection(newer_than_s=between), rate_per_s=FAST
    )
    assert [d.request_id for d in newer.moved] == ["late"]
    assert await queue_counts(sqs_client, dlq) == (0, 0)


async def test_dry_run_moves_nothing(sqs_client: SQSClient) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, dlq, [request_body(f"dry-{i}") for i in range(4)])

    report = await dlq_of(sqs_client, dlq).redrive(
        queue, Selection(), rate_per_s=FAST, dry_run=True
    )

    assert report.dry_run and len(report.moved) == 4
    assert await queue_counts(sqs_client, dlq) == (4, 0)
    assert await queue_counts(sqs_client, queue) == (0, 0)


async def test_redrive_paces_its_sends_at_the_given_rate(sqs_client: SQSClient) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, dlq, [request_body(f"paced-{i}") for i in range(6)])
    started = time.monotonic()
    report = await dlq_of(sqs_client, dlq).redrive(queue, Selection(), rate_per_s=4)
    # 4 at once, the next 2 one second later: never faster than 4 per second.
    assert len(report.moved) == 6
    assert time.monotonic() - started >= 0.95


@pytest.mark.parametrize(
    ("later_s", "keeps_dedup_id"),
    [(0.0, False), (FIFO_DEDUP_WINDOW_S + 1, True)],
    ids=["inside-dedup-window", "after-dedup-window"],
)
async def test_fifo_redrive_keeps_the_group_and_a_dedup_id_the_queue_will_not_drop(
    sqs_client: SQSClient, later_s: float, keeps_dedup_id: bool
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client, fifo=True, max_receive_count=1)
    await sqs_client.send_message(
        QueueUrl=queue,
        MessageBody=request_body("fifo-1"),
        MessageGroupId="customer-7",
        MessageDeduplicationId="fifo-1",
    )
    await dead_letter(sqs_client, queue, dlq, 1)

    # Within 5 minutes of the first send, SQS would accept a resend with the same
    # deduplication id and silently drop it: the redrive must use another one.
    report = await dlq_of(sqs_client, dlq, clock=lambda: time.time() + later_s).redrive(
        queue, Selection(), rate_per_s=FAST
    )

    assert [d.request_id for d in report.moved] == ["fifo-1"]
    got = await sqs_client.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )
    [message] = got.get("Messages", [])
    assert json.loads(message.get("Body", ""))["RequestId"] == "fifo-1"
    attributes = message.get("Attributes", {})
    assert attributes["MessageGroupId"] == "customer-7"
    assert (attributes["MessageDeduplicationId"] == "fifo-1") is keeps_dedup_id


# -- the command line -------------------------------------------------------------------------


def without_ages(table: str) -> str:
    """An inspect table without its AGE column's figures (the only ones that move with time)."""
    return re.sub(r"\b\d+[mhd]\d\d[smh]\b", "AGE", table)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )


async def test_cli_inspects_as_json_and_redrives_to_the_configured_queue(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, dlq, [request_body("cli-1"), request_body("cli-2"), POISON[0]])
    env = {"ORCHESTRATOR_QUEUE__URL": queue, "ORCHESTRATOR_AWS__ENDPOINT_URL": sqs_server.url}

    # No --queue-url: the DLQ named by [queue] url's redrive policy.
    inspected = await anyio.to_thread.run_sync(lambda: cli("dlq", "inspect", "--json", env=env))
    assert inspected.returncode == 0, inspected.stderr
    listing = json.loads(inspected.stdout)
    assert listing["queue_url"] == dlq
    reasons = {m["request_id"]: m["reason"] for m in listing["messages"]}
    assert reasons["cli-1"] == reasons["cli-2"] == "valid request"
    assert "not valid JSON" in reasons[None]

    # The source queue's redrive policy says what the figures mean; looking changes nothing.
    assert listing["source_queue_url"] == queue
    assert listing["dead_lettered_after_receives"] == 2
    table = await anyio.to_thread.run_sync(lambda: cli("dlq", "inspect", env=env))
    again = await anyio.to_thread.run_sync(lambda: cli("dlq", "inspect", env=env))
    assert "3 message(s)" in table.stdout and "all left in place" in table.stdout
    assert f"after 2 receives from {queue}" in table.stdout
    assert without_ages(table.stdout) == without_ages(again.stdout)

    moved = await anyio.to_thread.run_sync(
        lambda: cli("dlq", "redrive", "--request-id", "cli-2", "--rate", "50", env=env)
    )
    assert moved.returncode == 0, moved.stderr
    assert f"moved 1 message(s) from {dlq} to {queue}" in moved.stdout
    assert [json.loads(b)["RequestId"] for b in await drain_bodies(sqs_client, queue)] == ["cli-2"]

    # By default the poison stays (and the command says how to move it anyway).
    rest = await anyio.to_thread.run_sync(lambda: cli("dlq", "redrive", "--rate", "50", env=env))
    assert "moved 1 message(s)" in rest.stdout
    assert "1 invalid request(s) stay unless --include-invalid" in rest.stdout
    old_flag = await anyio.to_thread.run_sync(
        lambda: cli("dlq", "redrive", "--valid-only", "--rate", "50", env=env)
    )
    assert old_flag.returncode == 0 and "moved 0 message(s)" in old_flag.stdout
    assert await queue_counts(sqs_client, dlq) == (1, 0)
    forced = await anyio.to_thread.run_sync(
        lambda: cli("dlq", "redrive", "--include-invalid", "--rate", "50", env=env)
    )
    assert "moved 1 message(s)" in forced.stdout
    assert await queue_counts(sqs_client, dlq) == (0, 0)


async def test_cli_redrive_refuses_a_source_whose_policy_names_another_dlq(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    _, other_dlq = await create_queue_with_dlq(sqs_client)
    env = {"ORCHESTRATOR_QUEUE__URL": queue, "ORCHESTRATOR_AWS__ENDPOINT_URL": sqs_server.url}
    result = await anyio.to_thread.run_sync(
        lambda: cli("dlq", "redrive", "--queue-url", other_dlq, env=env)
    )
    assert result.returncode == 2
    assert "--to is required" in result.stderr
    assert "Traceback" not in result.stderr


async def test_cli_reports_a_missing_dlq_in_one_line(sqs_server: LocalSqsServer) -> None:
    missing = f"{sqs_server.url}/123456789012/no-such-dlq"
    result = await anyio.to_thread.run_sync(
        lambda: cli(
            "dlq", "inspect", "--queue-url", missing, "--endpoint-url", sqs_server.url, env={}
        )
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"orchestrator dlq: queue does not exist: {missing}"


def test_a_cancel_is_diagnosed_as_valid_and_a_malformed_one_names_no_request() -> None:
    defaults = RequestDefaults()

    assert diagnose(cancel_body("r-1"), defaults) == ("r-1", None)
    request_id, problem = diagnose(cancel_body("r-1", Oops=1), defaults)
    assert request_id is None and problem is not None and "invalid cancel: Oops" in problem
