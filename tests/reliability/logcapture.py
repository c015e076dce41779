"""Production logging (the real redacting pipeline) into a stream, restored afterwards."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any, TextIO

import structlog

from orchestrator.daemon.logs import configure_logging

#: The loggers `configure_logging` quietens, plus the ones a test may turn up.
LIBRARY_LOGGERS = ("botocore", "aiobotocore", "urllib3", "aiohttp.access", "werkzeug")


@contextlib.contextmanager
def captured_logs(
    *, level: str = "INFO", library_debug: bool = False, stream: TextIO | None = None
) -> Iterator[TextIO]:
    """Configure logging as `orchestrator run` does (JSON, redacted) into `stream` (a fresh
    StringIO by default). `library_debug` also forces botocore's loggers to DEBUG, where they
    dump whole request and response bodies. Logging is global: everything is restored on exit."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    out = stream if stream is not None else io.StringIO()
    configure_logging(level=level, json_output=True, stream=out)
    if library_debug:
        for name in ("botocore", "aiobotocore"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        structlog.configure(**saved_config)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, saved in saved_levels.items():
            logging.getLogger(name).setLevel(saved)
        structlog.contextvars.clear_contextvars()


def records(text: str) -> list[dict[str, Any]]:
    """Every log line as JSON (a line that is not JSON fails the test that reads it)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
