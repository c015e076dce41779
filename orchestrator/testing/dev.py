"""`orchestrator dev`: the peers to run the daemon yourself on the embedded default, no AWS account.

Starts the local SQS server (moto) and the Connect emulator on loopback, creates a request queue
with a dead-letter queue and an events queue, writes the configuration that points a worker at
them, and prints it with the commands to use (`orchestrator run --config ...`, `orchestrator
enqueue --config ...`). Everything lives in memory until Ctrl-C (or SIGTERM); the files written
to a temporary directory go with it.
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
from aiobotocore.session import AioSession

from orchestrator.sqs import aws_client_config
from orchestrator.testing.emulator import Emulator, EmulatorConfig
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue, create_queue_with_dlq
from orchestrator.testing.requests import FLOW_ID, INSTANCE_ID, REGION

#: Any value will do: the local servers accept any signature. They exist only for these servers.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIADEV0000000000000",
    "AWS_SECRET_ACCESS_KEY": "dev-not-a-key",
}
#: What the request queue's redrive policy allows before a message goes to the dead-letter queue.
MAX_RECEIVE_COUNT = 5
#: The line printed to enqueue: the smallest request, the instance and flow left to the defaults.
SAMPLE_REQUEST = {"RequestId": "dev-1", "ParticipantDetails": {"DisplayName": "Jane"}}


@dataclass(frozen=True)
class DevEnvironment:
    """Where the local peers listen and what a worker's configuration says about them."""

    sqs_url: str
    connect_url: str
    queue_url: str
    dlq_url: str
    events_url: str
    directory: Path
    #: Whether `directory` is a temporary one, removed when `orchestrator dev` stops.
    temporary: bool = True

    @property
    def config_path(self) -> Path:
        return self.directory / "orchestrator.toml"

    @property
    def events_path(self) -> Path:
        return self.directory / "events.jsonl"

    def toml(self) -> str:
        return f"""\
# Written by `orchestrator dev`: valid while it runs (the queues live in its memory).
[aws]
region = "{REGION}"
endpoint_url = "{self.sqs_url}"  # the local SQS server, for every SQS client

[queue]
url = "{self.queue_url}"  # redrive policy: dead-letter after {MAX_RECEIVE_COUNT} receives

[connect]
endpoint_url = "{self.connect_url}"  # the Connect emulator
instance_id = "{INSTANCE_ID}"
contact_flow_id = "{FLOW_ID}"

[events]
sqs_queue_url = "{self.events_url}"
jsonl_path = {json.dumps(str(self.events_path))}
"""

    def instructions(self) -> str:
        exports = " ".join(f"{name}={value}" for name, value in CREDENTIALS.items())
        config = self.config_path
        return f"""\
Local SQS server (moto)  {self.sqs_url}
Connect emulator         {self.connect_url}
Request queue            {self.queue_url}
Dead-letter queue        {self.dlq_url}
Events queue             {self.events_url}

Configuration, written to {config}:

{self.toml()}
In another terminal (the credentials are dummies: the local servers check none):

  export {exports}
  orchestrator run --config {config}

and in a third:

  export {exports}
  echo '{json.dumps(SAMPLE_REQUEST)}' | orchestrator enqueue --config {config}
  tail -f {self.events_path}
  orchestrator dlq inspect --config {config}

Ctrl-C stops the servers (the queues go with them{self._directory_fate()}).
"""

    def _directory_fate(self) -> str:
        return f", and {self.directory}" if self.temporary else f"; {self.directory} stays"


async def _create_queues(sqs_url: str) -> tuple[str, str, str]:
    session = AioSession()
    session.set_credentials(*CREDENTIALS.values())
    async with session.create_client(
        "sqs", region_name=REGION, endpoint_url=sqs_url, config=aws_client_config()
    ) as sqs:
        queue, dlq = await create_queue_with_dlq(
            sqs, max_receive_count=MAX_RECEIVE_COUNT, prefix="dev-requests"
        )
        return queue, dlq, await create_queue(sqs, "dev-events")


async def run_dev(
    *,
    out: TextIO,
    directory: Path | None = None,
    sqs_port: int = 0,
    connect_port: int = 0,
) -> None:
    """Start the peers, write and print the configuration, and serve until SIGINT or SIGTERM."""
    with contextlib.ExitStack() as stack:
        temporary = directory is None
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orch-dev-")))
        directory.mkdir(parents=True, exist_ok=True)
        sqs_server = stack.enter_context(LocalSqsServer(port=sqs_port))
        queue, dlq, events = await _create_queues(sqs_server.url)
        config = EmulatorConfig(
            instance_ids=frozenset({INSTANCE_ID}), contact_flow_ids=frozenset({FLOW_ID})
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with Emulator(config, port=connect_port) as emulator:
                env = DevEnvironment(
                    sqs_server.url,
                    emulator.url,
                    queue,
                    dlq,
                    events,
                    directory=directory,
                    temporary=temporary,
                )
                env.config_path.write_text(env.toml(), encoding="utf-8")
                out.write(env.instructions())
                out.flush()
                async for _ in signals:
                    break
        out.write("orchestrator dev: stopped\n")
        out.flush()
