"""Which reply queues a request may name in `ReplyTo`: its queue URL as an ARN, checked against
`[events] reply_to_allowed`.

A request that names a reply queue gets its events there too (`sinks.reply`), join tokens
included when the sinks carry them, so the worker writes only to queues its operator allowed: an
empty list (the default) refuses every `ReplyTo`. Patterns are queue ARNs
(`arn:aws:sqs:REGION:ACCOUNT:NAME`) where `*` matches any run of characters but `:`, so a pattern
never widens past its own field.

A URL is read as AWS writes it (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, the legacy
`https://REGION.queue.amazonaws.com/...`, China's `.amazonaws.com.cn`), or in the local form of
an SQS-compatible server (`http://host:port/ACCOUNT/NAME`) when that server is the one the
worker's own SQS client talks to (`endpoint`): its ARN then takes the configured region. A URL on
any other host is refused, so a request cannot point the worker at a server of its choosing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from orchestrator.bounds import declared

#: `https://sqs.REGION.amazonaws.com[.cn]` and the legacy `https://REGION.queue.amazonaws.com`.
_AWS_HOST = re.compile(
    r"(?:sqs\.(?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?P<cn>\.cn)?"
)
_PATH = re.compile(
    r"/(?P<account>[0-9]{12})/(?P<name>[A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo)"
)
_ARN_PATTERN = re.compile(r"arn:[a-z*-]+:sqs:[a-z0-9*-]*:[0-9*]*:[A-Za-z0-9_.*-]+")


def queue_url_problem(url: str) -> str | None:
    """Why `url` is not an SQS queue URL (None: it is one). Pure syntax: no policy."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "must be an SQS queue URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/replies"
    if parts.query or parts.fragment or not _PATH.fullmatch(parts.path):
        return "must be an SQS queue URL ending in /ACCOUNT/NAME (a 12-digit account id)"
    return None


def _partition(region: str, china: bool) -> str:
    if china:
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a queue-ARN pattern (None: it is one)."""
    if not _ARN_PATTERN.fullmatch(pattern):
        return (
            f"{pattern!r} is not a queue ARN pattern such as "
            "arn:aws:sqs:us-east-1:123456789012:orchestrator-replies-*"
        )
    return None


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile("[^:]*".join(re.escape(part) for part in pattern.split("*")))


@dataclass(frozen=True)
class ReplyToPolicy:
    """The reply queues requests may name, and how their URLs are read (see the module)."""

    allowed: tuple[str, ...] = declared(
        (),
        "Queue-ARN patterns (`*` matches within one ARN field) of the reply queues a request may "
        "name in ReplyTo; its events then also go there (with connection data as "
        "include_connection_data says). Empty: a request with ReplyTo is rejected.",
    )
    #: The region of the worker's SQS client: a local-form URL's, and the only one replies go to.
    region: str = "us-east-1"
    #: The endpoint the worker's SQS client talks to (None: AWS itself).
    endpoint: str | None = None

    def __post_init__(self) -> None:
        problems = [p for p in map(pattern_problem, self.allowed) if p]
        if problems:
            raise ValueError("; ".join(problems))

    @cached_property
    def _patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(_compile(p) for p in self.allowed)

    def queue_arn(self, url: str) -> str | None:
        """The ARN of the queue at `url`, or None when `url` is not a queue this worker's SQS
        client reaches (another host, another region, not a queue URL)."""
        if queue_url_problem(url):
            return None
        parts = urlsplit(url)
        path = _PATH.fullmatch(parts.path)
        assert path is not None  # noqa: S101 (queue_url_problem checked it)
        host = parts.hostname or ""
        aws = _AWS_HOST.fullmatch(host)
        if aws:
            region, china = aws.group("a") or aws.group("b"), bool(aws.group("cn"))
            if region != self.region or parts.scheme != "https":
                return None
        else:
            local = urlsplit(self.endpoint) if self.endpoint else None
            if local is None or (local.hostname, local.port) != (host, parts.port):
                return None
            region, china = self.region, False
        return f"arn:{_partition(region, china)}:sqs:{region}:{path['account']}:{path['name']}"

    def refusal(self, url: str) -> str | None:
        """Why a request may not name `url` as its reply queue (None: it may)."""
        if not self.allowed:
            return "no reply queue is allowed: [events] reply_to_allowed is empty"
        arn = self.queue_arn(url)
        if arn is None:
            where = f"the SQS endpoint {self.endpoint}" if self.endpoint else "AWS SQS"
            return f"not a queue this worker sends to ({where}, region {self.region})"
        if not any(p.fullmatch(arn) for p in self._patterns):
            return f"{arn} matches no pattern of [events] reply_to_allowed"
        return None
