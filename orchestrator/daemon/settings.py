"""Configuration: a TOML file and/or `ORCHESTRATOR_<SECTION>__<KEY>` environment variables.

Loaded once, at the edge (the CLI), validated by pydantic-settings and handed down as plain typed
values. Environment variables override the file; the file is optional, so environment variables
alone are a complete configuration. Credentials are never read from here: they come only from the
standard AWS chain (environment, shared files, IAM roles for service accounts, ECS task roles).

`config.example.toml` documents every key; a test keeps the two in step.
"""

from __future__ import annotations

import difflib
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

from orchestrator.errors import ConfigError
from orchestrator.sqs import MAX_VISIBILITY_TIMEOUT_S

ENV_PREFIX = "ORCHESTRATOR_"
CONFIG_ENV = "ORCHESTRATOR_CONFIG"
_CREDENTIAL_WORDS = ("secret", "access_key", "session_token", "password", "credential")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsSettings(_Section):
    region: str = "us-east-1"
    #: One endpoint for every AWS client (a local stack); a section's own endpoint_url wins.
    endpoint_url: str | None = None


class QueueSettings(_Section):
    url: str
    endpoint_url: str | None = None
    max_in_flight: int = Field(1000, ge=1, le=100_000)
    wait_time_s: int = Field(20, ge=0, le=20)
    visibility_timeout_s: int = Field(60, ge=1, le=MAX_VISIBILITY_TIMEOUT_S)
    #: Visibility of a received message until its contact starts (then visibility_timeout_s):
    #: a crashed worker's unstarted messages are hidden only this long.
    unstarted_visibility_timeout_s: int = Field(15, ge=2, le=MAX_VISIBILITY_TIMEOUT_S)
    #: Deliveries before a request is treated as on its last attempt. Read from the queue's
    #: redrive policy when it has one; this value is used when it has none.
    max_receive_count: int = Field(5, ge=1, le=1000)
    #: Delete invalid messages after their `request.rejected` instead of letting them reach the DLQ.
    delete_rejected: bool = False
    #: Hand-back delay after a transient failure: base * 2^(receives-1), capped.
    retry_base_delay_s: int = Field(10, ge=0, le=MAX_VISIBILITY_TIMEOUT_S)
    retry_max_delay_s: int = Field(900, ge=0, le=MAX_VISIBILITY_TIMEOUT_S)
    #: A request not started within this many seconds of its SentTimestamp ends with
    #: `request.expired` instead of reaching Connect (0: never). A redelivery whose contact
    #: may exist is never expired.
    request_ttl_s: float = Field(300.0, ge=0)
    #: Admission: receive only what StartWebRTCContact can start within this many seconds at
    #: the rate this worker may use (the backlog stays in the queue) ...
    admission_window_s: float = Field(5.0, gt=0, le=3600)
    #: ... and never hold more than this many received-but-unstarted messages.
    max_waiting_to_start: int = Field(10, ge=1, le=1000)

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
    instance_id: str | None = None
    contact_flow_id: str | None = None
    #: Instances and contact flows requests may use (empty: any the IAM role allows).
    allowed_instance_ids: list[str] = Field(default_factory=list)
    allowed_contact_flow_ids: list[str] = Field(default_factory=list)
    endpoint_url: str | None = None
    #: This worker's share of the account's quotas (1 / number of workers sharing the account).
    quota_share: float = Field(1.0, gt=0, le=1)
    #: Stay this fraction under the quota so latency jitter does not become 429s.
    rate_headroom: float = Field(0.03, ge=0, lt=1)
    start_webrtc_contact_rate: float = Field(2.0, gt=0)
    start_webrtc_contact_burst: float = Field(5.0, ge=1)
    describe_contact_rate: float = Field(10.0, gt=0)
    describe_contact_burst: float = Field(15.0, ge=1)
    start_screen_sharing_rate: float = Field(2.0, gt=0)
    start_screen_sharing_burst: float = Field(5.0, ge=1)
    #: Retries of one Connect call after transient errors (5xx, connection errors): attempts and
    #: total time, whichever ends first. Throttles are paced by the rate budget, bounded by time.
    retry_max_attempts: int = Field(6, ge=1, le=100)
    retry_max_time_s: float = Field(60.0, gt=0)
    #: How long StartWebRTCContact keeps retrying while the instance is at its concurrent-call cap.
    capacity_max_wait_s: float = Field(600.0, gt=0)
    #: A 404 right after StartWebRTCContact is retried for this long (eventual consistency).
    consistency_window_s: float = Field(10.0, ge=0)

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
    first_delay_s: float = Field(2.0, gt=0)
    multiplier: float = Field(1.5, ge=1)
    max_interval_s: float = Field(10.0, gt=0)
    max_wait_s: float = Field(900.0, gt=0)
    jitter: float = Field(0.25, ge=0, lt=1)
    queue_aware: bool = True
    head_contacts: int = Field(2, ge=0, le=100)
    head_interval_s: float = Field(1.0, gt=0)
    #: Share of the DescribeContact budget all heads together may use.
    head_budget_share: float = Field(0.25, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> WatchSettings:
        if self.max_interval_s < self.first_delay_s:
            raise ValueError("max_interval_s must be >= first_delay_s")
        return self


class EventsSettings(_Section):
    sqs_queue_url: str | None = None
    sns_topic_arn: str | None = None
    eventbridge_bus: str | None = None
    jsonl_path: str | None = None
    #: Whether sinks carry contact.started's ParticipantToken and ConnectionData (logs never do).
    include_connection_data: bool = True
    endpoint_url: str | None = None


class ContactEventsSettings(_Section):
    """Connect contact events (EventBridge -> SQS) that wake watches at once; polling stays the
    fallback. Off unless `queue_url` is set."""

    queue_url: str | None = None
    endpoint_url: str | None = None
    #: Long-poll wait of each receive.
    wait_time_s: int = Field(20, ge=0, le=20)
    #: The polling schedule while events are on (replaces [watch]'s): the safety net for lost
    #: events. A lost event costs at most max_interval_s of detection delay.
    first_delay_s: float = Field(10.0, gt=0)
    multiplier: float = Field(2.0, ge=1)
    max_interval_s: float = Field(60.0, gt=0)
    #: Queue-aware head polling while events are on (events already notice connections).
    queue_aware: bool = False
    #: A connection confirmed after its event wakes the watched contacts enqueued before it in
    #: its queue (known from QUEUED events and polls): in a queue that serves oldest first they
    #: were served too, so a lost CONNECTED_TO_AGENT event costs one connection's delay.
    wake_passed: bool = True
    #: The safety net's scheduled polls of all watched contacts together use at most this share
    #: of the DescribeContact budget (each contact pauses at least watched / (share * rate) s);
    #: confirmations of events keep the rest.
    poll_budget_share: float = Field(0.25, gt=0, le=1)
    #: The same share for contacts in a queue seen to serve oldest first, where `wake_passed`
    #: catches lost events (the safety net is then for the youngest contacts only).
    fifo_poll_budget_share: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ContactEventsSettings:
        if self.max_interval_s < self.first_delay_s:
            raise ValueError("max_interval_s must be >= first_delay_s")
        return self


class FleetSettings(_Section):
    """Fleet mode: replicas share the account's Connect quotas and contact events through Redis.
    Off unless `redis_url` is set (`redis://` or `rediss://`, AUTH in the URL's user info)."""

    redis_url: str | None = None
    #: Keys and channels start with `<key_prefix>:<region>`; workers spending one account's
    #: quotas share it, another account needs another prefix (or another Redis).
    key_prefix: str = Field("orchestrator", min_length=1)
    #: Connect and read timeout of each Redis call (one quick retry after a connection error).
    timeout_s: float = Field(0.5, gt=0, le=10)
    #: Each worker renews its heartbeat this often; one not renewed for `heartbeat_ttl_s` is gone.
    heartbeat_interval_s: float = Field(2.0, gt=0)
    heartbeat_ttl_s: float = Field(10.0, gt=0)
    #: Consecutive Redis failures before the worker switches to its local share, and how long
    #: it waits before probing Redis again.
    breaker_failures: int = Field(3, ge=1, le=100)
    breaker_reset_s: float = Field(3.0, gt=0)
    #: While Redis is unreachable each worker spends quota / max(workers last seen, this).
    min_workers: int = Field(1, ge=1, le=10_000)

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> FleetSettings:
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be longer than heartbeat_interval_s")
        return self


class ShutdownSettings(_Section):
    #: After SIGTERM: how long in-flight lifecycles may finish before being handed back.
    grace_period_s: float = Field(30.0, ge=0)


class ObservabilitySettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    #: /healthz fails when the receive loop or the event loop has not made progress for this long.
    stall_threshold_s: float = Field(60.0, gt=0)
    #: A `worker.progress` log line this often while the numbers change.
    progress_interval_s: float = Field(30.0, gt=0)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_output: bool = True


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

    # -- derived values --------------------------------------------------------------------------

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


def _explain(loc: list[str], err: Any) -> str:
    if err["type"] == "missing":
        return "required"
    if err["type"] == "extra_forbidden":
        if any(word in loc[-1].lower() for word in _CREDENTIAL_WORDS):
            return (
                "not a setting: credentials come only from the standard AWS chain "
                "(environment, shared config, instance or task role), never from this file"
            )
        sections = _section_keys()
        candidates = list(sections) if len(loc) == 1 else sections.get(loc[0], [])
        guess = _closest(loc[-1].lower(), candidates) if len(loc) <= 2 else None
        return "unknown setting" + (f", did you mean {guess}?" if guess else "")
    return str(err["msg"]).removeprefix("Value error, ")


def _lookup(data: Any, key: str) -> str | None:
    """`key` as spelled in `data` (TOML keys match case-insensitively), or None."""
    if isinstance(data, dict):
        for written in data:
            if str(written).lower() == key.lower():
                return str(written)
    return None


def _where(loc: list[str], file: Path | None, document: dict[str, Any]) -> str:
    """Where the value at `loc` was set, as the user wrote it: a variable or the file's key."""
    env = ENV_PREFIX + "__".join(p.upper() for p in loc)
    set_names = {name.upper(): name for name in os.environ}
    for depth in range(len(loc), 0, -1):  # a whole section may come as one JSON variable
        name = ENV_PREFIX + "__".join(p.upper() for p in loc[:depth])
        if name in set_names:
            return f"environment variable {set_names[name]}"
    if file is not None:
        section = _lookup(document, loc[0])
        key = _lookup(document[section], loc[1]) if section is not None and len(loc) > 1 else None
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
        lines.append(f"{key}: {_explain(loc, err)} ({_where(loc, file, document or {})})")
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
    return settings


def settings_json(settings: Settings) -> str:
    return json.dumps(settings.masked(), indent=2, sort_keys=False)
