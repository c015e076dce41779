"""`python -m tests.tracing.lifecycle_without_otel absent|disabled`: run one whole lifecycle (the
emulator in this process, a `MemoryQueue`) with tracing configured as the CLI configures it, the
`otel` extra made unimportable (`absent`) or disabled by `OTEL_SDK_DISABLED=true` (`disabled`),
and print what happened as one JSON line: the final event, whether tracing came on, and every
`opentelemetry` module imported meanwhile (there must be none).

redis-py imports OpenTelemetry's metrics SDK on its own when it is installed
(`redis.observability`): those modules, imported by `import redis` alone, are counted apart
(`by_redis`), so that `imported` is what the orchestrator brought in."""

from __future__ import annotations

import importlib.abc
import json
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class BlockOpenTelemetry(importlib.abc.MetaPathFinder):
    """As if the `otel` extra were not installed."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname == "opentelemetry" or fullname.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _otel_modules() -> set[str]:
    return {m for m in sys.modules if m.split(".")[0] == "opentelemetry"}


async def one_lifecycle() -> dict[str, object]:
    import redis.asyncio  # noqa: F401, PLC0415

    by_redis = _otel_modules()
    from orchestrator import tracing  # noqa: PLC0415
    from orchestrator.daemon.assembly import open_worker  # noqa: PLC0415
    from orchestrator.daemon.settings import Settings  # noqa: PLC0415
    from orchestrator.sinks import MemorySink  # noqa: PLC0415
    from orchestrator.testing.emulator import Emulator, EmulatorConfig  # noqa: PLC0415
    from orchestrator.testing.memory_queue import MemoryQueue  # noqa: PLC0415
    from orchestrator.testing.requests import REGION, request_body  # noqa: PLC0415

    config = EmulatorConfig(agent_delay_s=(0.05, 0.1), abandon_rate=0.0, flow_delay_s=0.0, seed=7)
    async with Emulator(config) as emulator:
        settings = Settings(
            aws={"region": REGION},
            queue={"url": "http://memory.invalid/q", "wait_time_s": 1},
            connect={"endpoint_url": emulator.url},
            watch={"first_delay_s": 0.05, "max_interval_s": 0.2},
            observability={"enabled": False},
        )
        queue, sink = MemoryQueue(), MemorySink()
        queue.send(request_body("untraced"))
        with tracing.configured():
            enabled = tracing.enabled()
            async with open_worker(settings, source=queue, extra_sinks=[sink]) as worker:
                await worker.run(drain=True)
    finals = [e.type.value for e in sink.events if e.final]
    return {
        "enabled": enabled,
        "finals": finals,
        "trace_ids": sorted({str(e.trace_id) for e in sink.events}),
        "imported": sorted(_otel_modules() - by_redis),
        "facade_loaded_sdk": "orchestrator.tracing.otel" in sys.modules,
        "by_redis": len(by_redis),
    }


def main() -> None:
    if sys.argv[1:] == ["absent"]:
        sys.meta_path.insert(0, BlockOpenTelemetry())
    import anyio  # noqa: PLC0415

    print(json.dumps(anyio.run(one_lifecycle)))


if __name__ == "__main__":
    main()
