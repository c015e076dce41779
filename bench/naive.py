"""What users write instead: a thread per contact, plain boto3, polling every 2 seconds.

This is the shape of AWS's public samples (an AWS blog's unified voice/video/chat sample polls
DescribeContact every 2 s with no backoff and no deadline), made as fair as it can be:

* ONE boto3 Connect client for the process, created with boto3's defaults (botocore's legacy
  retry mode: up to 5 attempts with randomised exponential backoff on 429s and 5xx; a pool of
  10 connections), shared by every thread, as Lambda-style samples share a module-level client;
* one thread per call: StartWebRTCContact (boto3 fills in a fresh ClientToken), then
  every 2 s DescribeContact, until `AgentInfo.ConnectedToAgentTimestamp` (then one
  StartScreenSharing) or `DisconnectTimestamp` appears;
* every call's exception is caught and logged, and polling goes on; nothing is shared between
  threads: no rate budget, no backoff of its own, no deadline (the harness stops the threads
  when the scenario is over and counts those still polling).

`run` runs it in its own process (`python -m bench.naive OPTIONS-AS-JSON`), which prints its
figures (CPU, peak RSS, counters) as one JSON line for the benchmark.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

from orchestrator.testing.requests import REGION

from .harness import child_main, request_params, run_child
from .measure import cpu_seconds, peak_rss_bytes, process_cpu_seconds, rss_bytes

log = logging.getLogger("naive")


#: What the threads count (as the figures name them).
COUNTS = (
    "started", "start_failures", "describe_calls", "describe_errors", "connected_seen",
    "disconnected_seen", "screen_sharing_started", "screen_sharing_failures",
    "still_polling_at_deadline", "peak_threads",
)  # fmt: skip


class NaiveOrchestrator:
    def __init__(self, client: Any, interval_s: float = 2.0) -> None:
        self.client = client
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def handle_call(self, index: int) -> None:
        params = request_params(index)
        instance_id = params["InstanceId"]
        try:
            contact_id = self.client.start_web_rtc_contact(**params)["ContactId"]
        except Exception:
            log.exception("StartWebRTCContact failed")
            self._count("start_failures")
            return
        self._count("started")
        while not self.stop.wait(self.interval_s):
            try:
                self._count("describe_calls")
                contact = self.client.describe_contact(
                    InstanceId=instance_id, ContactId=contact_id
                )["Contact"]
            except Exception as exc:
                log.warning("DescribeContact failed: %s", exc)
                self._count("describe_errors")
                continue
            if contact.get("AgentInfo", {}).get("ConnectedToAgentTimestamp"):
                self._count("connected_seen")
                try:
                    self.client.start_screen_sharing(InstanceId=instance_id, ContactId=contact_id)
                    self._count("screen_sharing_started")
                except Exception as exc:
                    log.warning("StartScreenSharing failed: %s", exc)
                    self._count("screen_sharing_failures")
                return
            if contact.get("DisconnectTimestamp"):
                self._count("disconnected_seen")
                return
        self._count("still_polling_at_deadline")

    def run(self, contacts: int, deadline_s: float) -> None:
        threads = [
            threading.Thread(target=self.handle_call, args=(i,), name=f"call-{i}")
            for i in range(contacts)
        ]
        for thread in threads:
            thread.start()
        self.counters["peak_threads"] = threading.active_count()
        deadline = time.monotonic() + deadline_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                continue
            self.stop.set()
            thread.join()


async def run(
    endpoint_url: str, emulator_pid: int, contacts: int, deadline_s: float, log_path: Path
) -> dict[str, Any]:
    """This baseline in its own process, until `deadline_s` at most: its figures."""
    options = {
        "endpoint_url": endpoint_url,
        "emulator_pid": emulator_pid,
        "contacts": contacts,
        "deadline_s": deadline_s,
    }
    return await run_child("bench.naive", options, log_path, timeout_s=deadline_s + 120)


def measure(options: Mapping[str, Any]) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING, format="%(threadName)s %(levelname)s %(message)s")
    client = boto3.client("connect", region_name=REGION, endpoint_url=options["endpoint_url"])
    # Load what the first call would load lazily, so the baseline holds it.
    client.meta.service_model.operation_model("DescribeContact")
    naive = NaiveOrchestrator(client, options.get("interval_s", 2.0))
    baseline_rss = rss_bytes()
    cpu_before = cpu_seconds()
    emulator_pid = options["emulator_pid"]
    emu_before = process_cpu_seconds(emulator_pid)
    started = time.monotonic()
    naive.run(options["contacts"], options["deadline_s"])
    wall = time.monotonic() - started
    return {
        **{k: naive.counters[k] for k in COUNTS},
        "contacts": options["contacts"],
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu_before,
        "baseline_rss_bytes": baseline_rss,
        "peak_rss_bytes": peak_rss_bytes(),
        "emulator_cpu_s": process_cpu_seconds(emulator_pid) - emu_before,
    }


if __name__ == "__main__":
    child_main(measure)
