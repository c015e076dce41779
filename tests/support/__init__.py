"""Helpers of the project's tests: the testing kit (`orchestrator.testing`) plus what only these
tests need. Import from here: `from tests.support import eventually, request_body, settings_for`.

* `tests.support.clock`: `VirtualClock`, `SteppingClock`;
* `tests.support.engine`: an engine wired as the daemon wires it, `HookSink`, `call_request`;
* `tests.support.peers`: the emulator's test defaults and the fixture factory types;
* `tests.support.runs`: one drain-mode worker run over a list of bodies (`run_worker_on`);
* `tests.support.worker`: `settings_for`, `RecordingSource`.
"""

from orchestrator.testing.queues import (
    EventFollower,
    create_queue,
    create_queue_with_dlq,
    drain_bodies,
    drain_messages,
    final_types,
    queue_counts,
    send_all,
)
from orchestrator.testing.requests import (
    FLOW_ID,
    INSTANCE_ID,
    REGION,
    SCREEN_SHARE_BOTH,
    request_body,
    request_document,
)
from orchestrator.testing.waiting import eventually, eventually_sync
from tests.support.clock import SteppingClock, VirtualClock
from tests.support.peers import (
    ClientFactory,
    EmulatorFactory,
    VirtualEmulatorFactory,
    emulator_config,
    no_retries,
)
from tests.support.worker import RecordingSource, settings_for

__all__ = [
    "FLOW_ID",
    "INSTANCE_ID",
    "REGION",
    "SCREEN_SHARE_BOTH",
    "ClientFactory",
    "EmulatorFactory",
    "EventFollower",
    "RecordingSource",
    "SteppingClock",
    "VirtualClock",
    "VirtualEmulatorFactory",
    "create_queue",
    "create_queue_with_dlq",
    "drain_bodies",
    "drain_messages",
    "emulator_config",
    "eventually",
    "eventually_sync",
    "final_types",
    "no_retries",
    "queue_counts",
    "request_body",
    "request_document",
    "send_all",
    "settings_for",
]
