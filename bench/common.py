"""What every scenario shares: fake credentials, request bodies (the testing kit's), emulator
options."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from orchestrator.testing.requests import REGION, customer_document

__all__ = [
    "FAKE_AWS_ENV",
    "REGION",
    "isolate_environment",
    "parse_setting",
    "quota_args",
    "request_body",
    "request_id",
    "request_params",
    "span",
]

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
    """StartWebRTCContact parameters of the `index`-th call (no ClientToken): the kit's request
    without its RequestId."""
    params = customer_document(None, index)
    del params["RequestId"]
    return params


def request_body(run: str, index: int) -> str:
    """The SQS message body of one call request, as a requester's backend would send it."""
    return json.dumps(customer_document(request_id(run, index), index))


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
