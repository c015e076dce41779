"""An SQS server on loopback for the demo, the tests and the benchmarks (moto, in a thread).

Only imported by those: the daemon itself talks to whatever SQS endpoint it is configured with.

moto's backend is not safe under concurrent requests (its threaded server raced: "Set changed
size during iteration", `list.remove(x)`, answered as 500s), so every request runs alone under
one lock. A long poll must not hold that lock while it waits, so `ReceiveMessage` with a wait
time is served here: moto answers it at once (wait 0), and while the answer is empty and the
wait lasts, the request waits outside the lock for the next request that may have changed a
queue (or 0.2 s, for visibility timeouts running out) and asks again. A `ReceiveMessage` wakes
nobody: it cannot make a message visible, and if it did, the waiting long polls would wake each
other in turn without end (hundreds of empty asks a second with three waiting, each holding the
lock that every other request needs).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

#: How often a waiting long poll looks again when nothing else happens (visibility timeouts).
_REPOLL_S = 0.2

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SerializedSqsApp:
    """A WSGI app around moto's: one request at a time, long polls waiting outside the lock."""

    #: moto's backends are module-wide state: one lock for every server in the process.
    _lock = threading.Lock()
    _changed = threading.Condition()

    def __init__(self, app: WsgiApp) -> None:
        self._app = app

    def _call(
        self, environ: dict[str, Any], body: bytes, *, wakes: bool
    ) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
            answer["status"], answer["headers"] = status, headers

        request = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        request["CONTENT_LENGTH"] = str(len(body))
        with self._lock:
            chunks = list(self._app(request, start_response))
        if wakes:
            with self._changed:
                self._changed.notify_all()
        return answer["status"], answer["headers"], chunks

    @staticmethod
    def _receives(environ: dict[str, Any]) -> bool:
        return str(environ.get("HTTP_X_AMZ_TARGET", "")).endswith(".ReceiveMessage")

    @classmethod
    def _long_poll(cls, environ: dict[str, Any], body: bytes) -> tuple[float, bytes]:
        """(wait seconds, the body asking moto for no wait) of a JSON ReceiveMessage."""
        if not cls._receives(environ):
            return 0.0, body
        try:
            document = json.loads(body)
            wait = float(document.get("WaitTimeSeconds") or 0)
        except (ValueError, TypeError, AttributeError):
            return 0.0, body
        if wait <= 0:
            return 0.0, body
        document["WaitTimeSeconds"] = 0
        return wait, json.dumps(document).encode()

    @staticmethod
    def _empty(status: str, chunks: list[bytes]) -> bool:
        if not status.startswith("200"):
            return False
        try:
            return not json.loads(b"".join(chunks) or b"{}").get("Messages")
        except ValueError:
            return False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        wait, body = self._long_poll(environ, body)
        wakes = not self._receives(environ)
        deadline = time.monotonic() + wait
        while True:
            status, headers, chunks = self._call(environ, body, wakes=wakes)
            left = deadline - time.monotonic()
            if left <= 0 or not self._empty(status, chunks):
                start_response(status, headers)
                return chunks
            with self._changed:
                self._changed.wait(timeout=min(_REPOLL_S, left))


class LocalSqsServer:
    """moto's SQS server in a background thread on a free loopback port, safe under
    concurrent requests.

    ```python
    with LocalSqsServer() as sqs:
        client = session.create_client("sqs", endpoint_url=sqs.url, ...)
    ```
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        try:
            from moto.moto_server.werkzeug_app import (  # noqa: PLC0415 (optional dependency)
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "the embedded SQS server needs moto: pip install 'contact-orchestrator[demo]'"
            ) from exc
        # werkzeug prints a banner and a line per request; keep the demo's output clean.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = SerializedSqsApp(DomainDispatcherApplication(create_backend_app))
        with contextlib.redirect_stderr(io.StringIO()):
            self._server = make_server(
                self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-sqs", daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
