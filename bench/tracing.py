"""Tracing's cost: CPU time per lifecycle with tracing off (the no-op facade), with the SDK
installed but sampling nothing, recording every span without exporting it, and exporting every
span over OTLP/HTTP to a receiver on loopback.

`python -m bench tracing`. Each mode runs the same lifecycles (`contacts`, started at once; quotas
raised so that Connect is not the limit; agents answer within `agent_delay_s`, so each contact is
polled a few times) in a worker process of its own (`bench.tracing_worker`), one mode after the
other, each against a fresh emulator with the same seed. The OTLP receiver
(`orchestrator.testing.otlp`) runs in this process, so decoding is not counted; the worker's
encoding and sending (the SDK's batch exporter thread) are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.connect.operations import Operation
from orchestrator.testing.otlp import OtlpReceiver
from orchestrator.testing.processes import emulator_process, quota_args

from .harness import RunContext, Scenario, num, pct, run_child, say, span, table
from .tracing_worker import MODES


@dataclass(frozen=True)
class TracingOptions:
    contacts: int = 1500
    agent_delay_s: tuple[float, float] = (2.0, 4.0)
    rate: float = 500.0

    def quotas(self) -> dict[str, tuple[float, float]]:
        return {op.value: (self.rate, self.rate) for op in Operation}

    def emulator_args(self, seed: int) -> list[str]:
        return [
            "--seed", str(seed), "--max-concurrent-calls", "0", "--abandon-rate", "0",
            "--agent-delay", span(*self.agent_delay_s), "--talk-time", "30:40",
            *quota_args(self.quotas()),
        ]  # fmt: skip

    def deadline_s(self) -> float:
        return self.contacts / self.rate + self.agent_delay_s[1] + 120.0


QUICK = TracingOptions(contacts=200, agent_delay_s=(1.0, 2.0))
VARIANTS = tuple(MODES)


async def _one(mode: str, opts: TracingOptions, ctx: RunContext, receiver: OtlpReceiver) -> Any:
    async with emulator_process(opts.emulator_args(ctx.seed), ctx.log(f"{mode}-emulator")) as emu:
        before = len(receiver.spans())
        options = {
            "mode": mode, "contacts": opts.contacts, "endpoint_url": emu.url,
            "quotas": opts.quotas(), "deadline_s": opts.deadline_s(),
            "receiver_url": receiver.traces_url, "log": str(ctx.log(f"{mode}-worker")),
        }  # fmt: skip
        result = await run_child(
            "bench.tracing_worker",
            options,
            ctx.log(f"{mode}-process"),
            timeout_s=opts.deadline_s() + 120,
        )
    result["spans_exported"] = len(receiver.spans()) - before
    return result


def tracing_figures(runs: Mapping[str, Mapping[str, Any]], opts: TracingOptions) -> dict[str, Any]:
    figures: dict[str, Any] = {"options": asdict(opts), "modes": dict(runs)}
    off = runs.get("off", {}).get("cpu_ms_per_lifecycle", math.nan)
    figures["overhead"] = {
        mode: {
            "cpu_ms_per_lifecycle": r["cpu_ms_per_lifecycle"] - off,
            "fraction": r["cpu_ms_per_lifecycle"] / off - 1.0 if off > 0 else math.nan,
        }
        for mode, r in runs.items()
        if mode != "off"
    }
    otlp = runs.get("otlp")
    if otlp is not None:
        figures["spans_per_lifecycle"] = otlp["spans_exported"] / max(1, otlp["contacts"])
    if "off" in runs and otlp is not None:
        # What the facade's no-op calls cost a lifecycle while tracing is off: one per span.
        noop_ms = runs["off"]["noop_span_ns"] * figures["spans_per_lifecycle"] / 1e6
        figures["noop_ms_per_lifecycle"] = noop_ms
        figures["noop_share_of_lifecycle"] = noop_ms / off if off > 0 else math.nan
    return figures


async def measure(opts: TracingOptions, ctx: RunContext) -> dict[str, Any]:
    say(f"tracing: {opts.contacts} lifecycles per mode, modes {', '.join(VARIANTS)}")
    began = time.monotonic()
    runs: dict[str, dict[str, Any]] = {}
    with OtlpReceiver() as receiver:
        for mode in VARIANTS:
            if ctx.wants(mode):
                runs[mode] = r = await _one(mode, opts, ctx, receiver)
                say(
                    f"  {mode:<10} {r['lifecycles']}/{r['contacts']} completed, "
                    f"{r['cpu_ms_per_lifecycle']:.2f} CPU ms/lifecycle, "
                    f"{r['spans_exported']} spans exported"
                )
    figures = tracing_figures(runs, opts)
    figures["wall_s"] = time.monotonic() - began
    return figures


_LABELS = {
    "off": "off (no-op facade; default)",
    "unsampled": "SDK, sampler always_off",
    "recorded": "SDK, every span recorded, none exported",
    "otlp": "SDK, every span exported over OTLP/HTTP",
}


def markdown(figures: Mapping[str, Any]) -> str:
    o, modes, over = figures["options"], figures["modes"], figures["overhead"]
    rows = [
        [
            _LABELS.get(mode, mode),
            f"{num(r['lifecycles'])} / {num(r['contacts'])}",
            num(r["cpu_ms_per_lifecycle"], 2, " ms"),
            "-" if mode == "off" else num(over[mode]["cpu_ms_per_lifecycle"], 2, " ms"),
            "-" if mode == "off" else pct(over[mode]["fraction"], 0),
            num(r["spans_exported"]),
        ]
        for mode, r in modes.items()
    ]
    header = ["mode", "completed", "CPU per lifecycle", "more than off", "", "spans exported"]
    notes = [
        f"`python -m bench tracing` (wall time {figures['wall_s']:.0f} s). "
        f"{o['contacts']:,} lifecycles per mode, started at once (quotas {o['rate']:g}/s for every "
        f"operation, in the emulator and the worker), agents answering after "
        f"{span(*o['agent_delay_s'])} s; one worker process per mode, fed by a `MemoryQueue`, "
        "JSON logs at INFO to a file. CPU: the worker process's CPU time (every thread) from the "
        "first message to the end of tracing's shutdown (the exporter's last flush included), "
        "divided by the lifecycles completed. The OTLP receiver runs in the benchmark's process.",
    ]
    if "spans_per_lifecycle" in figures:
        notes.append(
            f"Spans per lifecycle: {num(figures['spans_per_lifecycle'], 1)} (receive, process, "
            "each Connect call, each sink publish)."
        )
    if "noop_ms_per_lifecycle" in figures:
        notes.append(
            f"Tracing off, a span through the facade costs "
            f"{num(modes['off']['noop_span_ns'], 0, ' ns')}: "
            f"{num(figures['noop_ms_per_lifecycle'] * 1000, 1, ' µs')} per lifecycle, "
            f"{pct(figures['noop_share_of_lifecycle'], 2)} of its CPU time."
        )
    return "\n\n".join(["## Tracing: CPU per lifecycle", table(header, rows), " ".join(notes)])


SCENARIO = Scenario(
    "tracing", "tracing's CPU cost per lifecycle: off, sampled out, recorded, exported over OTLP",
    TracingOptions(), QUICK, measure, markdown, seed=20261203, variants=VARIANTS,
)  # fmt: skip
