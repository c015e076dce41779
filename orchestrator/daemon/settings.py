"""Configuration: a TOML file and/or `ORCHESTRATOR_<SECTION>__<KEY>` environment variables.

Loaded once, at the edge (the CLI), validated by pydantic-settings and handed down as plain typed
values. Environment variables override the file; the file is optional, so environment variables
alone are a complete configuration. Credentials are never read from here: they come only from the
standard AWS chain (environment, shared files, IAM roles for service accounts, ECS task roles).

`config.example.toml` and `docs/settings-reference.md` are generated from this module
(`python -m orchestrator.daemon.settings_docs --write`); a test keeps them in step.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from orchestrator.connect.gateway import GatewayPolicies
from orchestrator.connect.operations import BudgetShare, Operation
from orchestrator.daemon import settings_sources
from orchestrator.daemon.engine_fields import engine_field, engine_values, quota_field
from orchestrator.daemon.faults import OutagePolicy
from orchestrator.daemon.fleet.policy import FleetPolicy
from orchestrator.daemon.options import WorkerOptions
from orchestrator.daemon.settings_sources import describe, origins, unknown_environment
from orchestrator.engine.queue_position import PositionPolicy
from orchestrator.engine.reply_to import ReplyToPolicy
from orchestrator.engine.request import RequestDefaults
from orchestrator.engine.watch import WatchPolicy
from orchestrator.errors import ConfigError
from orchestrator.retry import RetryPolicy
from orchestrator.sqs import MAX_WAIT_TIME_S

#: `ORCHESTRATOR_<SECTION>__<KEY>`, and the variable naming the file.
ENV_PREFIX = settings_sources.ENV_PREFIX
CONFIG_ENV = settings_sources.CONFIG_ENV


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_LOCAL_ENDPOINT = "http://localhost:4566"


def _endpoint(of: str, example: str = _LOCAL_ENDPOINT) -> Any:
    return Field(
        None,
        description=f"Endpoint of {of}. Unset: [aws] endpoint_url, else AWS.",
        examples=[example],
    )


class AwsSettings(_Section):
    """Every AWS client: region and endpoint."""

    region: str = Field("us-east-1", description="Region of every AWS client.")
    endpoint_url: str | None = Field(
        None,
        description="One endpoint for every AWS client (a local stack such as LocalStack). "
        "Unset: AWS itself. A section's own endpoint_url wins over this one.",
        examples=[_LOCAL_ENDPOINT],
    )


class QueueSettings(_Section):
    """The request queue, admission (what a worker receives before it can start it), and how
    messages are kept hidden, handed back and expired."""

    url: str = Field(
        description="The request queue (required).",
        examples=["https://sqs.us-east-1.amazonaws.com/123456789012/call-requests"],
    )
    endpoint_url: str | None = _endpoint("the request queue's SQS service")
    max_in_flight: int = engine_field(WorkerOptions, "max_in_flight")
    admission_window_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Admission: a worker holds at most what its StartWebRTCContact budget "
        "starts within this many seconds (rate * window + burst, at its share of the quota), "
        "and never more than max_waiting_to_start.",
    )
    max_waiting_to_start: int = engine_field(
        WorkerOptions,
        "max_waiting_to_start",
        description="Messages received but not started yet, at most (the admission window may "
        "allow fewer). The backlog stays in the queue: durable, shared by every replica, "
        "visible to autoscalers.",
    )
    request_ttl_s: float = engine_field(WorkerOptions, "request_ttl_s")
    wait_time_s: int = engine_field(WorkerOptions, "wait_time_s")
    visibility_timeout_s: int = engine_field(WorkerOptions, "visibility_timeout_s")
    unstarted_visibility_timeout_s: int = engine_field(
        WorkerOptions, "unstarted_visibility_timeout_s"
    )
    max_receive_count: int = engine_field(WorkerOptions, "max_receive_count")
    delete_rejected: bool = engine_field(WorkerOptions, "delete_rejected")
    retry_base_delay_s: int = engine_field(WorkerOptions, "retry_base_delay_s")
    retry_max_delay_s: int = engine_field(WorkerOptions, "retry_max_delay_s")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"not an http(s) URL: {_mask_urls(value)!r}; a queue URL looks like "
                "https://sqs.us-east-1.amazonaws.com/123456789012/call-requests"
            )
        return value


class ConnectSettings(_Section):
    """Amazon Connect: request defaults, the account's quotas and this worker's share of them,
    and how calls are retried. Connect's quotas are per account and Region, shared by every
    worker."""

    instance_id: str | None = engine_field(
        RequestDefaults, "instance_id", examples=["11111111-2222-3333-4444-555555555555"]
    )
    contact_flow_id: str | None = engine_field(
        RequestDefaults, "contact_flow_id", examples=["66666666-7777-8888-9999-000000000000"]
    )
    allowed_instance_ids: list[str] = engine_field(
        RequestDefaults, "allowed_instance_ids", convert=frozenset
    )
    allowed_contact_flow_ids: list[str] = engine_field(
        RequestDefaults, "allowed_contact_flow_ids", convert=frozenset
    )
    endpoint_url: str | None = _endpoint(
        "Amazon Connect (the emulator, in tests and the demo)", "http://127.0.0.1:8900"
    )
    quota_share: float = engine_field(BudgetShare, "share")
    rate_headroom: float = engine_field(BudgetShare, "headroom")
    start_webrtc_contact_rate: float = quota_field(Operation.START_WEBRTC_CONTACT, "rate")
    start_webrtc_contact_burst: float = quota_field(Operation.START_WEBRTC_CONTACT, "burst")
    describe_contact_rate: float = quota_field(Operation.DESCRIBE_CONTACT, "rate")
    describe_contact_burst: float = quota_field(Operation.DESCRIBE_CONTACT, "burst")
    start_screen_sharing_rate: float = quota_field(Operation.START_SCREEN_SHARING, "rate")
    start_screen_sharing_burst: float = quota_field(Operation.START_SCREEN_SHARING, "burst")
    get_contact_metrics_rate: float = quota_field(Operation.GET_CONTACT_METRICS, "rate")
    get_contact_metrics_burst: float = quota_field(Operation.GET_CONTACT_METRICS, "burst")
    stop_contact_rate: float = quota_field(Operation.STOP_CONTACT, "rate")
    stop_contact_burst: float = quota_field(Operation.STOP_CONTACT, "burst")
    retry_max_attempts: int = engine_field(RetryPolicy, "max_attempts", le=100)
    retry_max_time_s: float = engine_field(RetryPolicy, "max_time_s")
    capacity_max_wait_s: float = engine_field(GatewayPolicies, "capacity_max_wait_s")
    consistency_window_s: float = engine_field(GatewayPolicies, "consistency_window_s")
    outage_hold: bool = engine_field(OutagePolicy, "hold")
    outage_max_backoff_s: float = engine_field(OutagePolicy, "max_backoff_s")
    outage_summary_interval_s: float = engine_field(OutagePolicy, "summary_interval_s")

    @model_validator(mode="after")
    def _defaults_allowed(self) -> ConnectSettings:
        for default, allowed, name in (
            (self.instance_id, self.allowed_instance_ids, "instance_id"),
            (self.contact_flow_id, self.allowed_contact_flow_ids, "contact_flow_id"),
        ):
            if default and allowed and default not in allowed:
                raise ValueError(f"{name} {default!r} is not in allowed_{name}s")
        return self


class WatchSettings(_Section):
    """DescribeContact polling: the first poll after first_delay_s, then each pause multiplied
    by multiplier up to max_interval_s, jittered; the watch gives up max_wait_s after the
    contact's InitiationTimestamp (and, with on_timeout "stop", stops a contact still waiting then).
    Queue-aware polling polls the contacts next in line often."""

    first_delay_s: float = engine_field(WatchPolicy, "first_delay_s")
    multiplier: float = engine_field(WatchPolicy, "multiplier")
    max_interval_s: float = engine_field(WatchPolicy, "max_interval_s")
    max_wait_s: float = engine_field(WatchPolicy, "max_wait_s")
    jitter: float = engine_field(WatchPolicy, "jitter")
    queue_aware: bool = engine_field(WatchPolicy, "queue_aware")
    head_contacts: int = engine_field(WatchPolicy, "head_contacts")
    head_interval_s: float = engine_field(WatchPolicy, "head_interval_s")
    head_budget_share: float = engine_field(WatchPolicy, "head_budget_share")
    on_timeout: Literal["stop", "leave"] = engine_field(WatchPolicy, "on_timeout")
    fill_budget_share: float = engine_field(WatchPolicy, "fill_budget_share")
    min_interval_s: float = engine_field(WatchPolicy, "min_interval_s")

    @model_validator(mode="after")
    def _a_policy(self) -> WatchSettings:
        WatchPolicy(**engine_values(WatchPolicy, self))  # its own rules (max_interval_s ...)
        return self


class EventsSettings(_Section):
    """Where lifecycle events go besides the log (always): any combination of the sinks."""

    sqs_queue_url: str | None = Field(
        None,
        description="An SQS queue for the events (a `type` message attribute on each).",
        examples=["https://sqs.us-east-1.amazonaws.com/123456789012/call-events"],
    )
    sns_topic_arn: str | None = Field(
        None,
        description="An SNS topic for the events (a `type` message attribute for subscription "
        "filters).",
        examples=["arn:aws:sns:us-east-1:123456789012:call-events"],
    )
    eventbridge_bus: str | None = Field(
        None,
        description="An EventBridge bus for the events (source contact-orchestrator, "
        "detail-type the event type).",
        examples=["call-events"],
    )
    jsonl_path: str | None = Field(
        None,
        description="A file the events are appended to, one JSON object a line.",
        examples=["/var/log/contact-orchestrator/events.jsonl"],
    )
    include_connection_data: bool = Field(
        True,
        description="Whether the sinks carry contact.started's ParticipantToken and "
        "ConnectionData, which the requester's app needs to join the call. The log never "
        "carries them.",
    )
    endpoint_url: str | None = _endpoint("the sinks' AWS services")
    reply_to_allowed: list[str] = engine_field(
        ReplyToPolicy,
        "allowed",
        convert=tuple,
        examples=[["arn:aws:sqs:us-east-1:123456789012:orchestrator-replies-*"]],
    )

    @field_validator("reply_to_allowed")
    @classmethod
    def _arn_patterns(cls, value: list[str]) -> list[str]:
        ReplyToPolicy(allowed=tuple(value))  # its own rules: queue-ARN patterns
        return value


class ContactEventsSettings(_Section):
    """Connect contact events (EventBridge -> SQS) that wake watches at once; polling becomes
    the slower safety net. Off unless queue_url is set."""

    queue_url: str | None = Field(
        None,
        description="An SQS queue an EventBridge rule fills with Connect's contact events "
        "(deploy/ has the rule and the queue policy). Set: an event wakes the watch of its "
        "contact at once (one DescribeContact confirms it). Unset: polling only.",
        examples=["https://sqs.us-east-1.amazonaws.com/123456789012/connect-contact-events"],
    )
    endpoint_url: str | None = _endpoint("the events queue's SQS service")
    wait_time_s: int = Field(
        MAX_WAIT_TIME_S,
        ge=0,
        le=MAX_WAIT_TIME_S,
        description="Long-poll wait of each receive, seconds.",
    )
    first_delay_s: float = engine_field(
        WatchPolicy,
        "first_delay_s",
        default=10.0,
        description="While events are on, this polling schedule replaces [watch]'s (max_wait_s "
        "and jitter stay): the safety net for a lost event, which costs at most max_interval_s "
        "of detection delay, or more when the budget is scarce (poll_budget_share). Seconds "
        "from the start to the first poll.",
    )
    multiplier: float = engine_field(WatchPolicy, "multiplier", default=2.0)
    max_interval_s: float = engine_field(WatchPolicy, "max_interval_s", default=60.0)
    queue_aware: bool = engine_field(
        WatchPolicy,
        "queue_aware",
        default=False,
        description="Queue-aware head polling while events are on (off: events notice "
        "connections within about a second).",
    )
    wake_passed: bool = engine_field(WatchPolicy, "wake_passed", default=True)
    poll_budget_share: float = engine_field(
        WatchPolicy,
        "poll_budget_share",
        default=0.25,
        description="The safety net's polls of all watched contacts together use at most this "
        "share of the DescribeContact budget: each contact waits at least watched / (share * "
        "rate) seconds between polls (70 contacts at 2/s: 140 s), and confirmations of events "
        "keep the rest.",
    )
    fifo_poll_budget_share: float = engine_field(
        WatchPolicy,
        "fifo_poll_budget_share",
        default=0.1,
        description="The same for contacts in a queue seen to serve oldest first (wake_passed "
        "covers them; the safety net is left with the youngest): 70 such contacts at 2/s poll "
        "every 350 s at most.",
    )

    @model_validator(mode="after")
    def _a_policy(self) -> ContactEventsSettings:
        WatchPolicy(**engine_values(WatchPolicy, self))  # its own rules (max_interval_s ...)
        return self


class QueuePositionSettings(_Section):
    """The waiting customer's place in line: contact.queue_position events from GetContactMetrics,
    asked where the answer most likely changed and inferred in between. Its budget is [connect]
    get_contact_metrics_rate and get_contact_metrics_burst (shared in fleet mode)."""

    enabled: bool = engine_field(PositionPolicy, "enabled")
    infer: bool = engine_field(PositionPolicy, "infer")
    min_expected_change: float = engine_field(PositionPolicy, "min_expected_change")
    max_age_s: float = engine_field(PositionPolicy, "max_age_s")
    unplaced_after_s: float = engine_field(PositionPolicy, "unplaced_after_s")
    retry_s: float = engine_field(PositionPolicy, "retry_s")
    estimate_change_s: float = engine_field(PositionPolicy, "estimate_change_s")
    estimate_change_share: float = engine_field(PositionPolicy, "estimate_change_share")
    fixed_refresh_s: float = engine_field(PositionPolicy, "fixed_refresh_s")


class FleetSettings(_Section):
    """Fleet mode: replicas share one budget per Connect operation and fan contact events out
    through Redis. Off unless redis_url is set: one process, local buckets at [connect]
    quota_share."""

    redis_url: str | None = Field(
        None,
        description="redis:// or rediss://, AUTH in the URL's user info (a password in the URL "
        "is masked everywhere).",
        examples=["rediss://:password@my-redis.example.internal:6379/0"],
    )
    key_prefix: str = Field(
        "orchestrator",
        min_length=1,
        description="Keys and channels live under <key_prefix>:<region>: every worker spending "
        "one account's quotas shares it, another account needs another prefix (or another "
        "Redis).",
    )
    timeout_s: float = Field(
        0.5,
        gt=0,
        le=10,
        description="Connect and read timeout of each Redis call (one quick retry after a "
        "connection error only).",
    )
    heartbeat_interval_s: float = engine_field(FleetPolicy, "heartbeat_interval_s")
    heartbeat_ttl_s: float = engine_field(FleetPolicy, "heartbeat_ttl_s")
    breaker_failures: int = engine_field(FleetPolicy, "breaker_failures")
    breaker_reset_s: float = engine_field(FleetPolicy, "breaker_reset_s")
    min_workers: int = engine_field(FleetPolicy, "min_workers")

    @model_validator(mode="after")
    def _a_policy(self) -> FleetSettings:
        FleetPolicy(**engine_values(FleetPolicy, self))  # its own rules (the TTL > interval)
        return self


class ShutdownSettings(_Section):
    """Stopping: SIGTERM or SIGINT stops receiving, lets in-flight lifecycles finish, then
    hands the rest back."""

    grace_period_s: float = engine_field(WorkerOptions, "grace_period_s")


class ObservabilitySettings(_Section):
    """The HTTP server for /metrics (Prometheus), /healthz (liveness) and /readyz (readiness),
    and the progress log line."""

    enabled: bool = Field(True, description="Serve /metrics, /healthz and /readyz.")
    host: str = Field(
        "127.0.0.1",
        description="Address to listen on: loopback by default; 0.0.0.0 in a container so the "
        "kubelet and Prometheus reach it.",
    )
    port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Port to listen on (0: a free one). Give each worker on a host its own.",
    )
    stall_threshold_s: float = Field(
        60.0,
        gt=0,
        description="/healthz fails when the receive loop or the event loop has not made "
        "progress for this long.",
    )
    progress_interval_s: float = engine_field(WorkerOptions, "progress_interval_s")


class LoggingSettings(_Section):
    """The structured log on stdout."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The least severe level written."
    )
    json_output: bool = Field(
        True, description="JSON lines on stdout (false: human-readable console output)."
    )


class Settings(BaseSettings):
    """Every setting of the daemon. Build it with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
    )

    aws: AwsSettings = AwsSettings()
    queue: QueueSettings
    connect: ConnectSettings = ConnectSettings()
    watch: WatchSettings = WatchSettings()
    events: EventsSettings = EventsSettings()
    contact_events: ContactEventsSettings = ContactEventsSettings()
    queue_position: QueuePositionSettings = QueuePositionSettings()
    fleet: FleetSettings = FleetSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 (no .env files)
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 (no secrets dir)
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    #: Where `load_settings` found each value that is not a default (None: not built by it).
    _origins: dict[tuple[str, str], str] | None = PrivateAttr(default=None)

    # -- derived values --------------------------------------------------------------------------

    def origin(self, section: str, key: str) -> str:
        """Where the value of `[section] key` came from, as an operator looks for it: the
        environment variable, the file's key, or the default (and how to change it)."""
        env = f"{ENV_PREFIX}{section}__{key}".upper()
        change = f"[{section}] {key} or environment variable {env}"
        if self._origins is None:
            return change
        return self._origins.get((section, key), f"the default; set {change} to change it")

    def endpoint(
        self, section: Literal["queue", "connect", "events", "contact_events"]
    ) -> str | None:
        """The endpoint for one client: the section's own, else `[aws] endpoint_url`."""
        own: str | None = getattr(self, section).endpoint_url
        return own or self.aws.endpoint_url

    def masked(self) -> dict[str, Any]:
        """The effective settings as JSON-ready data, secrets (URL user info) masked."""
        masked: dict[str, Any] = _mask_urls(self.model_dump(mode="json"))
        return masked


def _mask_urls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.username or parts.password:
            host = parts.hostname or ""
            netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the file (`path`, else $ORCHESTRATOR_CONFIG, else none) and the environment.

    Raises `ConfigError` with a message naming every bad key where it was written: the file and
    its `[section] key`, or the environment variable. `ORCHESTRATOR_*` variables that name no
    setting are errors too.
    """
    chosen = path or os.environ.get(CONFIG_ENV) or None
    cls: type[Settings] = Settings
    file: Path | None = None
    document: dict[str, Any] = {}
    if chosen:
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"configuration file not found: {file}")
        try:
            document = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{chosen}: not valid TOML: {exc}") from None
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": file})
        cls = type("FileSettings", (Settings,), {"model_config": config})
    unknown = unknown_environment(Settings)
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(exc, Settings, file, document, unknown)) from None
    if unknown:
        raise ConfigError(describe(None, Settings, unknown=unknown))
    settings._origins = origins(Settings, file, document, overrides)
    return settings


def settings_json(settings: Settings) -> str:
    return json.dumps(settings.masked(), indent=2, sort_keys=False)
