"""A producer process: submits calls through `CallClient` and reports what it saw, for the process
tests (several producers share one request queue) and the client benchmark.

```
python -m orchestrator.testing.producer --queue-url URL --endpoint-url URL \
    --calls 60 --concurrency 60 --id-prefix p1
```

It submits `--calls` calls, at most `--concurrency` at a time, awaits each one's `contact.started`
and final event, and prints one JSON result after `RESULT_PREFIX` (`processes.run_child` reads
it): per call its events (ids, types, request ids), whether the connection data came, and the
seconds from submit to the connection data in hand (and those of its stages: the request sent,
`request.received` in hand); the client's dropped replies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

import anyio

from orchestrator.client import CallClient, CallEnded
from orchestrator.engine.events import EventType
from orchestrator.testing.processes import RESULT_PREFIX
from orchestrator.testing.requests import REGION, customer_document


async def _one(client: CallClient, request_id: str, index: int, timeout_s: float) -> dict[str, Any]:
    began = time.perf_counter()
    call = await client.submit(customer_document(request_id, index))
    submitted = time.perf_counter() - began
    arrived: dict[str, float] = {}

    async def arrival(type_: str) -> None:
        with contextlib.suppress(CallEnded):  # a call that ended first has no such event
            await call.wait_for(type_, timeout=timeout_s)
            arrived[type_] = time.perf_counter() - began

    async with anyio.create_task_group() as tg:  # each stage timed as it arrives, in any order
        tg.start_soon(arrival, EventType.RECEIVED)
        tg.start_soon(arrival, EventType.STARTED)
    started = await call.started(timeout=timeout_s)
    await call.outcome(timeout=timeout_s)
    return {
        "request_id": request_id,
        "submit_s": submitted,
        "submit_to_received_s": arrived.get(EventType.RECEIVED),
        "submit_to_started_s": arrived[EventType.STARTED],
        "connection_data": bool(
            started.data.get("ParticipantToken") and started.data.get("ConnectionData")
        ),
        "events": [{"id": e.id, "type": e.type, "request_id": e.request_id} for e in call.history],
    }


async def produce(
    queue_url: str,
    *,
    endpoint_url: str | None,
    calls: int,
    concurrency: int,
    id_prefix: str,
    timeout_s: float,
    region: str = REGION,
) -> dict[str, Any]:
    """Run the calls (see the module); the result."""
    results: list[dict[str, Any]] = []
    limit = anyio.Semaphore(concurrency)
    async with CallClient(
        queue_url, region=region, endpoint_url=endpoint_url, wait_time_s=1
    ) as client:

        async def one(index: int) -> None:
            async with limit:
                results.append(await _one(client, f"{id_prefix}-{index}", index, timeout_s))

        async with anyio.create_task_group() as tg:
            for index in range(calls):
                tg.start_soon(one, index)
        dropped = client.dropped
    return {"calls": sorted(results, key=lambda r: str(r["request_id"])), "dropped": dropped}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orchestrator.testing.producer")
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--id-prefix", required=True)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    result = anyio.run(
        lambda: produce(
            args.queue_url,
            endpoint_url=args.endpoint_url,
            calls=args.calls,
            concurrency=args.concurrency,
            id_prefix=args.id_prefix,
            timeout_s=args.timeout_s,
        )
    )
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
