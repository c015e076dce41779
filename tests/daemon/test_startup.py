"""The start-up summary: the one line an operator reads first."""

from __future__ import annotations

import json

from orchestrator.daemon.assembly import startup_summary
from orchestrator.daemon.settings import load_settings


def test_startup_summary_names_queue_endpoint_quotas_sinks_and_modes_without_secrets() -> None:
    settings = load_settings(
        None,
        queue={"url": "https://sqs.eu-west-1.amazonaws.com/123456789012/calls"},
        aws={"region": "eu-west-1"},
        events={"sqs_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/events"},
        contact_events={"queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/ce"},
        fleet={"redis_url": "rediss://:hunter2@redis.internal:6380/0"},
    )

    summary = startup_summary(settings)

    assert summary["connect_endpoint"] == "https://connect.eu-west-1.amazonaws.com"
    assert summary["quotas"]["StartWebRTCContact"] == "2/s burst 5"
    assert summary["sinks"] == ["log", "sqs"]
    assert summary["contact_events"].endswith("/ce")
    assert summary["fleet"] == "rediss://***@redis.internal:6380/0"
    assert summary["quota_share"] is None  # fleet mode shares one budget instead
    assert summary["max_waiting_to_start"] == 10
    assert "hunter2" not in json.dumps(summary)


def test_startup_summary_says_what_is_off() -> None:
    summary = startup_summary(load_settings(None, queue={"url": "http://127.0.0.1:1/q"}))

    assert summary["contact_events"] == "off (polling only)"
    assert summary["fleet"] == "off (local rate budget)"
    assert summary["quota_share"] == 1.0
