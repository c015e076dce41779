"""A metrics port already in use stops `orchestrator run` with one line naming where the port was
configured: the file's key, the environment variable that was set, or the default."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from orchestrator.testing.local_sqs import LocalSqsServer
from tests.daemon.test_cli import cli_env
from tests.support import create_queue_with_dlq

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(120)


async def test_a_busy_port_set_in_the_file_is_named_by_its_key_not_a_variable(
    sqs_server: LocalSqsServer, sqs_client: SQSClient, tmp_path: Path
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    config = tmp_path / "orchestrator.toml"
    with socket.socket() as busy:  # another worker on this host holds the port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config.write_text(
            f'[aws]\nendpoint_url = "{sqs_server.url}"\n[queue]\nurl = "{queue}"\n'
            f"[observability]\nport = {port}\n"
        )
        result = await anyio.run_process(
            [str(Path(sys.executable).parent / "orchestrator"), "run", "--config", str(config)],
            env=cli_env(),
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    [line] = [text for text in stderr.splitlines() if text.strip()]
    assert line == (
        f"orchestrator: observability.port: 127.0.0.1:{port} is already in use "
        f"(in {config}: [observability] port; give each worker its own port, or 0 for a free one)"
    )
