"""The `orchestrator` command: parses arguments at the edge and hands typed values down."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from orchestrator import __version__
from orchestrator.daemon import dlq
from orchestrator.daemon.assembly import request_defaults, run_daemon
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.observability import check_endpoint
from orchestrator.daemon.settings import Settings, load_settings, settings_json
from orchestrator.errors import ConfigError
from orchestrator.sqs import aws_client_config
from orchestrator.testing.emulator import cli as emulator_cli
from orchestrator.testing.emulator import serve

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

EXIT_CONFIG = 2
_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
#: `https://sqs.REGION.amazonaws.com/...` and the legacy `https://REGION.queue.amazonaws.com/...`
_QUEUE_REGION = re.compile(r"^(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")


# -- run ---------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging(level=settings.logging.level, json_output=settings.logging.json_output)
    anyio.run(run_daemon, settings)
    return 0


# -- check-config -------------------------------------------------------------------------------


async def _credentials_problem() -> str | None:
    """Why botocore's credential chain finds nothing, or None when it finds credentials."""
    try:
        found = await get_session().get_credentials()
    except BotoCoreError as exc:
        return f"AWS credentials could not be loaded: {exc}"
    if found is None:
        return (
            "no AWS credentials found (environment, shared config and credentials files, SSO, "
            "container or instance role): the worker could not call AWS"
        )
    return None


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(settings_json(settings))
    problem = anyio.run(_credentials_problem)
    if problem is not None:  # a warning: the configuration itself is valid
        print(f"orchestrator check-config: {problem}", file=sys.stderr)
    return 0


# -- healthcheck --------------------------------------------------------------------------------


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    problem = check_endpoint(settings.observability, args.path, args.timeout)
    if problem is not None:
        print(f"orchestrator healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


# -- AWS calls from one-shot commands -----------------------------------------------------------


def region_of(queue_url: str) -> str | None:
    """The region in an AWS queue URL (`https://sqs.eu-west-1.amazonaws.com/...`), else None."""
    match = _QUEUE_REGION.match(urlsplit(queue_url).hostname or "")
    return (match.group(1) or match.group(2)) if match else None


def _aws_problem(exc: Exception, queue_url: str) -> str:
    """One line for an AWS error a one-shot command cannot get past."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code in _MISSING_QUEUE:
            return f"queue does not exist: {queue_url}"
        operation = getattr(exc, "operation_name", "call")
        return f"{operation} failed: {code}: {error.get('Message', '')}"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the SQS endpoint {exc.kwargs.get('endpoint_url', '')}"
    return f"{type(exc).__name__}: {exc}"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {value}")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return number


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0: {value}")
    return int(value)


def _tool_settings(config: str | None, queue_url: str | None) -> Settings:
    """The configuration, with `queue_url` (a flag) in place of `[queue] url` when given."""
    overrides: dict[str, Any] = {"queue": {"url": queue_url}} if queue_url else {}
    return load_settings(config, **overrides)


@asynccontextmanager
async def _sqs(settings: Settings, args: argparse.Namespace, url: str) -> AsyncIterator[SQSClient]:
    """An SQS client: flags first, then the queue URL's region, then the configuration."""
    region = args.region or region_of(url) or settings.aws.region
    endpoint = args.endpoint_url or settings.endpoint("queue")
    async with get_session().create_client(
        "sqs", region_name=region, endpoint_url=endpoint, config=aws_client_config()
    ) as client:
        yield client


# -- enqueue ------------------------------------------------------------------------------------


async def _max_message_bytes(sqs: SQSClient, queue_url: str) -> int:
    """The queue's MaximumMessageSize (256 KiB when it cannot be read)."""
    try:
        response = await sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"]
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING_QUEUE:
            raise
        return dlq.BATCH_BYTES
    return int(response.get("Attributes", {}).get("MaximumMessageSize", dlq.BATCH_BYTES))


async def enqueue(sqs: SQSClient, queue_url: str, lines: list[str]) -> int:
    """Send `lines` as messages, batched under SQS's limits; report failures on stderr.

    A line over the queue's message size limit is reported and skipped. Stops at the first
    error no batch can get past (a missing queue, an unreachable endpoint). Returns how many
    were sent.
    """
    fifo = queue_url.endswith(".fifo")
    sent = 0
    try:
        limit = await _max_message_bytes(sqs, queue_url)
        numbered: list[tuple[int, str]] = []
        for number, body in enumerate(lines, 1):
            size = dlq.body_bytes(body)
            if size > limit:
                print(
                    f"skipped: line {number}: {size} bytes, over the queue's {limit}-byte limit",
                    file=sys.stderr,
                )
            else:
                numbered.append((number, body))
        for batch in dlq.sqs_batches(numbered, lambda n: dlq.body_bytes(n[1]), max_bytes=limit):
            entries: list[Any] = []
            for number, body in batch:
                entry: dict[str, Any] = {"Id": str(number), "MessageBody": body}
                if fifo:
                    try:
                        request_id = str(json.loads(body).get("RequestId") or f"line-{number}")
                    except (ValueError, AttributeError):
                        request_id = f"line-{number}"
                    entry["MessageGroupId"] = request_id
                    entry["MessageDeduplicationId"] = request_id[:128]
                entries.append(entry)
            response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            sent += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                print(f"failed: line {failure['Id']}: {failure.get('Message')}", file=sys.stderr)
    except (ClientError, BotoCoreError) as exc:
        print(f"orchestrator enqueue: {_aws_problem(exc, queue_url)}", file=sys.stderr)
    return sent


def _cmd_enqueue(args: argparse.Namespace) -> int:
    settings = _tool_settings(args.config, args.queue_url)
    queue_url = settings.queue.url
    source = sys.stdin if args.file in (None, "-") else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    with source:
        lines = [line.strip() for line in source if line.strip()]

    async def send() -> int:
        async with _sqs(settings, args, queue_url) as sqs:
            return await enqueue(sqs, queue_url, lines)

    sent = anyio.run(send)
    print(f"sent {sent} of {len(lines)} request(s) to {queue_url}")
    return 0 if sent == len(lines) else 1


# -- dlq ----------------------------------------------------------------------------------------


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


async def _find_dlq(sqs: SQSClient, args: argparse.Namespace, source: str | None) -> str:
    if args.queue_url:
        return str(args.queue_url)
    found = await dlq.dead_letter_queue_of(sqs, source) if source else None
    if found is None:
        raise ConfigError(
            "--queue-url is required: the configuration's [queue] url has no redrive policy "
            "naming a dead-letter queue"
        )
    return found


def _print_letters(letters: list[dlq.DeadLetter], url: str, stopped: str | None) -> None:
    now = time.time()
    print(f"{'REQUEST ID':<40} {'RECEIVES':>8}  {'AGE':>7}  WHY")
    for letter in letters:
        age = dlq.format_age(letter.age_s(now))
        rid = letter.request_id or "-"
        print(f"{rid:<40} {letter.receive_count:>8}  {age:>7}  {letter.reason}")
    valid = sum(1 for d in letters if d.problem is None)
    print(
        f"{len(letters)} message(s) in {url}: {valid} valid request(s) (transient failures or "
        f"crashes), {len(letters) - valid} refused by validation; all left in place"
    )
    if stopped:
        print(f"note: {stopped}")


def _cmd_dlq_inspect(args: argparse.Namespace) -> int:
    settings, source = _dlq_settings(args)

    async def inspect() -> tuple[str, list[dlq.DeadLetter], str | None]:
        async with _sqs(settings, args, args.queue_url or source or "") as sqs:
            url = await _find_dlq(sqs, args, source)
            size = await dlq.approximate_size(sqs, url)
            queue = dlq.DeadLetterQueue(
                sqs,
                url,
                defaults=request_defaults(settings.connect),
                hold_s=min(43_200, 30 + size // 20),
            )
            letters, stopped = await queue.inspect(limit=args.limit)
            return url, letters, stopped

    try:
        url, letters, stopped = anyio.run(inspect)
    except (ClientError, BotoCoreError) as exc:
        print(f"orchestrator dlq: {_aws_problem(exc, args.queue_url or '')}", file=sys.stderr)
        return 1
    if args.json:
        now = time.time()
        document = {
            "queue_url": url,
            "messages": [d.as_dict(now) for d in letters],
            "stopped": stopped,
        }
        print(json.dumps(document, indent=2))
    else:
        _print_letters(letters, url, stopped)
    return 0


def _cmd_dlq_redrive(args: argparse.Namespace) -> int:
    settings, source = _dlq_settings(args)
    rate = args.rate or settings.connect.start_webrtc_contact_rate
    selection = dlq.Selection(
        request_ids=frozenset(args.request_id or ()),
        older_than_s=args.older_than,
        newer_than_s=args.newer_than,
        valid_only=args.valid_only,
    )

    async def redrive() -> tuple[str, str, dlq.RedriveReport]:
        async with _sqs(settings, args, args.queue_url or source or "") as sqs:
            url = await _find_dlq(sqs, args, source)
            to = args.to
            if to is None:
                arn = await dlq.queue_arn(sqs, url)
                if source is None or await dlq.dead_letter_target(sqs, source) != arn:
                    raise ConfigError(
                        "--to is required: the configuration's [queue] url does not name "
                        f"{url} as its dead-letter queue"
                    )
                to = source
            size = await dlq.approximate_size(sqs, url)
            queue = dlq.DeadLetterQueue(
                sqs,
                url,
                defaults=request_defaults(settings.connect),
                hold_s=int(min(43_200, 60 + 2 * size / rate)),
            )
            report = await queue.redrive(
                to, selection, rate_per_s=rate, dry_run=args.dry_run, limit=args.limit
            )
            return url, to, report

    try:
        url, to, report = anyio.run(redrive)
    except (ClientError, BotoCoreError) as exc:
        print(f"orchestrator dlq: {_aws_problem(exc, args.queue_url or '')}", file=sys.stderr)
        return 1
    now = time.time()
    for letter in report.moved:
        age = dlq.format_age(letter.age_s(now))
        print(f"{'would move' if report.dry_run else 'moved'} {letter.request_id or '-'} ({age})")
    for letter, why in report.failed:
        print(f"failed: {letter.request_id or letter.message_id}: {why}", file=sys.stderr)
    verb = "would move" if report.dry_run else "moved"
    print(
        f"{verb} {len(report.moved)} message(s) from {url} to {to} at up to {rate:g}/s; "
        f"{report.skipped} not selected" + (" (dry run: nothing moved)" if report.dry_run else "")
    )
    if report.stopped:
        print(f"note: {report.stopped}")
    return 1 if report.failed else 0


# -- demo ---------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.testing.demo import run_demo  # noqa: PLC0415 (needs the optional moto dependency)

    if args.requests < 4:
        print("orchestrator demo: --requests must be at least 4", file=sys.stderr)
        return EXIT_CONFIG
    result = anyio.run(lambda: run_demo(args.requests, out=sys.stdout, seed=args.seed))
    return 0 if result.completed else 1


# -- emulator -----------------------------------------------------------------------------------


def _cmd_emulator(args: argparse.Namespace) -> int:
    try:
        config = emulator_cli.config_from_args(args)
    except ValueError as exc:
        print(f"orchestrator emulator: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    def ready(url: str) -> None:
        print(f"Connect emulator listening on {url}", flush=True)

    try:
        asyncio.run(
            serve(
                config, host=args.host, port=args.port, allow_remote=args.allow_remote, ready=ready
            )
        )
    except ValueError as exc:
        print(f"orchestrator emulator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


# -- parser -------------------------------------------------------------------------------------


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = (
        "TOML configuration file (default: $ORCHESTRATOR_CONFIG; environment only if unset)"
    )

    run = sub.add_parser(
        "run",
        help="run the worker daemon",
        description=(
            "Run the worker: receive call requests from the SQS queue, drive each contact, emit "
            "lifecycle events, until SIGTERM/SIGINT (graceful: in-flight work gets "
            "[shutdown] grace_period_s, then is handed back to the queue). JSON logs on stdout."
        ),
    )
    run.add_argument("--config", help=config_help)
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser(
        "demo",
        help="run the whole job on an embedded Connect emulator and SQS server",
        description=(
            "Start the Connect emulator and an SQS server on loopback, enqueue sample requests, "
            "run the real worker until every request has its final event, and print a summary."
        ),
    )
    demo.add_argument("--requests", type=int, default=20, help="how many requests (default 20)")
    demo.add_argument("--seed", type=int, default=7, help="emulator seed (default 7)")
    demo.set_defaults(handler=_cmd_demo)

    enq = sub.add_parser(
        "enqueue",
        help="send call requests (JSON lines) to a queue",
        description=(
            "Send call requests, one JSON object per line, from FILE or stdin to SQS, in batches "
            "within SQS's limits (10 entries, the queue's maximum message size; a longer line is "
            "reported and skipped). The queue, endpoint and region default to the configuration."
        ),
    )
    _add_sqs_arguments(enq, config_help, queue_help="the request queue (default: [queue] url)")
    enq.add_argument("file", nargs="?", help="JSON lines file, or - for stdin (default)")
    enq.set_defaults(handler=_cmd_enqueue)

    dead = sub.add_parser(
        "dlq",
        help="inspect a dead-letter queue, or move its messages back",
        description="Dead-letter queue tools: see what is there and why; redrive it.",
    )
    dead_sub = dead.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_queue_help = "the dead-letter queue (default: the DLQ of [queue] url's redrive policy)"
    inspect = dead_sub.add_parser(
        "inspect",
        help="list what sits in a dead-letter queue and why, leaving it in place",
        description=(
            "List the messages of a dead-letter queue without consuming them (each is received, "
            "hidden while the listing runs, then made visible again): RequestId, deliveries, age "
            "and why it is there, by the worker's own validation ('valid request': it failed "
            "transiently or a worker crashed)."
        ),
    )
    _add_sqs_arguments(inspect, config_help, queue_help=dlq_queue_help)
    inspect.add_argument(
        "--limit", type=_positive_int, default=100, help="list at most this many (default 100)"
    )
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_cmd_dlq_inspect)

    redrive = dead_sub.add_parser(
        "redrive",
        help="move dead-lettered messages back to the source queue",
        description=(
            "Send messages from a dead-letter queue back to the source queue, then delete them "
            "from the DLQ, at a pace the workers' admission absorbs. Their receive counts start "
            "again at zero; FIFO messages keep their group."
        ),
    )
    _add_sqs_arguments(redrive, config_help, queue_help=dlq_queue_help)
    redrive.add_argument(
        "--to",
        type=_http_url,
        help="the source queue (default: [queue] url, when its redrive policy names this DLQ)",
    )
    redrive.add_argument(
        "--request-id",
        action="append",
        metavar="ID",
        help="move only this request (repeatable)",
    )
    age = redrive.add_mutually_exclusive_group()
    age.add_argument(
        "--older-than",
        type=_non_negative,
        metavar="SECONDS",
        help="move only messages sent at least SECONDS ago (SQS SentTimestamp)",
    )
    age.add_argument(
        "--newer-than",
        type=_non_negative,
        metavar="SECONDS",
        help="move only messages sent less than SECONDS ago",
    )
    redrive.add_argument(
        "--rate",
        type=_positive,
        metavar="PER_SECOND",
        help="messages per second (default: [connect] start_webrtc_contact_rate, 2)",
    )
    redrive.add_argument(
        "--valid-only",
        action="store_true",
        help="leave messages the worker's validation refuses (they would only come back)",
    )
    redrive.add_argument("--limit", type=_positive_int, help="move at most this many")
    redrive.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    redrive.set_defaults(handler=_cmd_dlq_redrive)

    check = sub.add_parser(
        "check-config",
        help="validate the configuration and print the effective settings",
        description=(
            "Load the configuration (file and environment) and print the effective settings as "
            "JSON with secrets masked; on error print what is wrong and exit with status 2."
        ),
    )
    check.add_argument("--config", help=config_help)
    check.set_defaults(handler=_cmd_check_config)

    health = sub.add_parser(
        "healthcheck",
        help="exit 0 when the running worker's /healthz answers 200 (for container healthchecks)",
        description=(
            "Ask the worker running with this configuration for its health on the observability "
            "server ([observability] host and port; a wildcard host is reached on loopback). "
            "Exit 0 on 200, 1 otherwise (the reason on stderr), 2 on a configuration error."
        ),
    )
    health.add_argument("--config", help=config_help)
    health.add_argument(
        "--path",
        default="/healthz",
        choices=["/healthz", "/readyz"],
        help="which endpoint (default /healthz, liveness)",
    )
    health.add_argument(
        "--timeout", type=float, default=4.0, help="seconds to wait for an answer (default 4)"
    )
    health.set_defaults(handler=_cmd_healthcheck)

    emulator = sub.add_parser(
        "emulator",
        help="serve a local, wire-level Amazon Connect emulator",
        description=(
            "Serve a wire-level Amazon Connect emulator (StartWebRTCContact, DescribeContact, "
            "StartScreenSharing) with a simulated contact center, quotas and fault injection, "
            "until SIGTERM or SIGINT. Ground truth and control live under /_emulator/."
        ),
    )
    emulator_cli.add_arguments(emulator)
    emulator.set_defaults(handler=_cmd_emulator)
    return parser


def _add_sqs_arguments(
    parser: argparse.ArgumentParser, config_help: str, *, queue_help: str
) -> None:
    parser.add_argument("--queue-url", type=_http_url, help=queue_help)
    parser.add_argument(
        "--endpoint-url", type=_http_url, help="SQS endpoint (default: the configuration's)"
    )
    parser.add_argument(
        "--region",
        help="AWS region (default: the queue URL's, else [aws] region, else us-east-1)",
    )
    parser.add_argument("--config", help=config_help)


def _config_error(exc: BaseException) -> ConfigError | None:
    """`exc` if it is a ConfigError, or the one a task group wrapped (and nothing else)."""
    if isinstance(exc, ConfigError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(ConfigError)
        if match is not None and rest is None:
            leaf: BaseException = match
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            return leaf if isinstance(leaf, ConfigError) else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except (ConfigError, BaseExceptionGroup) as exc:
        # A bad file, variable or port: say what is wrong, no traceback.
        error = _config_error(exc)
        if error is None:
            raise
        print(f"orchestrator: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return result
