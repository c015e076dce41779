"""Fleet mode's Redis calls in the trace: the shared budget's GCRA script inside each Connect
call's span, the heartbeats, the publish of a contact event to the other workers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.daemon.assembly import open_worker
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.redis import RedisServer
from tests.support import create_queue_with_dlq, request_body, send_all
from tests.support import settings_for as worker_settings
from tests.tracing.conftest import Spans, events_emulator

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.sdk.trace import ReadableSpan
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)


async def test_fleet_redis_calls_are_client_spans_of_the_calls_they_serve(
    spans: Spans,
    tmp_path: Path,
    start_emulator: Callable[..., Any],
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
) -> None:
    emulator, events = await events_emulator(start_emulator, sqs_server, sqs_client)
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body("fleet-traced")])
    server = RedisServer(tmp_path)
    server.start()
    try:
        settings = worker_settings(
            emulator.url,
            sqs_server.url,
            queue,
            fleet={"redis_url": server.url, "heartbeat_interval_s": 0.2},
            contact_events={"queue_url": events, "wait_time_s": 1},
        )
        async with open_worker(settings) as worker:
            await worker.run(drain=True)
    finally:
        server.kill()

    redis = spans.named("redis ")
    assert all((s.attributes or {}).get("db.system.name") == "redis" for s in redis)
    by_id = {s.context.span_id: s for s in spans.all() if s.context is not None}
    # Every Connect call spent a token of the shared budget: a GCRA script inside its span, or,
    # for a poll's first attempt (whose token is taken before the call is set up), beside it
    # in the span around it, before the call. (The position loop's GetContactMetrics, one call
    # for every waiting contact of a queue, is a root: it runs when a contact waits long
    # enough, as on a loaded machine.)
    connect = [s for s in spans.all() if s.name.startswith("Connect.")]
    assert connect

    def spent_for(call: ReadableSpan, script: ReadableSpan) -> bool:
        assert call.context is not None
        if script.name != "redis EVALSHA" or script.parent is None:
            return False
        key = str((script.attributes or {}).get("db.collection.name", ""))
        if not key.endswith(call.name.removeprefix("Connect.")):
            return False
        if script.parent.span_id == call.context.span_id:
            return True
        return (
            call.name == "Connect.DescribeContact"
            and call.parent is not None
            and script.parent.span_id == call.parent.span_id
            and (script.end_time or 0) <= (call.start_time or 0)
        )

    for call in connect:
        assert any(spent_for(call, script) for script in redis), call.name
        assert call.parent is not None or call.name == "Connect.GetContactMetrics"
    # Heartbeats: scripts of their own, outside any request.
    beats = [
        s
        for s in redis
        if s.parent is None
        and str((s.attributes or {}).get("db.collection.name")).endswith(":workers")
    ]
    assert beats
    # The contact events this worker read went to the rest of the fleet.
    publishes = [s for s in redis if s.name == "redis PUBLISH"]
    assert publishes
    assert all(
        s.parent is None or by_id[s.parent.span_id].name == "contact_event process"
        for s in publishes
    )
