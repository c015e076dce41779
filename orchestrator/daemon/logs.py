"""Structured logging: structlog everywhere, JSON in production, secrets redacted before output.

`configure_logging()` is called once, at the edge (the CLI). Library loggers (botocore, aiohttp)
go through the same processors, so the redaction covers them too. Redaction works on two levels:
any key that names a secret (token, secret, password, credential, authorization, connection data)
has its value replaced, and any long base64-like run inside a string (the shape of participant
and join tokens, signatures and session tokens) is masked wherever it appears.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from orchestrator import tracing

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"token|secret|password|passwd|credential|authorization|signature|connectiondata|joinurl",
    re.IGNORECASE,
)
#: Tokens, keys and signatures are long runs of base64 characters mixing upper case, lower case
#: and digits. Ids, ARNs, UUIDs, URLs and words are not: they lack one of the three classes.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
_MIN_TOKEN = 32
_MAX_DEPTH = 8


def _mask_text(text: str) -> str:
    if len(text) < _MIN_TOKEN:
        return text
    return _TOKEN_RUN.sub(_mask_run, text)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    mixed = (
        any(c.isupper() for c in run)
        and any(c.islower() for c in run)
        and any(c.isdigit() for c in run)
    )
    return REDACTED if mixed else run


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with secrets removed (keys that name secrets, token-shaped strings)."""
    if depth > _MAX_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return _mask_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last step before rendering."""
    return {
        key: (
            REDACTED
            if _SECRET_KEY.search(key) and key != "event"
            else redact(value)
            if key != "exc_info"
            else value
        )
        for key, value in event_dict.items()
    }


def _redact_rendered(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Exceptions are rendered to text by format_exc_info; redact that text too.
    if "exception" in event_dict and isinstance(event_dict["exception"], str):
        event_dict["exception"] = _mask_text(event_dict["exception"])
    return event_dict


def configure_logging(
    *, level: str = "INFO", json_output: bool = True, stream: TextIO | None = None
) -> None:
    """Route structlog and the standard library's logging through one redacting pipeline."""
    stamp: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            tracing.add_trace_ids,
            structlog.stdlib.filter_by_level,
            *stamp,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                tracing.add_trace_ids,
                *stamp,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_processor,
                structlog.processors.format_exc_info,
                _redact_rendered,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # botocore logs whole request and response bodies at DEBUG; keep library chatter down.
    for noisy in ("botocore", "aiobotocore", "urllib3", "aiohttp.access", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
