"""deploy/systemd/contact-orchestrator.service: a valid unit that stops the worker gracefully."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orchestrator.cli import EXIT_CONFIG, build_parser
from orchestrator.daemon.settings import CONFIG_ENV
from tests.deploy._support import (
    EXAMPLE_CONFIG,
    SYSTEMD_UNIT,
    check_orchestrator_env,
    duration_s,
    systemd_unit,
)

VENV = Path("/opt/contact-orchestrator")
CONFIG = Path("/etc/contact-orchestrator/config.toml")


def service() -> dict[str, str]:
    return dict(systemd_unit()["Service"])


def test_unit_has_the_three_sections() -> None:
    unit = systemd_unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_runs_the_venv_console_script_with_the_config_file() -> None:
    svc = service()
    argv = shlex.split(svc["ExecStart"])
    assert argv[0] == str(VENV / "bin" / "orchestrator")
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.config) == ("run", str(CONFIG))
    env = dict(pair.split("=", 1) for pair in shlex.split(svc["Environment"]))
    # One source for the file's path: --config (an ORCHESTRATOR_CONFIG as well could disagree).
    assert CONFIG_ENV not in check_orchestrator_env(env)
    assert svc["User"] not in ("", "root")


def test_stop_outlasts_the_grace_period_and_failures_restart() -> None:
    svc = service()
    grace = tomllib.loads(EXAMPLE_CONFIG.read_text())["shutdown"]["grace_period_s"]
    assert svc["KillSignal"] == "SIGTERM"
    assert duration_s(svc["TimeoutStopSec"]) >= grace + 10
    assert svc["Restart"] == "on-failure"
    assert duration_s(svc["RestartSec"]) > 0
    # A configuration error exits 2: restarting in a loop cannot fix it.
    assert str(EXIT_CONFIG) in svc["RestartPreventExitStatus"].split()


def test_hardened_but_free_to_write_the_example_event_log() -> None:
    svc = service()
    for option, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert svc[option] == value, option
    # ProtectSystem=strict leaves the file system read-only except the LogsDirectory, which is
    # where config.example.toml suggests [events] jsonl_path.
    example = EXAMPLE_CONFIG.read_text()
    (suggested,) = [
        line.split("=", 1)[1].strip().strip('"')
        for line in example.splitlines()
        if line.lstrip("# ").startswith("jsonl_path")
    ]
    assert Path(suggested).parent == Path("/var/log") / svc["LogsDirectory"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify checks ExecStart's binary exists: point it at this environment's console script.
    local = Path(sys.executable).parent / "orchestrator"
    if not local.is_file():
        pytest.skip(f"no {local} to stand in for the installed console script")
    text = SYSTEMD_UNIT.read_text().replace(
        f"ExecStart={VENV}/bin/orchestrator", f"ExecStart={local}"
    )
    unit = tmp_path / SYSTEMD_UNIT.name
    unit.write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
