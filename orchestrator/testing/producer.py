"""A producer process: submits calls through `CallClient` and reports what it saw, for the process
tests (several producers share one request queue) and the client benchmark.

```
python -m orchestrator.testing.producer --queue-url URL --endpoint-url URL \
    --calls 60 --concurrency 60 --id-prefix p1
```

It submits `--calls` calls, at most `--concurrency` at a time, awaits each one's `contact.started`
and final event, and prints one JSON result after `RESULT_PREFIX` (`processes.run_child` reads
it): per call its events (ids, types, request ids), whether the connection data came, and the
seconds from submit to the connection data in hand; the client's dropped replies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import anyio

from orchestrator.client import CallClient
from orchestrator.testing.processes import RESULT_PREFIX
from orchestrator.testing.requests import REGION, customer_document


async def _one(client: CallClient, request_id: str, index: int, timeout_s: float) -> dict[str, Any]:
    began = time.perf_counter()
    call = await client.submit(customer_document(request_id, index))
    started = await call.started(timeout=timeout_s)
    to_started = time.perf_counter() - began
    await call.outcome(timeout=timeout_s)
    return {
        "request_id": request_id,
        "submit_to_started_s": to_started,
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
