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

`python -m bench.naive --endpoint-url URL --contacts N` runs it in its own process and prints
its figures (CPU, peak RSS, counters) as one JSON line for the benchmark.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import boto3

from .common import REGION, isolate_environment, request_params
from .measure import cpu_seconds, peak_rss_bytes, process_cpu_seconds, rss_bytes
from .servers import RESULT_PREFIX

log = logging.getLogger("naive")


@dataclass
class Counters:
    started: int = 0
    start_failures: int = 0
    describe_calls: int = 0
    describe_errors: int = 0
    connected_seen: int = 0
    disconnected_seen: int = 0
    screen_sharing_started: int = 0
    screen_sharing_failures: int = 0
    still_polling_at_deadline: int = 0
    peak_threads: int = 0


class NaiveOrchestrator:
    def __init__(self, client: Any, interval_s: float = 2.0) -> None:
        self.client = client
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.counters = Counters()
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

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
        self.counters.peak_threads = threading.active_count()
        deadline = time.monotonic() + deadline_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                continue
            self.stop.set()
            thread.join()


def command(endpoint_url: str, emulator_pid: int, contacts: int, deadline_s: float) -> list[str]:
    """The argv that runs this baseline in its own process (the benchmarks' child)."""
    return [
        sys.executable,
        "-m",
        "bench.naive",
        "--endpoint-url",
        endpoint_url,
        "--emulator-pid",
        str(emulator_pid),
        "--contacts",
        str(contacts),
        "--deadline-s",
        str(deadline_s),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive")
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--contacts", type=int, required=True)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--deadline-s", type=float, required=True)
    parser.add_argument("--emulator-pid", type=int, default=0)
    args = parser.parse_args(argv)
    isolate_environment()
    logging.basicConfig(level=logging.WARNING, format="%(threadName)s %(levelname)s %(message)s")

    client = boto3.client("connect", region_name=REGION, endpoint_url=args.endpoint_url)
    # Load what the first call would load lazily, so the baseline holds it.
    client.meta.service_model.operation_model("DescribeContact")
    naive = NaiveOrchestrator(client, args.interval)
    baseline_rss = rss_bytes()
    cpu_before = cpu_seconds()
    emu_before = process_cpu_seconds(args.emulator_pid) if args.emulator_pid else float("nan")
    started = time.monotonic()
    naive.run(args.contacts, args.deadline_s)
    wall = time.monotonic() - started
    result = {
        **asdict(naive.counters),
        "contacts": args.contacts,
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu_before,
        "baseline_rss_bytes": baseline_rss,
        "peak_rss_bytes": peak_rss_bytes(),
        "emulator_cpu_s": (
            process_cpu_seconds(args.emulator_pid) - emu_before if args.emulator_pid else None
        ),
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
