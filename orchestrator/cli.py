"""The `orchestrator` command: parses arguments at the edge, hands typed values down and prints
what comes back. What a command does lives next to what it drives (`daemon.enqueue`,
`daemon.dlq`, `orchestrator.sqs`); the testing kit is imported only by the commands that run it
(`demo`, `emulator`, `dev`)."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator import __version__, tracing
from orchestrator.daemon import dlq
from orchestrator.daemon.assembly import credentials_problem, request_defaults, run_daemon
from orchestrator.daemon.enqueue import EnqueueReport, cancel_lines, enqueue
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.observability import check_endpoint
from orchestrator.daemon.probe import probe
from orchestrator.daemon.settings import Settings, load_settings, settings_json
from orchestrator.errors import ConfigError
from orchestrator.sqs import describe_problem, open_sqs

T = TypeVar("T")

EXIT_CONFIG = 2
CONFIG_HELP = "TOML configuration file (default: $ORCHESTRATOR_CONFIG; environment only if unset)"


# -- the daemon and its configuration ------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    """run the worker daemon

    Run the worker: receive call requests from the SQS queue, drive each contact, emit lifecycle
    events, until SIGTERM/SIGINT (graceful: in-flight work gets [shutdown] grace_period_s, then
    is handed back to the queue). JSON logs on stdout."""
    settings = load_settings(args.config)
    configure_logging(level=settings.logging.level, json_output=settings.logging.json_output)
    with tracing.configured():  # the OTEL_* environment; nothing without the otel extra
        anyio.run(run_daemon, settings)
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    """validate the configuration and print the effective settings

    Load the configuration (file and environment) and print the effective settings as JSON with
    secrets masked; on error print what is wrong and exit with status 2. With --probe, also try
    the queues it names (request queue, its dead-letter queue, events, contact events) and
    Connect, one cheap call each: one line per problem on stderr, and exit status 1 if any."""
    settings = load_settings(args.config)
    print(settings_json(settings))
    problem = anyio.run(credentials_problem)
    if problem is not None:  # a warning: the configuration itself is valid
        print(f"orchestrator check-config: {problem}", file=sys.stderr)
    if not args.probe:
        return 0
    problems = anyio.run(probe, settings)
    for line in problems:
        print(f"orchestrator check-config: {line}", file=sys.stderr)
    return 1 if problems else 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    """exit 0 when the running worker's /healthz answers 200 (for container healthchecks)

    Ask the worker running with this configuration for its health on the observability server
    ([observability] host and port; a wildcard host is reached on loopback). Exit 0 on 200, 1
    otherwise (the reason on stderr), 2 on a configuration error."""
    settings = load_settings(args.config)
    problem = check_endpoint(settings.observability, args.path, args.timeout)
    if problem is not None:
        print(f"orchestrator healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


# -- argument types -----------------------------------------------------------------------------


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value


def _seconds(value: str) -> float:
    if not (number := float(value)) >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return number


def _positive(value: str) -> float:
    if not (number := float(value)) > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {value}")
    return number


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0: {value}")
    return int(value)


# -- one-shot SQS commands ----------------------------------------------------------------------


def _tool_settings(config: str | None, queue_url: str | None) -> Settings:
    """The configuration, with `queue_url` (a flag) in place of `[queue] url` when given."""
    overrides: dict[str, Any] = {"queue": {"url": queue_url}} if queue_url else {}
    return load_settings(config, **overrides)


def _sqs_call(
    command: str, settings: Settings, args: argparse.Namespace, url: str, work: Callable[..., Any]
) -> Any:
    """Run `work(sqs)` with an SQS client (region: the flag, else the queue URL's, else the
    configuration's); an AWS error nothing gets past becomes one line and exit status 1."""

    async def call() -> Any:
        async with open_sqs(
            url,
            region=args.region,
            endpoint_url=args.endpoint_url or settings.endpoint("queue"),
            default_region=settings.aws.region,
        ) as sqs:
            return await work(sqs)

    try:
        return anyio.run(call)
    except (ClientError, BotoCoreError) as exc:
        problem = describe_problem(exc, args.queue_url or "")
        print(f"orchestrator {command}: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def _cmd_enqueue(args: argparse.Namespace) -> int:
    """send call requests (JSON lines) to a queue

    Send call requests, one JSON object per line, from FILE or stdin to SQS, in batches within
    SQS's limits (10 entries, the queue's maximum message size; a longer line is reported and
    skipped). Each line is first checked as the worker checks a message (with the configured
    [connect] defaults): an invalid one is refused, with why. Cancel lines ({"Action":
    "cancel", ...}) go through the same way. The queue, endpoint and region default to the
    configuration."""
    source = sys.stdin if args.file in (None, "-") else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    with source:
        lines = [line.strip() for line in source if line.strip()]
    return _send_lines("enqueue", args, lines, check=not args.no_check)


def _cmd_cancel(args: argparse.Namespace) -> int:
    """cancel call requests

    Send a cancel message for each RID to the request queue: a request not started yet never
    reaches Connect, a contact still waiting for an agent is stopped, a contact an agent has is
    left alone (docs/requests-and-events.md). --contact-id (with one RID) lets any worker stop
    the contact, even one that does not hold the request. Queue, endpoint and region as for
    enqueue."""
    if args.contact_id is not None and len(args.request_ids) != 1:
        print("orchestrator cancel: --contact-id names the contact of one request", file=sys.stderr)
        return EXIT_CONFIG
    lines = cancel_lines(args.request_ids, contact_id=args.contact_id, instance_id=args.instance_id)
    return _send_lines("cancel", args, lines, check=True)


def _send_lines(command: str, args: argparse.Namespace, lines: list[str], *, check: bool) -> int:
    """`enqueue` and `cancel`: check and send `lines`, report, exit 0 only if all were sent."""
    settings = _tool_settings(args.config, args.queue_url)
    queue_url = settings.queue.url
    defaults = request_defaults(settings) if check else None

    def send(sqs: Any) -> Awaitable[EnqueueReport]:
        return enqueue(sqs, queue_url, lines, defaults=defaults)

    with tracing.configured():  # each message carries its traceparent when tracing
        report: EnqueueReport = _sqs_call(command, settings, args, queue_url, send)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if report.stopped:
        print(f"orchestrator {command}: {report.stopped}", file=sys.stderr)
    what = "request(s)" if command == "enqueue" else "cancel(s)"
    print(f"sent {report.sent} of {len(lines)} {what} to {queue_url}")
    return 0 if report.sent == len(lines) else 1


def _dlq_settings(args: argparse.Namespace) -> tuple[Settings, str | None]:
    """The configuration and the source queue (`--to`, else `[queue] url`, else None)."""
    to: str | None = getattr(args, "to", None)
    try:
        settings = _tool_settings(args.config, to)
    except ConfigError as exc:
        if "queue.url: required" not in str(exc) or args.queue_url is None:
            raise
        # No source queue configured, and the DLQ is named: its defaults are enough.
        return _tool_settings(args.config, args.queue_url), None
    return settings, settings.queue.url


def _cmd_dlq_inspect(args: argparse.Namespace) -> int:
    """list what sits in a dead-letter queue and why, leaving it in place

    List the messages of a dead-letter queue without consuming them (each is received, hidden
    while the listing runs, then made visible again): RequestId, age and why it is there, by the
    worker's own validation ('valid request': it failed transiently or a worker crashed).
    Receive counts are not shown (looking is a receive too); the source queue's redrive policy
    says after how many receives messages arrive."""
    settings, source = _dlq_settings(args)

    async def look(sqs: Any) -> tuple[dlq.Located, list[dlq.DeadLetter], str | None]:
        located = await dlq.locate(sqs, args.queue_url, source)
        defaults = request_defaults(settings)
        letters, stopped = await dlq.inspect(sqs, located, defaults=defaults, limit=args.limit)
        return located, letters, stopped

    located, letters, stopped = _sqs_call(
        "dlq", settings, args, args.queue_url or source or "", look
    )
    if args.json:
        print(json.dumps(dlq.listing_document(letters, located, stopped, time.time()), indent=2))
    else:
        print("\n".join(dlq.listing(letters, located, stopped, time.time())))
    return 0


def _cmd_dlq_redrive(args: argparse.Namespace) -> int:
    """move dead-lettered messages back to the source queue

    Send valid requests from a dead-letter queue back to the source queue, then delete them
    from the DLQ, at a pace the workers' admission absorbs. Their receive counts start again at
    zero; FIFO messages keep their group. Invalid ones stay unless --include-invalid."""
    settings, source = _dlq_settings(args)
    rate = args.rate or settings.connect.start_webrtc_contact_rate
    selection = dlq.Selection(
        request_ids=frozenset(args.request_id or ()),
        older_than_s=args.older_than,
        newer_than_s=args.newer_than,
        valid_only=not args.include_invalid,
    )

    async def redrive(sqs: Any) -> tuple[str, str, dlq.RedriveReport]:
        located = await dlq.locate(sqs, args.queue_url, source)
        to = located.redrive_target(args.to)
        report = await dlq.redrive(
            sqs,
            located,
            to,
            selection,
            defaults=request_defaults(settings),
            rate_per_s=rate,
            dry_run=args.dry_run,
            limit=args.limit,
        )
        return located.url, to, report

    url, to, report = _sqs_call("dlq", settings, args, args.queue_url or source or "", redrive)
    print("\n".join(dlq.redrive_lines(report, url, to, rate, time.time())))
    for letter, why in report.failed:
        print(f"failed: {letter.request_id or letter.message_id}: {why}", file=sys.stderr)
    return 1 if report.failed else 0


# -- the testing kit's commands -----------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    """run the whole job on an embedded Connect emulator and SQS server

    Start the Connect emulator and an SQS server on loopback, enqueue sample requests, run the
    real worker until every request has its final event, and print a summary."""
    from orchestrator.testing.demo import run_demo  # noqa: PLC0415 (needs the optional moto dependency)

    if args.requests < 4:
        print("orchestrator demo: --requests must be at least 4", file=sys.stderr)
        return EXIT_CONFIG
    result = anyio.run(lambda: run_demo(args.requests, out=sys.stdout, seed=args.seed))
    return 0 if result.completed else 1


def _emulator_options(parser: argparse.ArgumentParser) -> None:
    from orchestrator.testing.emulator import cli as emulator_cli  # noqa: PLC0415 (testing kit)

    emulator_cli.add_arguments(parser)


def _cmd_dlq(_: argparse.Namespace) -> int:  # pragma: no cover - an action is required
    """inspect a dead-letter queue, or move its messages back

    Dead-letter queue tools: see what is there and why; redrive it."""
    return EXIT_CONFIG


def _cmd_emulator(args: argparse.Namespace) -> int:
    """serve a local, wire-level Amazon Connect emulator

    Serve a wire-level Amazon Connect emulator (StartWebRTCContact, DescribeContact,
    StartScreenSharing, StopContact) with a simulated contact center, quotas and fault
    injection, until SIGTERM or SIGINT. Ground truth and control live under /_emulator/."""
    from orchestrator.testing.emulator import cli as emulator_cli  # noqa: PLC0415 (testing kit)

    return emulator_cli.run(args)


def _cmd_dev(args: argparse.Namespace) -> int:
    """start a local SQS server, queues and the Connect emulator to run the daemon against

    Start the local SQS server (moto) and the Connect emulator on loopback, create a request
    queue with a dead-letter queue and an events queue, write the configuration that points a
    worker at them, and print it with the commands to run and feed a worker. Serves until
    Ctrl-C (needs the demo extra)."""
    from orchestrator.testing.dev import run_dev  # noqa: PLC0415 (needs the optional moto dependency)

    where = Path(args.dir) if args.dir else None
    ports = {"sqs_port": args.sqs_port, "connect_port": args.connect_port}
    anyio.run(lambda: run_dev(out=sys.stdout, directory=where, **ports))
    return 0


# -- parser -------------------------------------------------------------------------------------


class _Subcommand(argparse.ArgumentParser):
    """A subcommand whose options may come from a module imported only when the subcommand is
    parsed or its help shown (`lazy_options`): `orchestrator run` never imports the testing kit."""

    def __init__(
        self, *args: Any, lazy_options: Callable[[Any], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_options = lazy_options

    def _load(self) -> None:
        load, self._lazy_options = self._lazy_options, None
        if load is not None:
            load(self)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._load()
        return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        self._load()
        return super().format_help()


def _command(
    sub: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    config: bool = True,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand: its summary is the first line of the handler's docstring, its description
    the rest."""
    summary, _, description = inspect.getdoc(handler).partition("\n\n")  # type: ignore[union-attr]
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description, **kwargs
    )
    parser.set_defaults(handler=handler)
    if config:
        parser.add_argument("--config", help=CONFIG_HELP)
    return parser


def _sqs_options(parser: argparse.ArgumentParser, queue_help: str) -> None:
    parser.add_argument("--queue-url", type=_http_url, help=queue_help)
    parser.add_argument(
        "--endpoint-url", type=_http_url, help="SQS endpoint (default: the configuration's)"
    )
    parser.add_argument(
        "--region", help="AWS region (default: the queue URL's, else [aws] region, else us-east-1)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description=(
            "contact-orchestrator: consumes call requests from SQS, starts Amazon Connect WebRTC "
            "contacts, watches them until an agent connects and starts screen sharing, and emits "
            "a lifecycle event at every step."
        ),
    )
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Subcommand
    )
    _command(sub, "run", _cmd_run)
    demo = _command(sub, "demo", _cmd_demo, config=False)
    demo.add_argument("--requests", type=int, default=20, help="how many requests (default 20)")
    demo.add_argument("--seed", type=int, default=7, help="emulator seed (default 7)")

    enq = _command(sub, "enqueue", _cmd_enqueue)
    _sqs_options(enq, "the request queue (default: [queue] url)")
    enq.add_argument("--no-check", action="store_true", help="send every line as is, valid or not")
    enq.add_argument("file", nargs="?", help="JSON lines file, or - for stdin (default)")

    cancel = _command(sub, "cancel", _cmd_cancel)
    _sqs_options(cancel, "the request queue (default: [queue] url)")
    cancel.add_argument("request_ids", nargs="+", metavar="RID", help="the RequestId to cancel")
    cancel.add_argument(
        "--contact-id", help="its contact (from contact.started): any worker stops it"
    )
    cancel.add_argument(
        "--instance-id", help="the contact's instance (default: [connect] instance_id)"
    )

    dead = _command(sub, "dlq", _cmd_dlq, config=False)
    dead_sub = dead.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_help = "the dead-letter queue (default: the DLQ of [queue] url's redrive policy)"
    listing = _command(dead_sub, "inspect", _cmd_dlq_inspect)
    _sqs_options(listing, dlq_help)
    listing.add_argument(
        "--limit", type=_positive_int, default=100, help="list at most this many (default 100)"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    redrive = _command(dead_sub, "redrive", _cmd_dlq_redrive)
    _sqs_options(redrive, dlq_help)
    redrive.add_argument(
        "--to",
        type=_http_url,
        help="the source queue (default: [queue] url, when its redrive policy names this DLQ)",
    )
    redrive.add_argument(
        "--request-id", action="append", metavar="ID", help="move only this request (repeatable)"
    )
    age = redrive.add_mutually_exclusive_group()
    for flag, help_text in (
        ("--older-than", "move only messages sent at least SECONDS ago (SQS SentTimestamp)"),
        ("--newer-than", "move only messages sent less than SECONDS ago"),
    ):
        age.add_argument(flag, type=_seconds, metavar="SECONDS", help=help_text)
    redrive.add_argument(
        "--rate",
        type=_positive,
        metavar="PER_SECOND",
        help="messages per second (default: [connect] start_webrtc_contact_rate)",
    )
    redrive.add_argument(
        "--include-invalid",
        action="store_true",
        help="move messages the worker's validation refuses too (by default they stay: they "
        "would only come back)",
    )
    # The default now: still accepted, so that existing scripts keep working.
    redrive.add_argument("--valid-only", action="store_true", help=argparse.SUPPRESS)
    redrive.add_argument("--limit", type=_positive_int, help="move at most this many")
    redrive.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")

    check = _command(sub, "check-config", _cmd_check_config)
    check.add_argument(
        "--probe",
        action="store_true",
        help="also try the queues and Connect (one cheap call each); exit 1 on any problem",
    )
    health = _command(sub, "healthcheck", _cmd_healthcheck)
    health.add_argument(
        "--path",
        default="/healthz",
        choices=["/healthz", "/readyz"],
        help="which endpoint (default /healthz, liveness)",
    )
    health.add_argument(
        "--timeout", type=float, default=4.0, help="seconds to wait for an answer (default 4)"
    )
    _command(sub, "emulator", _cmd_emulator, config=False, lazy_options=_emulator_options)
    dev = _command(sub, "dev", _cmd_dev, config=False)
    dev.add_argument("--dir", help="where to write the configuration (default: a temporary one)")
    dev.add_argument("--sqs-port", type=int, default=0, help="SQS server port (default: any)")
    dev.add_argument("--connect-port", type=int, default=0, help="emulator port (default: any)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigError as error:  # a bad file, variable or port: what is wrong, no traceback
        print(f"orchestrator: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return result
