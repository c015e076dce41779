"""A wire-level Amazon Connect emulator for the operations the orchestrator uses.

It speaks Connect's rest-json protocol (so botocore, aiobotocore and boto3 talk to it unchanged),
behaves like a contact center (queue, agents, abandons, quotas, a concurrency cap, injected faults),
publishes EventBridge-shaped contact events best effort (dropped, duplicated, delayed on request)
and exposes its ground truth under `/_emulator/`. See docs/emulator.md.
"""

from orchestrator.connect.operations import Quota

from .config import DEFAULT_QUOTAS, OPERATIONS, EmulatorConfig
from .control import ControlError, EmulatorControl
from .server import Emulator, EmulatorThread, serve

__all__ = [
    "DEFAULT_QUOTAS",
    "OPERATIONS",
    "ControlError",
    "Emulator",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorThread",
    "Quota",
    "serve",
]
