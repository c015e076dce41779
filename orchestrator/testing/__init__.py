"""The testing kit: what the project's tests, demo and benchmarks share, for your own tests too.

* `Emulator`, `EmulatorThread`, `EmulatorConfig`, `EmulatorControl`: the Connect emulator;
* `LocalSqsServer`: moto's SQS server on loopback (needs the `demo` extra); `MemoryQueue`: a
  queue source in memory;
* `request_document`, `request_body`, `INSTANCE_ID`, `FLOW_ID`, `REGION`: one valid call request;
* `create_queue_with_dlq`, `send_all`, `drain_bodies`, `queue_counts`, `EventFollower`,
  `final_types`: SQS from the test side;
* `eventually`: wait for a condition with a deadline;
* `RedisServer`: a real redis-server on a free loopback port, to kill and restart (fleet mode);
* `orchestrator.testing.processes`: child processes (servers that announce their URL);
  `orchestrator.testing.workers`: `orchestrator run` worker processes (a pool to start, signal
  and stop them, and a rig of fresh queues and an emulator around it);
  `orchestrator.testing.chaos`: the chaos soak;
* `orchestrator.testing.stats`: percentiles; `orchestrator.testing.poison`: a poison message.

Nothing in the daemon imports this package.
"""

from orchestrator.testing.emulator import Emulator, EmulatorConfig, EmulatorControl, EmulatorThread
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.memory_queue import MemoryQueue
from orchestrator.testing.queues import (
    EventFollower,
    create_queue,
    create_queue_with_dlq,
    drain_bodies,
    drain_messages,
    final_types,
    first_finals,
    queue_counts,
    send_all,
)
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.requests import (
    FLOW_ID,
    INSTANCE_ID,
    REGION,
    SCREEN_SHARE_BOTH,
    customer_document,
    request_body,
    request_document,
)
from orchestrator.testing.waiting import eventually, eventually_sync

__all__ = [
    "FLOW_ID",
    "INSTANCE_ID",
    "REGION",
    "SCREEN_SHARE_BOTH",
    "Emulator",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorThread",
    "EventFollower",
    "LocalSqsServer",
    "MemoryQueue",
    "RedisServer",
    "create_queue",
    "create_queue_with_dlq",
    "customer_document",
    "drain_bodies",
    "drain_messages",
    "eventually",
    "eventually_sync",
    "final_types",
    "first_finals",
    "queue_counts",
    "request_body",
    "request_document",
    "send_all",
]
