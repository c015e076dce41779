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
from orchestrator.daemon.settings import CONFIG_ENV, QueueSettings, Settings, load_settings
from orchestrator.daemon.stopping import deploy_grace_s
from tests.deploy._support import (
    DEFAULT_OBSERVABILITY_PORT,
    EXAMPLE_CONFIG,
    SYSTEMD_TEMPLATE,
    SYSTEMD_UNIT,
    check_orchestrator_env,
    duration_s,
    systemd_directives,
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
    grace = Settings.model_fields["shutdown"].default.grace_period_s
    assert svc["KillSignal"] == "SIGTERM"
    wait = QueueSettings.model_fields["wait_time_s"].default
    assert duration_s(svc["TimeoutStopSec"]) >= deploy_grace_s(grace, wait)
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
        tomllib.loads(line.removeprefix("# "))["jsonl_path"]
        for line in example.splitlines()
        if line.lstrip("# ").startswith("jsonl_path")
    ]
    assert Path(suggested).parent == Path("/var/log") / svc["LogsDirectory"]


def verify(unit: Path, tmp_path: Path, instance: str | None = None) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # verify checks ExecStart's binary exists: point it at this environment's console script.
    local = Path(sys.executable).parent / "orchestrator"
    if not local.is_file():
        pytest.skip(f"no {local} to stand in for the installed console script")
    text = unit.read_text().replace(f"ExecStart={VENV}/bin/orchestrator", f"ExecStart={local}")
    path = tmp_path / unit.name
    path.write_text(text)
    if instance is not None:  # a template is verified through one of its instances
        linked = tmp_path / unit.name.replace("@.", f"@{instance}.")
        linked.symlink_to(path.name)
        path = linked
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(path)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    verify(SYSTEMD_UNIT, tmp_path)


# -- the template: N workers per VM ----------------------------------------------------------------

#: What the template may set differently from the single unit: its name and the instance's port.
PER_INSTANCE = {"Description", "Environment", "EnvironmentFile", "DefaultInstance"}


def without_per_instance(unit: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    return {
        section: {k: v for k, v in directives.items() if k not in PER_INSTANCE}
        for section, directives in unit.items()
    }


def instance_environment(port: str) -> dict[str, str]:
    (line,) = systemd_directives(SYSTEMD_TEMPLATE)["Service"]["Environment"]
    return dict(pair.split("=", 1) for pair in shlex.split(line.replace("%i", port)))


def test_template_runs_the_same_hardened_service_as_the_single_unit() -> None:
    """Stop timeout, restarts, ExecStart and hardening never drift between the two files."""
    template = systemd_directives(SYSTEMD_TEMPLATE)
    single = systemd_directives(SYSTEMD_UNIT)
    assert without_per_instance(template) == without_per_instance(single)
    assert "%i" in template["Unit"]["Description"][0]


def test_each_instance_serves_on_the_port_it_is_named_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = {}
    for port in ("9464", "9465"):
        env = check_orchestrator_env(instance_environment(port))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ORCHESTRATOR_QUEUE__URL", "https://sqs.us-east-1.amazonaws.com/1/q")
        ports[port] = load_settings().observability.port
    assert ports == {"9464": 9464, "9465": 9465}
    (default,) = systemd_directives(SYSTEMD_TEMPLATE)["Install"]["DefaultInstance"]
    assert int(default) == DEFAULT_OBSERVABILITY_PORT
    assert instance_environment("9464")["PYTHONUNBUFFERED"] == "1"


def test_instance_file_is_optional_and_read_after_the_shared_one() -> None:
    service = systemd_directives(SYSTEMD_TEMPLATE)["Service"]
    shared = systemd_directives(SYSTEMD_UNIT)["Service"]["EnvironmentFile"]
    assert service["EnvironmentFile"] == [*shared, "-/etc/contact-orchestrator/%i.env"]


def test_systemd_accepts_an_instance_of_the_template(tmp_path: Path) -> None:
    verify(SYSTEMD_TEMPLATE, tmp_path, instance="9465")
