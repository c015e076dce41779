"""An SQS server on loopback for the demo, the tests and the benchmarks (moto's threaded server).

Only imported by those: the daemon itself talks to whatever SQS endpoint it is configured with.
"""

from __future__ import annotations

import contextlib
import io
import logging
from types import TracebackType
from typing import Self


class LocalSqsServer:
    """moto's SQS server in a background thread on a free loopback port.

    ```python
    with LocalSqsServer() as sqs:
        client = session.create_client("sqs", endpoint_url=sqs.url, ...)
    ```
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            from moto.server import ThreadedMotoServer  # noqa: PLC0415 (optional dependency)
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "the embedded SQS server needs moto: pip install 'contact-orchestrator[demo]'"
            ) from exc
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""

    def start(self) -> str:
        # werkzeug prints a banner and a line per request; keep the demo's output clean.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        with contextlib.redirect_stderr(io.StringIO()):
            self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
