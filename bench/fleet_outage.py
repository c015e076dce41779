"""Fleet mode through a Redis outage: the fleet scenario's drain (2 -> 6 -> 3 workers at the real
start quota) with the fleet's redis-server SIGKILLed for `outage_s` and started again, empty, on
the same port, as a crash or a failover would leave it.

Two modes, the same schedule, one after the other (each on a fresh emulator, queues and Redis):

* baseline: the workers run `orchestrator/` as it was at `baseline` (a git revision, extracted by
  `git archive`, with this tree's installed dependencies), so the code before a change is
  measured side by side with the code after it, in one run;
* current: the workers run this tree.

`python -m bench fleet-outage`. Besides the fleet scenario's figures, each mode reports its starts
per `bin_s` around the outage and its start rate in the windows before, during and after it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from orchestrator.connect.operations import Operation
from orchestrator.testing.processes import sqs_server_process

from . import fleet
from .drain import START, Drain, Mode, share
from .harness import RunContext, Scenario, Target, say, table, verdict

#: main when this scenario was written: the fleet before its outage handling was reworked.
BASELINE = "e98bc725b8c11b89c2966df947f4efe427b24526"
#: The Connect operations that revision knows (StopContact and GetContactMetrics came after).
BASELINE_OPERATIONS = frozenset(
    {Operation.START_WEBRTC_CONTACT, Operation.DESCRIBE_CONTACT, Operation.START_SCREEN_SHARING}
)


def modes(baseline: str) -> tuple[Mode, Mode]:
    return (
        Mode(
            "baseline",
            f"before (main at {baseline[:10]})",
            {},
            redis=True,
            source=baseline,
            source_operations=BASELINE_OPERATIONS,
        ),
        Mode("current", "this commit", {}, redis=True),
    )


VARIANTS = tuple(m.name for m in modes(BASELINE))


@dataclass(frozen=True)
class OutageOptions:
    fleet: fleet.FleetOptions = field(default_factory=fleet.FleetOptions)
    #: Redis is SIGKILLed this long after the first workers start (in the 6-worker phase)...
    kill_at_s: float = 50.0
    #: ...and started again, empty, this long after.
    outage_s: float = 15.0
    #: The revision the baseline's workers run.
    baseline: str = BASELINE
    #: Starts are counted per bin around the outage.
    bin_s: float = 5.0


QUICK = OutageOptions(
    fleet=fleet.QUICK, kill_at_s=2.0, outage_s=2.0, bin_s=1.0,
)  # fmt: skip


@dataclass
class Outage:
    """When the schedule killed Redis and started it again (seconds since the drain began)."""

    killed_s: float | None = None
    restarted_s: float | None = None

    async def run(self, d: Drain, kill_at_s: float, outage_s: float) -> None:
        server = d.redis
        if server is None or await d.until(kill_at_s):
            return
        server.kill()
        self.killed_s = d.now()
        await d.until(kill_at_s + outage_s)
        await anyio.to_thread.run_sync(server.start)
        self.restarted_s = d.now()


def windows(
    created: Sequence[float], outage: Outage, rate: float, length_s: float
) -> dict[str, dict[str, float]]:
    """Starts and their rate as a share of the quota in the `length_s` before the kill, during
    the outage, and in two windows after the restart (`created`: seconds since the drain began)."""
    if outage.killed_s is None or outage.restarted_s is None:
        return {}
    killed, back = outage.killed_s, outage.restarted_s
    spans = {
        "before": (killed - length_s, killed),
        "during": (killed, back),
        "after": (back, back + length_s),
        "later": (back + length_s, back + 2 * length_s),
    }
    out = {}
    for name, (begin, end) in spans.items():
        starts = sum(1 for t in created if begin <= t < end)
        out[name] = {
            "from_s": round(begin, 1), "to_s": round(end, 1), "starts": starts,
            "start_rate_share": starts / ((end - begin) * rate) if end > begin else float("nan"),
        }  # fmt: skip
    return out


def per_bin(created: Sequence[float], outage: Outage, bin_s: float, bins: int) -> dict[str, Any]:
    """Starts per `bin_s` from `bins` bins before the kill to `2 * bins` after the restart."""
    if outage.killed_s is None or outage.restarted_s is None:
        return {}
    first = outage.killed_s - bins * bin_s
    count = int((outage.restarted_s - first) / bin_s) + 2 * bins
    counts = [0] * count
    for t in created:
        index = int((t - first) // bin_s)
        if 0 <= index < count:
            counts[index] += 1
    return {"bin_s": bin_s, "from_s": round(first, 1), "starts": counts}


def breaker_log(d: Drain) -> list[dict[str, Any]]:
    """Each worker's `fleet.degraded` / `fleet.recovered` lines, in seconds since the drain
    began: how long each one spent on its local share."""
    out = []
    for worker in d.rig.pool.workers:
        for record in worker.records():
            if record.get("event") in ("fleet.degraded", "fleet.recovered"):
                at = datetime.fromisoformat(record["timestamp"]).timestamp() - d.started_wall
                out.append({"worker": worker.name, "event": record["event"], "at_s": round(at, 2)})
    return sorted(out, key=lambda r: r["at_s"])


async def measure(opts: OutageOptions, ctx: RunContext) -> dict[str, Any]:
    fo = opts.fleet
    rate, burst = fo.quotas[START]
    say(
        f"fleet-outage: {fo.requests} requests, workers {[n for n, _ in fo.phases]}, Redis "
        f"killed at {opts.kill_at_s:g} s for {opts.outage_s:g} s"
    )
    results: dict[str, Any] = {}
    began = time.monotonic()
    async with sqs_server_process(ctx.log("sqs")) as sqs:
        for mode in modes(opts.baseline):
            if not ctx.wants(mode.name):
                continue
            outage = Outage()

            async def outage_of(d: Drain, outage: Outage = outage) -> None:
                await outage.run(d, opts.kill_at_s, opts.outage_s)

            d = await fleet.run_mode(mode, fo, ctx, sqs.url, meanwhile=outage_of)
            created = [c - d.started_wall for c in d.created]
            m = fleet.mode_figures(d, fo)
            m["outage"] = {
                "killed_s": outage.killed_s, "restarted_s": outage.restarted_s,
                "windows": windows(created, outage, rate, opts.outage_s),
                "per_bin": per_bin(created, outage, opts.bin_s, int(opts.outage_s / opts.bin_s)),
                "breaker": breaker_log(d),
            }  # fmt: skip
            results[mode.name] = m
            w = m["outage"]["windows"]
            say(
                f"  {mode.name:<9} {share(m['start_rate_share'])} of the quota, "
                f"{share(m['start_throttled_share'], 1)} of starts throttled; starts per "
                f"{opts.bin_s:g} s around the outage {m['outage']['per_bin'].get('starts')}; "
                f"after the restart {share(w.get('after', {}).get('start_rate_share'))}"
            )
    return {
        "requests": fo.requests,
        "phases": [{"workers": n, "seconds": s} for n, s in fo.phases],
        "quota": {"rate": rate, "burst": burst},
        "kill_at_s": opts.kill_at_s,
        "outage_s": opts.outage_s,
        "baseline_revision": opts.baseline,
        "run": "baseline then current, each on a fresh emulator, queues and Redis",
        **results,
        "wall_s": time.monotonic() - began,
    }


def markdown(figures: Mapping[str, Any]) -> str:
    names = [m.name for m in modes(figures["baseline_revision"]) if m.name in figures]
    labels = {m.name: m.label for m in modes(figures["baseline_revision"])}
    cols = [figures[n] for n in names]

    def row(label: str, fmt: Any) -> list[str]:
        return [label, *(fmt(c) for c in cols)]

    def window(name: str) -> Any:
        return lambda c: share(c["outage"]["windows"].get(name, {}).get("start_rate_share"))

    def throttled(c: Mapping[str, Any]) -> str:
        return f"{share(c['start_throttled_share'], 1)} ({c['start_throttled']}/{c['start_calls']})"

    def bins(c: Mapping[str, Any]) -> str:
        return " ".join(str(n) for n in c["outage"]["per_bin"].get("starts", []))

    def recovered(c: Mapping[str, Any]) -> str:
        back = c["outage"]["restarted_s"]
        if back is None:
            return "n/a"
        log = c["outage"]["breaker"]
        after = [r["at_s"] - back for r in log if r["event"] == "fleet.recovered"]
        after = [s for s in after if s >= 0]
        return f"{min(after):.1f} to {max(after):.1f} s" if after else "n/a"

    length = figures["outage_s"]
    rows = [
        row("start rate, share of the quota (whole drain)", lambda c: share(c["start_rate_share"])),
        row(f"{length:g} s before the kill", window("before")),
        row("during the outage", window("during")),
        row(f"first {length:g} s after the restart", window("after")),
        row(f"next {length:g} s", window("later")),
        row(f"starts per {cols[0]['outage']['per_bin'].get('bin_s', 5):g} s around it", bins),
        row("back on the shared budget after the restart", recovered),
        row("StartWebRTCContact 429s / calls", throttled),
        row("in the DLQ", lambda c: str(c["dead_letters"])),
        row("requests without a final event", lambda c: str(c["requests_without_final_event"])),
        row("duplicate contacts", lambda c: str(c["duplicate_contacts"])),
    ]
    t = figures.get("targets", {})
    current = figures.get("current", {})
    verdicts = (
        f"Targets (current): >= 92 % of the quota: {verdict(t.get('start_rate_share', {}))} "
        f"({share(current.get('start_rate_share'))}); < 1 % 429s: "
        f"{verdict(t.get('start_throttled_share', {}))}."
    )
    schedule = ", then ".join(
        f"{p['workers']} for {p['seconds']:g} s" if p["seconds"] else f"{p['workers']} to the end"
        for p in figures["phases"]
    )
    quota = figures["quota"]
    return f"""## Fleet mode through a Redis outage, before and after

The fleet scenario's drain ({figures["requests"]} requests; workers {schedule};
StartWebRTCContact {quota["rate"]:g}/s burst {quota["burst"]:g}), with the fleet's redis-server
SIGKILLed {figures["kill_at_s"]:g} s after the first workers started and started again, empty,
{figures["outage_s"]:g} s later on the same port. Both columns ran in one invocation, one after
the other, each on a fresh emulator, queues and Redis: *before* runs the workers from
`orchestrator/` at `{figures["baseline_revision"][:10]}` (extracted with `git archive`, put first on
PYTHONPATH, with the same installed dependencies), *this commit* from the tree.

{table(["", *(labels[n] for n in names)], rows)}

{verdicts}

How measured: starts are the emulator's contacts' CreatedAt; a window's share is its starts over
its length times {quota["rate"]:g}/s. The outage windows start at the kill and at the restart as
the bench did them; "back on the shared budget" is each worker's `fleet.recovered` log line after
the restart.
"""


SCENARIO = Scenario(
    "fleet-outage", "fleet mode through a Redis outage, before and after", OutageOptions(), QUICK,
    measure, markdown, seed=7, variants=VARIANTS,
    targets={"start_rate_share": Target("current.start_rate_share", ">=", 0.92),
             "start_throttled_share": Target("current.start_throttled_share", "<", 0.01)},
)  # fmt: skip
