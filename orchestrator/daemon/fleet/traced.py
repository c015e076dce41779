"""Fleet mode's Redis calls as client spans (database semantic conventions, `redis`): the GCRA
script of every budget token, the heartbeat script, the contact-event publish. `TracedRedis` is
the fleet's client class; with tracing off it adds one check per command.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from orchestrator import tracing
from orchestrator.tracing import AttributeValue, SpanKind


def command_attributes(args: tuple[Any, ...]) -> dict[str, AttributeValue]:
    """A command's span attributes: its name, and the key it works on (a script's first key)."""
    name = str(args[0]).upper()
    out: dict[str, AttributeValue] = {"db.system.name": "redis", "db.operation.name": name}
    if name in ("EVALSHA", "EVAL") and len(args) > 3 and int(args[2]) > 0:
        out["db.collection.name"] = str(args[3])
    elif name == "PUBLISH" and len(args) > 1:
        out["messaging.destination.name"] = str(args[1])
    elif len(args) > 1 and name in ("ZREM", "ZADD", "GET", "SET"):
        out["db.collection.name"] = str(args[1])
    return out


class TracedRedis(Redis):
    """A Redis client whose every command is a client span while tracing is on."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if not tracing.enabled():
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        attributes = command_attributes(args)
        with tracing.span(
            f"redis {attributes['db.operation.name']}", kind=SpanKind.CLIENT, attributes=attributes
        ):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
