"""Every setting reaches something: an engine value that assembly builds from the settings, or a
daemon part that reads its section itself (listed below, with the reason)."""

from __future__ import annotations

import importlib
import inspect
import re
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from orchestrator import bounds
from orchestrator.daemon.assembly import (
    budget_share,
    connect_quotas,
    fleet_policy,
    gateway_policies,
    outage_policy,
    position_policy,
    request_defaults,
    watch_policy,
    worker_options,
)
from orchestrator.daemon.engine_fields import bounds_of, engine_refs
from orchestrator.daemon.settings import Settings

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/call-requests"
ASSEMBLY = "orchestrator.daemon.assembly"

#: Settings that feed no engine value: the daemon part that reads them, and why.
DAEMON_ONLY: dict[tuple[str, str], tuple[str, str]] = {
    ("aws", "region"): (ASSEMBLY, "the region of every AWS client the worker opens"),
    ("aws", "endpoint_url"): ("orchestrator.daemon.settings", "Settings.endpoint(): clients"),
    ("queue", "url"): (ASSEMBLY, "the SQS queue source the worker receives from"),
    ("queue", "endpoint_url"): ("orchestrator.daemon.settings", "Settings.endpoint(): clients"),
    ("connect", "endpoint_url"): ("orchestrator.daemon.settings", "Settings.endpoint(): clients"),
    ("events", "sqs_queue_url"): (ASSEMBLY, "which event sinks the worker builds"),
    ("events", "sns_topic_arn"): (ASSEMBLY, "which event sinks the worker builds"),
    ("events", "eventbridge_bus"): (ASSEMBLY, "which event sinks the worker builds"),
    ("events", "jsonl_path"): (ASSEMBLY, "which event sinks the worker builds"),
    ("events", "include_connection_data"): (ASSEMBLY, "an option of each sink"),
    ("events", "endpoint_url"): ("orchestrator.daemon.settings", "Settings.endpoint(): clients"),
    ("contact_events", "endpoint_url"): ("orchestrator.daemon.settings", "Settings.endpoint()"),
    ("contact_events", "wait_time_s"): (ASSEMBLY, "the contact-events consumer's long poll"),
    ("fleet", "redis_url"): (ASSEMBLY, "fleet mode on or off: the Redis client"),
    ("fleet", "timeout_s"): (ASSEMBLY, "the Redis client's timeouts"),
    ("fleet", "key_prefix"): (ASSEMBLY, "where the fleet's keys and channels live"),
    ("observability", "enabled"): (ASSEMBLY, "whether run_daemon serves observability"),
    ("observability", "host"): ("orchestrator.daemon.observability", "the HTTP server"),
    ("observability", "port"): ("orchestrator.daemon.observability", "the HTTP server"),
    ("observability", "stall_threshold_s"): ("orchestrator.daemon.observability", "/healthz"),
    ("logging", "level"): ("orchestrator.cli", "logging is configured before the worker"),
    ("logging", "json_output"): ("orchestrator.cli", "logging is configured before the worker"),
}

#: Configurations a setting may need to matter in: the schedule of `[contact_events]` replaces
#: `[watch]`'s only while contact events are on.
BASES: list[dict[str, dict[str, Any]]] = [
    {},
    {"contact_events": {"queue_url": "https://sqs.us-east-1.amazonaws.com/1/events"}},
]


def engine_values(settings: Settings) -> dict[str, object]:
    """Every engine value assembly builds from the settings."""
    return {
        "worker": worker_options(settings),
        "watch": watch_policy(settings.watch, settings.contact_events, describe_rate=10.0),
        "gateway": gateway_policies(settings),
        "outage": outage_policy(settings),
        "quotas": connect_quotas(settings.connect),
        "budget": budget_share(settings.connect),
        "request_defaults": request_defaults(settings),
        "positions": position_policy(settings.queue_position),
        "fleet": fleet_policy(settings.fleet),
    }


def every_setting() -> Iterator[tuple[str, str, FieldInfo]]:
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key, info in model.model_fields.items():
            yield section, key, info


def other_values(info: FieldInfo) -> list[Any]:
    """Values unlike the default, some of which the field's own bounds admit."""
    default = info.default
    annotation = info.annotation
    choices = get_args(annotation) if get_origin(annotation) is Literal else ()
    if choices:
        return [c for c in choices if c != default]
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int | float):
        limits = bounds_of(info)
        low = limits.ge or limits.gt or 0.0
        high = limits.le or limits.lt or 2 * default
        candidates = [default * 2, default / 2, default + 1, default - 1, (low + high) / 2, high]
        kind = int if type(default) is int else float
        return [kind(c) for c in candidates if kind(c) != default]
    if isinstance(default, list):  # the field's own examples first: they are valid values
        return [*(info.examples or []), ["sample"]]
    return ["https://example.invalid/sample"]


def build(base: dict[str, dict[str, Any]], section: str, key: str, value: Any) -> Settings | None:
    sections = {name: dict(values) for name, values in base.items()}
    sections.setdefault("queue", {}).setdefault("url", QUEUE)
    sections.setdefault(section, {})[key] = value
    try:
        return Settings.model_validate(sections)
    except ValidationError:
        return None


def feeds_an_engine_value(section: str, key: str, info: FieldInfo) -> bool:
    for base in BASES:
        reference = build(base, "queue", "url", QUEUE)
        assert reference is not None
        before = engine_values(reference)
        for value in other_values(info):
            changed = build(base, section, key, value)
            if changed is not None and engine_values(changed) != before:
                return True
    return False


def test_every_setting_feeds_an_engine_value_or_is_listed_as_daemon_only() -> None:
    unmapped = [
        f"[{section}] {key}"
        for section, key, info in every_setting()
        if (section, key) not in DAEMON_ONLY and not feeds_an_engine_value(section, key, info)
    ]
    assert not unmapped, (
        f"settings that change no engine value: {unmapped}; build them into one in "
        "orchestrator/daemon/assembly.py, or list them in DAEMON_ONLY with their reader"
    )


def test_daemon_only_settings_exist_and_their_readers_read_them() -> None:
    known = {(section, key) for section, key, _ in every_setting()}
    assert not set(DAEMON_ONLY) - known, "DAEMON_ONLY lists settings that no longer exist"
    for (section, key), (reader, _reason) in DAEMON_ONLY.items():
        source = inspect.getsource(importlib.import_module(reader))
        assert re.search(rf"\.{key}\b", source), f"{reader} never reads [{section}] {key}"


def _members(hint: Any) -> set[Any]:
    if get_origin(hint) in {typing.Union, types.UnionType}:
        return set(get_args(hint))
    return {hint}


@pytest.mark.parametrize("section", list(Settings.model_fields))
def test_a_setting_that_feeds_an_engine_field_has_its_type_default_and_bounds(
    section: str,
) -> None:
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    for key, ref in engine_refs(model).items():
        info = model.model_fields[key]
        engine_field, spec = bounds.spec(ref.owner, ref.name)
        engine_type = typing.get_type_hints(ref.owner)[ref.name]
        if ref.convert is None:
            assert _members(info.annotation) <= _members(engine_type), f"[{section}] {key}"
        else:  # a TOML list for a frozenset, say
            assert isinstance(ref.convert(info.default), get_origin(engine_type) or engine_type)
            assert ref.convert(info.default) == bounds.default_of(engine_field)
        expected = {**spec.bounds.as_kwargs(), **bounds_of(info).as_kwargs()}
        assert bounds_of(info).as_kwargs() == expected, f"[{section}] {key}: engine bounds lost"
