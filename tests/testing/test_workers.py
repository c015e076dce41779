"""The worker pool with stand-in processes (a few lines of Python that log, and exit on SIGTERM or
ignore it): what it records of each one and how it stops them. The real `orchestrator run` workers
are the chaos soak's, the backlog test's and the fleet test's."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from orchestrator.testing.processes import child_env
from orchestrator.testing.waiting import eventually
from orchestrator.testing.workers import quota_settings, worker_env, worker_pool

#: Logs a JSON line, then the receiving marker, exits 0 on SIGTERM (or ignores it if asked).
STAND_IN = """
import json, os, signal, sys, time
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(json.dumps({"event": "worker.started", "max_waiting_to_start": 3}), flush=True)
print(json.dumps({"event": "queue.redrive_policy"}), flush=True)
while True:
    time.sleep(0.05)
"""
ARGV = [sys.executable, "-c", STAND_IN]


async def test_a_replaced_worker_is_signalled_timed_and_logged(tmp_path: Path) -> None:
    async with worker_pool(child_env(), tmp_path, argv=ARGV) as pool:
        first, second = await pool.start(2)
        await eventually(first.receiving, within=20, message="the first to be up")
        victim, replacement = await pool.replace(signal.SIGTERM)
        assert victim is first
        assert pool.alive == [second, replacement]
        assert await victim.wait(20) == 0
        assert victim.signalled == "SIGTERM"
        assert victim.stop_s is not None and victim.stop_s >= 0
        assert victim.records()[0] == {"event": "worker.started", "max_waiting_to_start": 3}
        assert [w.log_path.name for w in pool.workers] == ["w0.log", "w1.log", "w2.log"]
        for worker in pool.alive:  # signalled earlier, a process just dies
            await eventually(worker.receiving, within=20, message=f"{worker.name} to be up")
        assert await pool.stop(20) == []
        assert pool.alive == []
    assert [w.exit_code for w in pool.workers] == [0, 0, 0]


async def test_stop_names_the_workers_that_outlive_the_deadline_and_close_kills_them(
    tmp_path: Path,
) -> None:
    env = child_env({"IGNORE_TERM": "1"})
    async with worker_pool(env, tmp_path, argv=ARGV) as pool:
        (stubborn,) = await pool.start()
        await eventually(stubborn.receiving, within=20, message="the worker to be up")
        assert await pool.stop(0.5) == [stubborn]
        with pytest.raises(TimeoutError):
            await stubborn.wait(0.1)
    # Killed on the way out, and not counted as a signal the caller sent.
    assert stubborn.exit_code == -signal.SIGKILL
    assert stubborn.signalled == "SIGTERM"


async def test_scaling_down_terminates_the_oldest(tmp_path: Path) -> None:
    async with worker_pool(child_env(), tmp_path, argv=ARGV) as pool:
        await pool.scale_to(3)
        oldest = pool.workers[0]
        await eventually(oldest.receiving, within=20, message="the oldest to be up")
        await pool.scale_to(2)
        assert oldest.signalled == "SIGTERM" and oldest not in pool.alive
        assert len(pool.alive) == 2
        assert await oldest.wait(20) == 0


def test_worker_env_sets_the_peers_the_quotas_and_the_settings_last() -> None:
    env = worker_env(
        sqs_url="http://127.0.0.1:1",
        queue_url="http://127.0.0.1:1/q",
        connect_url="http://127.0.0.1:2",
        events_url="http://127.0.0.1:1/ev",
        quotas={"StartWebRTCContact": (2.0, 5.0)},
        settings={"LOGGING__LEVEL": "DEBUG", "CONNECT__START_WEBRTC_CONTACT_BURST": 1},
    )
    assert env["ORCHESTRATOR_QUEUE__URL"] == "http://127.0.0.1:1/q"
    assert env["ORCHESTRATOR_EVENTS__SQS_QUEUE_URL"] == "http://127.0.0.1:1/ev"
    assert env["ORCHESTRATOR_CONNECT__START_WEBRTC_CONTACT_RATE"] == "2.0"
    assert env["ORCHESTRATOR_CONNECT__START_WEBRTC_CONTACT_BURST"] == "1"
    assert env["ORCHESTRATOR_LOGGING__LEVEL"] == "DEBUG"
    assert quota_settings({"DescribeContact": (10, 15)}) == {
        "CONNECT__DESCRIBE_CONTACT_RATE": 10,
        "CONNECT__DESCRIBE_CONTACT_BURST": 15,
    }


def test_worker_env_tells_an_older_revision_only_the_quotas_it_knows() -> None:
    # The fleet-outage benchmark's baseline predates StopContact: a setting it does not know is
    # a configuration error that stops its workers at once.
    quotas = {"StartWebRTCContact": (2.0, 5.0), "StopContact": (2.0, 5.0)}
    env = worker_env(
        sqs_url="http://127.0.0.1:1",
        queue_url="http://127.0.0.1:1/q",
        connect_url="http://127.0.0.1:2",
        quotas=quotas,
        operations={"StartWebRTCContact"},
    )
    assert env["ORCHESTRATOR_CONNECT__START_WEBRTC_CONTACT_RATE"] == "2.0"
    assert not [name for name in env if name.startswith("ORCHESTRATOR_CONNECT__STOP_CONTACT")]
