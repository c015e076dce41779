"""Assembles a worker from `Settings`: the AWS clients, sinks, rate budget, engine and queue.

The only place that creates clients. Everything below receives them.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiobotocore.session import AioSession, get_session

from .gateway import AioConnectGateway, GatewayPolicies, connect_client_config
from .lifecycle import LifecycleEngine
from .metrics import Metrics
from .queue import QueueSource
from .ratelimit import RateBudget
from .settings import Settings
from .sinks import (
    BatchingSink,
    EventBridgeSink,
    EventSink,
    FanoutSink,
    JsonlSink,
    LogSink,
    SnsEventSink,
    SqsEventSink,
)
from .sqs import SqsQueueSource, sqs_client_config
from .watch import ContactNotifier
from .worker import Worker, WorkerOptions


def worker_options(settings: Settings) -> WorkerOptions:
    q = settings.queue
    return WorkerOptions(
        max_in_flight=q.max_in_flight,
        wait_time_s=q.wait_time_s,
        visibility_timeout_s=q.visibility_timeout_s,
        max_receive_count=q.max_receive_count,
        delete_rejected=q.delete_rejected,
        retry_base_delay_s=q.retry_base_delay_s,
        retry_max_delay_s=q.retry_max_delay_s,
        grace_period_s=settings.shutdown.grace_period_s,
        request_defaults=settings.connect.request_defaults(),
    )


def gateway_policies(settings: Settings) -> GatewayPolicies:
    c = settings.connect
    return GatewayPolicies.bounded(
        max_attempts=c.retry_max_attempts,
        max_time_s=c.retry_max_time_s,
        capacity_max_time_s=c.capacity_max_wait_s,
    )


@contextlib.asynccontextmanager
async def open_worker(
    settings: Settings,
    *,
    session: AioSession | None = None,
    metrics: Metrics | None = None,
    extra_sinks: Sequence[EventSink] = (),
    notifier: ContactNotifier | None = None,
    source: QueueSource | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Worker]:
    """A ready worker; clients and batchers close when the block exits.

    `source` replaces the SQS queue of `[queue]` (benchmarks feed a `MemoryQueue`); `rng` seeds
    the jitter of polling and retries for reproducible runs.
    """
    session = session or get_session()
    metrics = metrics or Metrics()
    region = settings.aws.region
    async with contextlib.AsyncExitStack() as stack:

        async def client(service: str, endpoint: str | None, config: Any) -> Any:
            return await stack.enter_async_context(
                session.create_client(
                    service,  # type: ignore[call-overload]
                    region_name=region,
                    endpoint_url=endpoint,
                    config=config,
                )
            )

        connect = await client("connect", settings.endpoint("connect"), connect_client_config())

        ev = settings.events
        include = ev.include_connection_data
        # The log and in-process sinks are written directly; the others batch their calls (up
        # to 10 events each, several calls in flight) across concurrent lifecycles.
        remote: list[EventSink] = []
        if ev.jsonl_path:
            remote.append(JsonlSink(ev.jsonl_path, include_connection_data=include))
        if ev.sqs_queue_url:
            events_sqs = await client("sqs", settings.endpoint("events"), sqs_client_config())
            remote.append(
                SqsEventSink(events_sqs, ev.sqs_queue_url, include_connection_data=include)
            )
        if ev.sns_topic_arn:
            sns = await client("sns", settings.endpoint("events"), sqs_client_config())
            remote.append(SnsEventSink(sns, ev.sns_topic_arn, include_connection_data=include))
        if ev.eventbridge_bus:
            bus = await client("events", settings.endpoint("events"), sqs_client_config())
            remote.append(EventBridgeSink(bus, ev.eventbridge_bus, include_connection_data=include))
        batched = [await stack.enter_async_context(BatchingSink(sink)) for sink in remote]
        sink = FanoutSink([LogSink(), *extra_sinks, *batched], metrics=metrics)

        budget = RateBudget(
            settings.connect.quotas(),
            share=settings.connect.quota_share,
            headroom=settings.connect.rate_headroom,
        )
        metrics.watch_budget(budget)
        gateway = AioConnectGateway(
            connect,
            budget,
            policies=gateway_policies(settings),
            metrics=metrics,
            consistency_window_s=settings.connect.consistency_window_s,
        )
        engine = LifecycleEngine(
            gateway=gateway,
            sink=sink,
            watch=settings.watch.policy(),
            metrics=metrics,
            notifier=notifier if notifier is not None else ContactNotifier(),
            rng=rng or random.Random(),
        )
        if source is None:
            sqs = await client("sqs", settings.endpoint("queue"), sqs_client_config())
            source = await stack.enter_async_context(SqsQueueSource(sqs, settings.queue.url))
        yield Worker(source, engine, worker_options(settings), metrics=metrics, rng=rng)
