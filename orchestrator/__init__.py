"""contact-orchestrator: drives Amazon Connect WebRTC contacts from queued call requests.

The names most users need; everything else may change between versions. The testing kit
(emulator, local SQS, request builder) is `orchestrator.testing`.
"""

from importlib.metadata import version as _version

#: The installed distribution's version (one place: pyproject.toml).
__version__ = _version("contact-orchestrator")

from orchestrator.daemon.assembly import open_worker, run_daemon
from orchestrator.daemon.settings import Settings, load_settings
from orchestrator.daemon.worker import Worker, WorkerOptions
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.request import CallRequest, RequestRejected, parse_request

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
