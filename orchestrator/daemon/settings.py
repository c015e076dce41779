"""Configuration: a TOML file and/or `ORCHESTRATOR_<SECTION>__<KEY>` environment variables.

Loaded once, at the edge (the CLI), validated by pydantic-settings and handed down as plain typed
values. Environment variables override the file; the file is optional, so environment variables
alone are a complete configuration. Credentials are never read from here: they come only from the
standard AWS chain (environment, shared files, IAM roles for service accounts, ECS task roles).

`config.example.toml` and `docs/settings-reference.md` are generated from this module
(`python -m orchestrator.daemon.settings_docs --write`); a test keeps them in step.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
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

from orchestrator import bounds
from orchestrator.connect.gateway import GatewayPolicies
from orchestrator.connect.operations import DEFAULT_QUOTAS, BudgetShare, Operation, Quota
from orchestrator.daemon.source import MAX_WAIT_TIME_S
from orchestrator.daemon.worker import WorkerOptions
from orchestrator.engine.request import RequestDefaults
from orchestrator.engine.watch import WatchPolicy
from orchestrator.errors import ConfigError
from orchestrator.retry import RetryPolicy

ENV_PREFIX = "ORCHESTRATOR_"
CONFIG_ENV = "ORCHESTRATOR_CONFIG"
_CREDENTIAL_WORDS = ("secret", "access_key", "session_token", "password", "credential")


# -- one home per setting --------------------------------------------------------------------------
#
# A setting that configures an engine value takes its default, bounds and description from that
# value's field (`engine_field`); `engine_values` then builds the engine value from the sections.
# Settings that configure nothing below the daemon (endpoints, sinks, fleet, observability,
# logging) declare theirs here with `Field`. Either way each is written once.


@dataclass(frozen=True)
class EngineRef:
    """Which engine field a setting feeds (kept in the settings field's metadata)."""

    owner: type[Any]
    name: str
    #: Turns the setting's value into the engine's (a TOML list into a frozenset, say).
    convert: Callable[[Any], Any] | None = None


_UNSET: Any = object()


def engine_field(
    owner: type[Any],
    name: str,
    *,
    default: Any = _UNSET,
    description: str | None = None,
    convert: Callable[[Any], Any] | None = None,
    **extra: Any,
) -> Any:
    """The settings field that feeds `owner.name`: its default, bounds and description as the
    engine declares them. `default`/`description` replace the engine's (a section that feeds the
    same field differently); `extra` adds `Field` options (examples, a tighter operator bound)."""
    field, spec = bounds.spec(owner, name)
    value = bounds.default_of(field) if default is _UNSET else default
    if isinstance(value, frozenset | tuple):
        value = sorted(value)
    info: Any = Field(
        value,
        description=description or spec.description,
        **{**spec.bounds.as_kwargs(), **extra},
    )
    info.metadata.append(EngineRef(owner, name, convert))
    return info


def engine_refs(section: type[BaseModel]) -> dict[str, EngineRef]:
    """The settings of `section` that feed an engine field, by setting name."""
    refs: dict[str, EngineRef] = {}
    for key, info in section.model_fields.items():
        refs.update((key, m) for m in info.metadata if isinstance(m, EngineRef))
    return refs


def engine_values(owner: type[Any], *sections: BaseModel) -> dict[str, Any]:
    """Keyword arguments for `owner` from the settings that feed its fields (a later section
    wins over an earlier one)."""
    values: dict[str, Any] = {}
    for section in sections:
        for key, ref in engine_refs(type(section)).items():
            if ref.owner is owner:
                value = getattr(section, key)
                values[ref.name] = ref.convert(value) if ref.convert else value
    return values


def quota_key(operation: Operation, part: Literal["rate", "burst"]) -> str:
    """`[connect]`'s key for one quota: `describe_contact_rate`, `start_webrtc_contact_burst`."""
    return f"{operation.name.lower()}_{part}"


def _quota_field(operation: Operation, part: Literal["rate", "burst"]) -> Any:
    _, spec = bounds.spec(Quota, part)
    return Field(
        getattr(DEFAULT_QUOTAS[operation], part),
        description=f"{operation}: {spec.description[0].lower()}{spec.description[1:]} "
        "The default is Connect's; raise it here after raising it in Service Quotas.",
        **spec.bounds.as_kwargs(),
    )


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
    start_webrtc_contact_rate: float = _quota_field(Operation.START_WEBRTC_CONTACT, "rate")
    start_webrtc_contact_burst: float = _quota_field(Operation.START_WEBRTC_CONTACT, "burst")
    describe_contact_rate: float = _quota_field(Operation.DESCRIBE_CONTACT, "rate")
    describe_contact_burst: float = _quota_field(Operation.DESCRIBE_CONTACT, "burst")
    start_screen_sharing_rate: float = _quota_field(Operation.START_SCREEN_SHARING, "rate")
    start_screen_sharing_burst: float = _quota_field(Operation.START_SCREEN_SHARING, "burst")
    retry_max_attempts: int = engine_field(RetryPolicy, "max_attempts", le=100)
    retry_max_time_s: float = engine_field(RetryPolicy, "max_time_s")
    capacity_max_wait_s: float = engine_field(GatewayPolicies, "capacity_max_wait_s")
    consistency_window_s: float = engine_field(GatewayPolicies, "consistency_window_s")

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
    contact's InitiationTimestamp. Queue-aware polling polls the contacts next in line often."""

    first_delay_s: float = engine_field(WatchPolicy, "first_delay_s")
    multiplier: float = engine_field(WatchPolicy, "multiplier")
    max_interval_s: float = engine_field(WatchPolicy, "max_interval_s")
    max_wait_s: float = engine_field(WatchPolicy, "max_wait_s")
    jitter: float = engine_field(WatchPolicy, "jitter")
    queue_aware: bool = engine_field(WatchPolicy, "queue_aware")
    head_contacts: int = engine_field(WatchPolicy, "head_contacts")
    head_interval_s: float = engine_field(WatchPolicy, "head_interval_s")
    head_budget_share: float = engine_field(WatchPolicy, "head_budget_share")

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
    heartbeat_interval_s: float = Field(
        2.0, gt=0, description="How often each worker renews its heartbeat."
    )
    heartbeat_ttl_s: float = Field(
        10.0,
        gt=0,
        description="A worker whose heartbeat was not renewed for this long is gone (longer "
        "than heartbeat_interval_s).",
    )
    breaker_failures: int = Field(
        3,
        ge=1,
        le=100,
        description="After this many consecutive Redis failures the worker spends a local "
        "share of the quotas (quota / workers last seen, at least min_workers); it goes back to "
        "the shared budget by itself when Redis answers.",
    )
    breaker_reset_s: float = Field(
        3.0, gt=0, description="While Redis fails, probe it again this often (seconds)."
    )
    min_workers: int = Field(
        1,
        ge=1,
        le=10_000,
        description="While Redis is unreachable each worker spends quota / max(workers last "
        "seen, this).",
    )

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> FleetSettings:
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be longer than heartbeat_interval_s")
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


def _section_keys() -> dict[str, list[str]]:
    """Every section of `Settings` and the keys it takes."""
    out: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        out[name] = list(getattr(field.annotation, "model_fields", {}))
    return out


def _closest(word: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown_environment() -> list[str]:
    """`ORCHESTRATOR_*` variables naming no section (misspelled, or one `_` instead of `__`).

    pydantic-settings ignores those silently; an unknown key inside a known section is caught by
    the section's `extra="forbid"` instead.
    """
    sections = _section_keys()
    known = [CONFIG_ENV] + [
        f"{ENV_PREFIX}{section}__{key}".upper()
        for section, keys in sections.items()
        for key in keys
    ]
    problems = []
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        section = upper.removeprefix(ENV_PREFIX).split("__", 1)[0].lower()
        if section in sections:
            continue
        guess = _closest(upper, known)
        hint = f", did you mean {guess}?" if guess else ""
        problems.append(f"{name}: not a setting{hint}")
    return problems


def _explain(loc: list[str], err: Any, variable: str | None) -> str:
    """What is wrong with the value at `loc` (`variable`: the environment variable it came
    from, if any)."""
    if err["type"] == "missing":
        return "required"
    if err["type"] == "extra_forbidden":
        if any(word in loc[-1].lower() for word in _CREDENTIAL_WORDS):
            return (
                "not a setting: credentials come only from the standard AWS chain "
                "(environment, shared config, instance or task role), never from this file"
            )
        return _unknown(loc, from_environment=variable is not None)
    return str(err["msg"]).removeprefix("Value error, ")


def _unknown(loc: list[str], *, from_environment: bool) -> str:
    """An unknown section or key, with the setting most likely meant: the same key in another
    section, else the closest name in its own section, else in another one."""
    sections = _section_keys()
    here = loc[0] if len(loc) == 2 else None
    key = loc[-1].lower()

    def spelled(places: list[tuple[str, str]]) -> str:
        if from_environment:
            names = [f"{ENV_PREFIX}{s}__{k}".upper() for s, k in places]
            return names[0] if len(names) == 1 else f"one of {', '.join(names)}"
        if len(places) == 1:
            return f"[{places[0][0]}] {places[0][1]}"
        return f"{places[0][1]} of " + ", ".join(f"[{s}]" for s, _ in places)

    others = [(s, k) for s, keys in sections.items() if s != here for k in keys]
    elsewhere = [(s, k) for s, k in others if k == key]
    if len(loc) > 2:
        return "unknown setting"
    if here is None:  # a section, or a key written outside any section
        guess = _closest(key, list(sections))
        if guess or not elsewhere:
            return "unknown setting" + (f", did you mean {guess}?" if guess else "")
        return f"not a section; did you mean {spelled(elsewhere)}?"
    own = _closest(key, sections.get(here, []))
    if not elsewhere and own:
        return f"unknown setting, did you mean {own}?"
    if not elsewhere:
        near = _closest(key, [k for _, k in others])
        if near is None:
            return "unknown setting"
        elsewhere = [next((s, k) for s, k in others if k == near)]
    return f"not a setting of [{here}]; did you mean {spelled(elsewhere)}?"


def _lookup(data: Any, key: str) -> str | None:
    """`key` as spelled in `data` (TOML keys match case-insensitively), or None."""
    if isinstance(data, dict):
        for written in data:
            if str(written).lower() == key.lower():
                return str(written)
    return None


def _variable(loc: list[str]) -> str | None:
    """The environment variable that set the value at `loc`, as written, or None."""
    set_names = {name.upper(): name for name in os.environ}
    for depth in range(len(loc), 0, -1):  # a whole section may come as one JSON variable
        name = ENV_PREFIX + "__".join(p.upper() for p in loc[:depth])
        if name in set_names:
            return set_names[name]
    return None


def _where(loc: list[str], file: Path | None, document: dict[str, Any]) -> str:
    """Where the value at `loc` was set, as the user wrote it: a variable or the file's key."""
    env = ENV_PREFIX + "__".join(p.upper() for p in loc)
    variable = _variable(loc)
    if variable is not None:
        return f"environment variable {variable}"
    if file is not None:
        section = _lookup(document, loc[0])
        key = _lookup(document[section], loc[1]) if section is not None and len(loc) > 1 else None
        if section is not None and len(loc) == 1 and not isinstance(document[section], dict):
            return f"in {file}: {section}, outside any section"
        if section is not None and (len(loc) == 1 or key is not None):
            return f"in {file}: [{section}]" + (f" {key}" if key else "")
        if len(loc) > 1:
            return f"set {loc[1]} under [{loc[0]}] in {file}, or environment variable {env}"
    return f"environment variable {env}"


def _describe(
    error: ValidationError | None,
    file: Path | None = None,
    document: dict[str, Any] | None = None,
    unknown: list[str] | None = None,
) -> str:
    lines = list(unknown or [])
    for err in error.errors() if error is not None else []:
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "missing" and len(loc) == 1 and loc[0] in Settings.model_fields:
            # A whole section is missing: name the keys it needs.
            section = Settings.model_fields[loc[0]].annotation
            fields = getattr(section, "model_fields", {})
            loc += [next((k for k, f in fields.items() if f.is_required()), "")]
        key = ".".join(loc) or "settings"
        problem = _explain(loc, err, _variable(loc))
        lines.append(f"{key}: {problem} ({_where(loc, file, document or {})})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


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
    unknown = _unknown_environment()
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file, document, unknown)) from None
    if unknown:
        raise ConfigError(_describe(None, unknown=unknown))
    settings._origins = _origins(file, document, overrides)
    return settings


def _origins(
    file: Path | None, document: dict[str, Any], overrides: dict[str, Any]
) -> dict[tuple[str, str], str]:
    """Where each value set outside the defaults came from, by the same precedence as the
    sources: `load_settings`'s arguments, then the environment, then the file."""
    found: dict[tuple[str, str], str] = {}
    for section, keys in _section_keys().items():
        for key in keys:
            given = overrides.get(section)
            variable = _variable([section, key])
            if given is not None and (not isinstance(given, dict) or key in given):
                found[section, key] = "given to load_settings"
            elif variable is not None:
                found[section, key] = f"environment variable {variable}"
            elif file is not None and _lookup(document.get(_lookup(document, section) or ""), key):
                found[section, key] = _where([section, key], file, document)
    return found


def settings_json(settings: Settings) -> str:
    return json.dumps(settings.masked(), indent=2, sort_keys=False)
