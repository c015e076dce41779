"""Assembles a worker from `Settings` and supervises it: the only place settings become engine
values (quotas, request defaults, the watch policy) and the only place clients are created;
everything below receives them. `run_daemon` is `orchestrator run`.
"""

from __future__ import annotations

import contextlib
import functools
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from importlib.metadata import version
from typing import Any

import anyio
import structlog
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError
from pydantic import BaseModel

from orchestrator.clock import SystemClock
from orchestrator.connect.gateway import AioConnectGateway, GatewayPolicies, connect_client_config
from orchestrator.connect.operations import BudgetShare, Operation, Quota
from orchestrator.connect.ratelimit import Budget, RateBudget
from orchestrator.daemon.contact_events import PART as CE_PART
from orchestrator.daemon.contact_events import ContactEventsConsumer
from orchestrator.daemon.engine_fields import engine_values, quota_key
from orchestrator.daemon.faults import DeploymentFaults, OutagePolicy
from orchestrator.daemon.fleet import Fleet, FleetPolicy, redis_client
from orchestrator.daemon.options import WorkerOptions
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.daemon.redrive import QUEUE_PART
from orchestrator.daemon.settings import (
    ConnectSettings,
    ContactEventsSettings,
    FleetSettings,
    QueuePositionSettings,
    Settings,
    WatchSettings,
)
from orchestrator.daemon.worker import Worker
from orchestrator.engine.contact_events import ContactEventSink, LocalContactEvents
from orchestrator.engine.doorbells import ContactNotifier, EarlyEvents
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.queue_position import PositionPolicy, QueuePositions
from orchestrator.engine.reply_to import ReplyToPolicy
from orchestrator.engine.request import RequestDefaults
from orchestrator.engine.watch import WatchPolicy
from orchestrator.errors import ConfigError
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.sinks import (
    BatchingSink,
    EventBridgeSink,
    EventSink,
    FanoutSink,
    JsonlSink,
    LogSink,
    ReplyRoutes,
    ReplySink,
    SnsEventSink,
    SqsEventSink,
)
from orchestrator.sqs import QueueSource, SqsQueueSource, aws_client_config


def connect_quotas(connect: ConnectSettings) -> dict[Operation, Quota]:
    """The account's quotas as configured in `[connect]` (Connect's defaults unless raised)."""
    return {
        op: Quota(getattr(connect, quota_key(op, "rate")), getattr(connect, quota_key(op, "burst")))
        for op in Operation
    }


def budget_share(connect: ConnectSettings) -> BudgetShare:
    """How much of the quotas this worker's budget spends (its share, less the headroom)."""
    return BudgetShare(**engine_values(BudgetShare, connect))


def fleet_policy(fleet: FleetSettings) -> FleetPolicy:
    """How a fleet worker beats, counts the fleet and falls back while Redis fails."""
    return FleetPolicy(**engine_values(FleetPolicy, fleet))


def request_defaults(settings: Settings) -> RequestDefaults:
    """What requests may leave out, and the instances, flows and reply queues they may use."""
    reply_to = ReplyToPolicy(
        **engine_values(ReplyToPolicy, settings.events),
        region=settings.aws.region,
        endpoint=settings.endpoint("events"),
    )
    return RequestDefaults(**engine_values(RequestDefaults, settings.connect), reply_to=reply_to)


def watch_policy(
    watch: WatchSettings,
    contact_events: ContactEventsSettings | None = None,
    *,
    describe_rate: float | None = None,
) -> WatchPolicy:
    """When to poll DescribeContact, from `[watch]`; with contact events on, the slower safety-net
    schedule of `[contact_events]` replaces its schedule. `describe_rate` is the DescribeContact
    budget the heads of queue-aware polling share."""
    sections: list[BaseModel] = [watch]
    if contact_events is not None and contact_events.queue_url:
        sections.append(contact_events)
    return WatchPolicy(**engine_values(WatchPolicy, *sections), describe_rate=describe_rate)


def position_policy(queue_position: QueuePositionSettings) -> PositionPolicy:
    """When to ask GetContactMetrics for waiting customers' places in line."""
    return PositionPolicy(**engine_values(PositionPolicy, queue_position))


def admission_bound(settings: Settings) -> int:
    """Messages a worker may hold before their contact starts: what the StartWebRTCContact rate
    it may use serves within `admission_window_s` (plus the burst), at most
    `max_waiting_to_start`. In fleet mode the worker may use the whole account rate when the
    others are idle, so the bound is taken on the full quota."""
    q, c = settings.queue, settings.connect
    share = 1.0 if settings.fleet.redis_url else c.quota_share
    rate = c.start_webrtc_contact_rate * share * (1.0 - c.rate_headroom)
    burst = max(1.0, c.start_webrtc_contact_burst * share - 1.0)
    return max(1, min(q.max_waiting_to_start, int(rate * q.admission_window_s + burst)))


def worker_options(settings: Settings) -> WorkerOptions:
    """The worker's options from `[queue]`, `[shutdown]` and `[observability]`."""
    values = engine_values(WorkerOptions, settings.queue, settings.shutdown, settings.observability)
    values["max_waiting_to_start"] = admission_bound(settings)
    return WorkerOptions(**values, request_defaults=request_defaults(settings))


def gateway_policies(settings: Settings) -> GatewayPolicies:
    """How Connect calls are retried, from `[connect]`."""
    return GatewayPolicies.bounded(
        **engine_values(RetryPolicy, settings.connect),
        **engine_values(GatewayPolicies, settings.connect),
    )


def outage_policy(settings: Settings) -> OutagePolicy:
    """How calls wait while Connect does not answer, from `[connect]`."""
    return OutagePolicy(**engine_values(OutagePolicy, settings.connect))


#: `await client(service, endpoint, config)`: an AWS client that closes with the worker.
ClientOpener = Callable[[str, str | None, Any], Awaitable[Any]]


async def _event_sinks(settings: Settings, client: ClientOpener) -> list[EventSink]:
    """The sinks `[events]` names, each with its `include_connection_data`."""
    ev = settings.events
    include = ev.include_connection_data
    sinks: list[EventSink] = []
    if ev.jsonl_path:
        sinks.append(JsonlSink(ev.jsonl_path, include_connection_data=include))
    aws: tuple[tuple[str | None, str, Callable[..., EventSink]], ...] = (
        (ev.sqs_queue_url, "sqs", SqsEventSink),
        (ev.sns_topic_arn, "sns", SnsEventSink),
        (ev.eventbridge_bus, "events", EventBridgeSink),
    )
    for target, service, kind in aws:
        if target:
            made = await client(service, settings.endpoint("events"), aws_client_config())
            sinks.append(kind(made, target, include_connection_data=include))
    return sinks


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
    readiness = ReadinessBoard()
    options = worker_options(settings)
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

        # The log and in-process sinks are written directly; the others batch their calls (up
        # to 10 events each, several calls in flight) across concurrent lifecycles.
        remote = await _event_sinks(settings, client)
        batched = [await stack.enter_async_context(BatchingSink(sink)) for sink in remote]
        sink: EventSink = FanoutSink([LogSink(), *extra_sinks, *batched], metrics=metrics)
        # Requests that name an allowed ReplyTo get their events there too, after the sinks.
        replies = ReplyRoutes()
        if settings.events.reply_to_allowed:
            sink = await stack.enter_async_context(
                ReplySink(
                    sink,
                    await client("sqs", settings.endpoint("events"), aws_client_config()),
                    replies,
                    include_connection_data=settings.events.include_connection_data,
                    metrics=metrics,
                )
            )

        budget: Budget
        fleet: Fleet | None = None
        if settings.fleet.redis_url:
            # Fleet mode: one budget per operation for the whole account, in Redis (no share).
            fleet = Fleet.build(
                await stack.enter_async_context(
                    redis_client(settings.fleet.redis_url, timeout_s=settings.fleet.timeout_s)
                ),
                fleet_policy(settings.fleet),
                key_prefix=settings.fleet.key_prefix,
                region=region,
                quotas=connect_quotas(settings.connect),
                headroom=budget_share(settings.connect).headroom,
                metrics=metrics,
                readiness=readiness,
            )
            budget = fleet.budget
        else:
            share = budget_share(settings.connect)
            budget = RateBudget(
                connect_quotas(settings.connect), share=share.share, headroom=share.headroom
            )
        metrics.watch_budget(budget.snapshots)
        # Held calls (Connect not answering) are the worker's deployment faults: it stops
        # receiving while they last, and `/readyz` says why.
        outage = outage_policy(settings)
        faults = DeploymentFaults(
            readiness=readiness,
            metrics=metrics,
            clock=SystemClock(),
            backoff_bounds_s=options.fault_backoff_s,
            outage=outage,
        )
        gateway = AioConnectGateway(
            connect,
            budget,
            policies=gateway_policies(settings),
            metrics=metrics,
            outage=faults if outage.hold else None,
        )
        # Contact events that beat their watch wait for it a while (`EarlyEvents`).
        notifier = ContactNotifier(early=EarlyEvents(metrics)) if notifier is None else notifier
        positions = QueuePositions(
            gateway,
            notifier.frontier,
            position_policy(settings.queue_position),
        )
        engine = LifecycleEngine(
            gateway=gateway,
            sink=sink,
            watch=watch_policy(
                settings.watch,
                settings.contact_events,
                describe_rate=budget[Operation.DESCRIBE_CONTACT].target_rate,
            ),
            metrics=metrics,
            notifier=notifier,
            positions=positions if positions.active else None,
            rng=rng or random.Random(),
            deployment_ids=frozenset(
                filter(None, (settings.connect.instance_id, settings.connect.contact_flow_id))
            ),
        )
        if source is None:
            sqs = await client("sqs", settings.endpoint("queue"), aws_client_config())
            source = await stack.enter_async_context(SqsQueueSource(sqs, settings.queue.url))
        #: Loops the worker owns beside its receive loop (contact events, fleet heartbeats, the
        #: customers' places in line).
        services: list[Callable[[], Coroutine[Any, Any, None]]] = []
        if positions.active:
            services.append(positions.run)
        ce = settings.contact_events
        if ce.queue_url:
            # Its own client: a slow or failing events queue never delays the request queue.
            events_in = await client(
                "sqs", settings.endpoint("contact_events"), aws_client_config()
            )
            events_to: ContactEventSink = LocalContactEvents(
                engine.notifier, metrics=metrics, clock=engine.clock
            )
            if fleet is not None:  # every worker's watches hear what any worker reads
                events_to = fleet.contact_events(events_to)
            consumer = ContactEventsConsumer(
                events_in,
                ce.queue_url,
                events_to,
                metrics=metrics,
                readiness=readiness,
                wait_time_s=ce.wait_time_s,
                backoff_s=options.receive_backoff_s,
                rng=rng,
                may_consume=functools.partial(readiness.working, QUEUE_PART, besides=CE_PART),
            )
            services.append(consumer.run)
        if fleet is not None:  # heartbeats, cancel notices, contact events if they are on
            services.extend(fleet.services)
        yield Worker(
            source,
            engine,
            options,
            rng=rng,
            readiness=readiness,
            capacity=gateway.capacity,
            faults=faults,
            services=services,
            # Fleet mode: tombstones in Redis; the holder of a lifecycle hears of its cancel.
            cancels=None if fleet is None else fleet.cancels(engine, settings.queue.request_ttl_s),
            replies=replies,
        )


async def credentials_problem(session: AioSession | None = None) -> str | None:
    """Why botocore's credential chain finds nothing, or None when it finds credentials."""
    try:
        found = await (session or get_session()).get_credentials()
    except BotoCoreError as exc:
        return f"AWS credentials could not be loaded: {exc}"
    if found is None:
        return (
            "no AWS credentials found (environment, shared config and credentials files, SSO, "
            "container or instance role): the worker could not call AWS"
        )
    return None


class _SignalTarget:
    """Where SIGTERM/SIGINT go: while the worker is being built, they end the start-up (nothing
    was received yet: exit 0); once it exists, each only asks it to stop (the second one skips
    the grace period)."""

    def __init__(self, starting: anyio.CancelScope) -> None:
        self.starting = starting
        self.worker: Worker | None = None

    async def follow(self, signals: AsyncIterator[int]) -> None:
        log = structlog.get_logger("orchestrator.cli")
        async for signum in signals:
            name = signal.Signals(signum).name
            if self.worker is None:
                log.info("worker.signal", signal=name, detail="during start-up: nothing received")
                self.starting.cancel()
            else:
                log.info("worker.signal", signal=name)
                self.worker.stop()


def startup_summary(settings: Settings) -> dict[str, Any]:
    """What an operator checks first, in one log line (secrets masked; the redrive policy
    follows in its own line once read from the queue)."""
    masked = settings.masked()
    c = settings.connect
    ev = settings.events
    sinks = ["log"] + [
        name
        for name, on in (
            ("sqs", ev.sqs_queue_url),
            ("sns", ev.sns_topic_arn),
            ("eventbridge", ev.eventbridge_bus),
            ("jsonl", ev.jsonl_path),
        )
        if on
    ]
    return {
        "version": version("contact-orchestrator"),
        "queue_url": settings.queue.url,
        "region": settings.aws.region,
        "connect_endpoint": settings.endpoint("connect")
        or f"https://connect.{settings.aws.region}.amazonaws.com",
        "quotas": {
            op.value: f"{q.rate:g}/s burst {q.burst:g}" for op, q in connect_quotas(c).items()
        },
        "quota_share": None if settings.fleet.redis_url else c.quota_share,
        "max_in_flight": settings.queue.max_in_flight,
        "max_waiting_to_start": admission_bound(settings),
        "request_ttl_s": settings.queue.request_ttl_s,
        "sinks": sinks,
        "contact_events": settings.contact_events.queue_url or "off (polling only)",
        "fleet": masked["fleet"]["redis_url"] or "off (local rate budget)",
    }


def config_error_in(group: BaseExceptionGroup[Any]) -> ConfigError | None:
    """The ConfigError a task group wrapped, when it holds nothing else."""
    leaf: BaseException | None
    leaf, rest = group.split(ConfigError)
    while isinstance(leaf, BaseExceptionGroup) and rest is None:
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, ConfigError) and rest is None else None


async def run_daemon(settings: Settings) -> None:
    """`orchestrator run`: a configuration error met while starting (a busy port, a bad
    endpoint) is raised as itself, not inside a task group's exception group."""
    try:
        await _run_daemon(settings)
    except BaseExceptionGroup as group:
        error = config_error_in(group)
        if error is None:
            raise
        raise error from None


async def _run_daemon(settings: Settings) -> None:
    # The loop takes SIGTERM/SIGINT before anything is built: the entry point's handler
    # (`orchestrator.__main__`) raises SystemExit, which inside a task group (the batchers, the
    # sinks) would end the process with an exception group's traceback and status 1.
    metrics = Metrics()
    with (
        anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals,
        anyio.CancelScope() as starting,
    ):
        target = _SignalTarget(starting)
        async with anyio.create_task_group() as tg:
            tg.start_soon(target.follow, signals)
            async with (
                open_worker(settings, metrics=metrics) as worker,
                anyio.create_task_group() as serving,
            ):
                target.worker = worker
                if settings.observability.enabled:
                    from orchestrator.daemon.observability import (  # noqa: PLC0415
                        serve_observability,
                    )

                    connect_url = settings.endpoint("connect") or (
                        f"https://connect.{settings.aws.region}.amazonaws.com"
                    )
                    serve = functools.partial(
                        serve_observability, port_origin=settings.origin("observability", "port")
                    )
                    await serving.start(serve, settings.observability, worker, metrics, connect_url)
                structlog.get_logger("orchestrator.cli").info(
                    "worker.started", **startup_summary(settings)
                )
                await worker.run()
                serving.cancel_scope.cancel()
            tg.cancel_scope.cancel()
