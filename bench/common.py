"""What every scenario shares: ids, fake credentials, request bodies, emulator options."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

REGION = "us-east-1"
INSTANCE_ID = "b3c1e0a2-7d4f-4c1e-9a55-0d6e5f4a3b21"
FLOW_ID = "5e7d9c1b-2a4f-4b6e-8c0d-1f2e3a4b5c6d"

#: Fake credentials for the local servers, which accept any signature. Set in this process and its
#: children so that nothing can reach a real AWS account.
FAKE_AWS_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "AKIABENCH00000000000",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-not-a-real-key",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def isolate_environment() -> None:
    """Fake credentials only, and no orchestrator settings leaking in from the environment."""
    for key in list(os.environ):
        if key.startswith("ORCHESTRATOR_") or key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            del os.environ[key]
    os.environ.update(FAKE_AWS_ENV)


def request_id(run: str, index: int) -> str:
    return f"bench-{run}-{index:05d}"


def request_params(index: int) -> dict[str, Any]:
    """StartWebRTCContact parameters of the `index`-th call (no ClientToken)."""
    return {
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "ParticipantDetails": {"DisplayName": f"Customer {index}"},
        "Attributes": {"order": str(100_000 + index), "channel": "mobile-app"},
        "AllowedCapabilities": {
            "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
            "Agent": {"Video": "SEND", "ScreenShare": "SEND"},
        },
    }


def request_body(run: str, index: int) -> str:
    """The SQS message body of one call request, as a requester's backend would send it."""
    return json.dumps({"RequestId": request_id(run, index), **request_params(index)})


def quota_args(quotas: Mapping[str, tuple[float, float]]) -> list[str]:
    """`--quota OP=RATE/BURST` options of `orchestrator emulator`."""
    args: list[str] = []
    for operation, (rate, burst) in quotas.items():
        args += ["--quota", f"{operation}={rate:g}/{burst:g}"]
    return args


def span(low: float, high: float) -> str:
    """A MIN:MAX option value."""
    return f"{low:g}:{high:g}"


def parse_setting(text: str) -> tuple[str, Any]:
    """`"queue_aware=false"` -> ("queue_aware", False): the value is read as JSON when it can be."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value
