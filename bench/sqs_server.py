"""`python -m bench.sqs_server`: moto's SQS server in this process, until stdin closes or SIGTERM.

Prints `SQS server listening on URL` once it accepts connections.
"""

from __future__ import annotations

import signal
import sys
import threading

from orchestrator.testing.local_sqs import LocalSqsServer

from .servers import SQS_READY


def main() -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: done.set())

    def until_stdin_closes() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    with LocalSqsServer() as server:
        print(f"{SQS_READY}{server.url}", flush=True)
        done.wait()


if __name__ == "__main__":
    main()
