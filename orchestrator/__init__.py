"""contact-orchestrator: drives Amazon Connect WebRTC contacts from queued call requests.

The names most users need; everything else may change between versions. The testing kit
(emulator, local SQS, request builder) is `orchestrator.testing`. The names are imported on first
use, so that `orchestrator` starts (and installs its signal handlers) before the heavy imports.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

#: The installed distribution's version (one place: pyproject.toml).
__version__ = _version("contact-orchestrator")

if TYPE_CHECKING:
    from orchestrator.daemon.assembly import open_worker, run_daemon
    from orchestrator.daemon.options import WorkerOptions
    from orchestrator.daemon.settings import Settings, load_settings
    from orchestrator.daemon.worker import Worker
    from orchestrator.engine.events import EventType, LifecycleEvent
    from orchestrator.engine.request import CallRequest, RequestRejected, parse_request

_WHERE = {
    "open_worker": "orchestrator.daemon.assembly",
    "run_daemon": "orchestrator.daemon.assembly",
    "Settings": "orchestrator.daemon.settings",
    "load_settings": "orchestrator.daemon.settings",
    "Worker": "orchestrator.daemon.worker",
    "WorkerOptions": "orchestrator.daemon.options",
    "EventType": "orchestrator.engine.events",
    "LifecycleEvent": "orchestrator.engine.events",
    "CallRequest": "orchestrator.engine.request",
    "RequestRejected": "orchestrator.engine.request",
    "parse_request": "orchestrator.engine.request",
}

__all__ = [
    "CallRequest",
    "EventType",
    "LifecycleEvent",
    "RequestRejected",
    "Settings",
    "Worker",
    "WorkerOptions",
    "__version__",
    "load_settings",
    "open_worker",
    "parse_request",
    "run_daemon",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
