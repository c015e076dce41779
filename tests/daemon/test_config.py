"""Configuration: TOML file plus environment, and clear errors naming where a value was set.

The generated example and reference are tested in `test_settings_docs.py`, the mapping of settings
to engine values in `test_settings_mapping.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.daemon.assembly import request_defaults
from orchestrator.daemon.settings import load_settings
from orchestrator.errors import ConfigError
from tests.conftest import ACCESS_KEY, SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/call-requests"


def test_file_loads_and_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text(
        '[queue]\nurl = "https://sqs.local/q"\nmax_in_flight = 50\n[watch]\nmax_wait_s = 120\n'
    )
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__MAX_IN_FLIGHT", "7")
    settings = load_settings(config)
    assert settings.queue.url == "https://sqs.local/q"
    assert settings.queue.max_in_flight == 7  # environment wins
    assert settings.watch.max_wait_s == 120  # file value
    assert settings.watch.first_delay_s == 2.0  # default


def test_environment_alone_is_a_complete_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__URL", "https://requests")
    monkeypatch.setenv("ORCHESTRATOR_CONNECT__QUOTA_SHARE", "0.25")
    monkeypatch.setenv("ORCHESTRATOR_EVENTS__INCLUDE_CONNECTION_DATA", "false")
    settings = load_settings()
    assert settings.connect.quota_share == 0.25
    assert settings.events.include_connection_data is False


def test_config_path_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[queue]\nurl = "https://from-file"\n')
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(config))
    assert load_settings().queue.url == "https://from-file"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "queue.url: required (environment variable ORCHESTRATOR_QUEUE__URL)"),
        (
            {"ORCHESTRATOR_QUEUE__URL": QUEUE, "ORCHESTRATOR_QUEUE__MAX_IN_FLIGHT": "0"},
            "queue.max_in_flight: Input should be greater than or equal to 1",
        ),
        (
            {"ORCHESTRATOR_QUEUE__URL": QUEUE, "ORCHESTRATOR_WATCH__MULTIPLIER": "fast"},
            "watch.multiplier: Input should be a valid number",
        ),
        (
            {"ORCHESTRATOR_QUEUE__URL": QUEUE, "ORCHESTRATOR_AWS__SECRET_ACCESS_KEY": "x"},
            "aws.secret_access_key: not a setting: credentials come only from the standard AWS",
        ),
    ],
)
def test_invalid_configuration_names_the_key(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert expected in str(raised.value)


def test_unknown_keys_and_bad_toml_in_the_file_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[queue]\nurl = "{QUEUE}"\n[connect]\ninstanceid = "typo"\n')
    with pytest.raises(ConfigError, match=r"connect\.instanceid: unknown setting"):
        load_settings(config)
    config.write_text("[queue\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_check_config_prints_effective_settings_with_secrets_masked() -> None:
    result = run_cli(
        "check-config",
        "--config",
        str(EXAMPLE),
        env={"ORCHESTRATOR_EVENTS__SQS_QUEUE_URL": "https://user:hunter2@sqs.local/q"},
    )
    assert result.returncode == 0, result.stderr
    printed: dict[str, Any] = json.loads(result.stdout)
    assert printed["queue"]["max_in_flight"] == 1000
    assert printed["events"]["sqs_queue_url"] == "https://***@sqs.local/q"
    assert "hunter2" not in result.stdout


def test_check_config_exits_2_with_the_reason() -> None:
    result = run_cli("check-config", env={"ORCHESTRATOR_QUEUE__WAIT_TIME_S": "60"})
    assert result.returncode == 2
    assert "queue.url: required" in result.stderr
    assert "queue.wait_time_s: Input should be less than or equal to 20" in result.stderr


def test_run_refuses_to_start_on_invalid_configuration() -> None:
    result = run_cli(
        "run", env={"ORCHESTRATOR_QUEUE__URL": QUEUE, "ORCHESTRATOR_LOGGING__LEVEL": "LOUD"}
    )
    assert result.returncode == 2
    assert "logging.level" in result.stderr


def test_a_default_outside_its_allow_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__URL", QUEUE)
    monkeypatch.setenv("ORCHESTRATOR_CONNECT__INSTANCE_ID", "i-default")
    monkeypatch.setenv("ORCHESTRATOR_CONNECT__ALLOWED_INSTANCE_IDS", '["i-1", "i-2"]')
    with pytest.raises(ConfigError, match="instance_id 'i-default' is not in allowed_instance_ids"):
        load_settings()
    monkeypatch.setenv("ORCHESTRATOR_CONNECT__INSTANCE_ID", "i-2")
    assert request_defaults(load_settings()).allowed_instance_ids == {"i-1", "i-2"}


# -- errors name the place the user wrote ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("ORCHESTRATOR_CONECT__QUOTA_SHARE", "ORCHESTRATOR_CONNECT__QUOTA_SHARE"),
        ("ORCHESTRATOR_QUEUE_URL", "ORCHESTRATOR_QUEUE__URL"),
        ("ORCHESTRATOR_OBSERVABILTY__PORT", "ORCHESTRATOR_OBSERVABILITY__PORT"),
    ],
)
def test_an_environment_variable_naming_no_section_is_refused_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch, name: str, suggestion: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__URL", QUEUE)
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"{name}: not a setting, did you mean {suggestion}?" in str(raised.value)


def test_a_misspelled_key_in_a_variable_gets_the_closest_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__URL", QUEUE)
    monkeypatch.setenv("ORCHESTRATOR_CONNECT__QUOTA_SHAR", "0.5")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert (
        "connect.quota_shar: unknown setting, did you mean quota_share? "
        "(environment variable ORCHESTRATOR_CONNECT__QUOTA_SHAR)"
    ) in str(raised.value)


def test_the_config_path_variable_is_not_mistaken_for_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[queue]\nurl = "{QUEUE}"\n')
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", str(config))
    assert load_settings().queue.url == QUEUE


def test_an_error_in_the_file_names_the_file_section_and_key_not_a_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "orchestrator.toml"
    config.write_text(
        f'[queue]\nurl = "{QUEUE}"\nmax_in_flight = 0\n[conect]\nquota_share = 0.5\n'
        "[connect]\ninstanceid = 'typo'\n"
    )
    monkeypatch.setenv("ORCHESTRATOR_WATCH__MULTIPLIER", "fast")
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    lines = str(raised.value).splitlines()[1:]
    by_key = {line.strip().split(":", 1)[0]: line for line in lines}
    assert by_key["queue.max_in_flight"].endswith(f"(in {config}: [queue] max_in_flight)")
    assert "did you mean instance_id?" in by_key["connect.instanceid"]
    assert by_key["connect.instanceid"].endswith(f"(in {config}: [connect] instanceid)")
    assert "did you mean connect?" in by_key["conect"]
    assert by_key["conect"].endswith(f"(in {config}: [conect])")
    # The variable that overrides the file is named as such.
    assert by_key["watch.multiplier"].endswith(
        "(environment variable ORCHESTRATOR_WATCH__MULTIPLIER)"
    )
    file_lines = [line for line in lines if str(config) in line]
    assert file_lines and not any("environment variable" in line for line in file_lines)


def test_a_required_key_missing_from_the_file_names_both_places(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[watch]\nmax_wait_s = 60\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert (
        f"queue.url: required (set url under [queue] in {config}, or environment variable "
        "ORCHESTRATOR_QUEUE__URL)"
    ) in str(raised.value)


@pytest.mark.parametrize(
    "url", ["call-requests", "sqs.us-east-1.amazonaws.com/1/q", "memory://q", "ftp://h/q"]
)
def test_a_queue_url_that_is_not_http_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__URL", url)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert f"queue.url: not an http(s) URL: {url!r}" in str(raised.value)
    assert "(environment variable ORCHESTRATOR_QUEUE__URL)" in str(raised.value)


def without_aws_credentials() -> dict[str, str]:
    """An environment in which botocore's chain finds nothing (no variables, files, metadata)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORCHESTRATOR_", "AWS_")) or k == "AWS_DEFAULT_REGION"
    }
    env.update(
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
        ORCHESTRATOR_QUEUE__URL=QUEUE,
    )
    return env


def test_check_config_warns_when_no_aws_credentials_can_be_found() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "check-config"],
        capture_output=True,
        text=True,
        env=without_aws_credentials(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queue"]["url"] == QUEUE
    [warning] = result.stderr.splitlines()
    assert warning.startswith("orchestrator check-config: no AWS credentials found")


def test_check_config_is_silent_about_credentials_it_finds_and_never_prints_them() -> None:
    result = run_cli("check-config", env={"ORCHESTRATOR_QUEUE__URL": QUEUE})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert ACCESS_KEY not in result.stdout and SECRET_KEY not in result.stdout


# -- a key in the wrong section --------------------------------------------------------------


def test_a_key_in_the_wrong_section_of_the_file_names_the_section_it_belongs_to(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'describe_contact_burst = 20\n[queue]\nurl = "{QUEUE}"\ndescribe_contact_rate = 5\n'
        "describe_rate = 5\n[fleet]\nendpoint_url = 'http://localhost:4566'\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    lines = str(raised.value).splitlines()[1:]
    by_key = {line.strip().split(":", 1)[0]: line.strip() for line in lines}
    assert by_key["queue.describe_contact_rate"] == (
        "queue.describe_contact_rate: not a setting of [queue]; did you mean [connect] "
        f"describe_contact_rate? (in {config}: [queue] describe_contact_rate)"
    )
    # Not the same name anywhere: the closest one of another section.
    assert "did you mean [connect] describe_contact_rate?" in by_key["queue.describe_rate"]
    assert "did you mean endpoint_url of [aws], [queue], [connect]" in by_key["fleet.endpoint_url"]
    assert by_key["describe_contact_burst"] == (
        "describe_contact_burst: not a section; did you mean [connect] describe_contact_burst? "
        f"(in {config}: describe_contact_burst, outside any section)"
    )


def test_a_variable_for_the_wrong_section_names_the_variable_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__URL", QUEUE)
    monkeypatch.setenv("ORCHESTRATOR_QUEUE__DESCRIBE_CONTACT_RATE", "5")
    monkeypatch.setenv("ORCHESTRATOR_WATCH__QUOTA_SHAR", "0.5")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert (
        "queue.describe_contact_rate: not a setting of [queue]; did you mean "
        "ORCHESTRATOR_CONNECT__DESCRIBE_CONTACT_RATE? "
        "(environment variable ORCHESTRATOR_QUEUE__DESCRIBE_CONTACT_RATE)"
    ) in message
    assert (
        "watch.quota_shar: not a setting of [watch]; did you mean "
        "ORCHESTRATOR_CONNECT__QUOTA_SHARE?"
    ) in message


def test_a_misspelled_key_of_its_own_section_is_still_preferred(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[queue]\nurl = "{QUEUE}"\nmax_in_flite = 5\n')
    with pytest.raises(ConfigError, match=r"queue\.max_in_flite: unknown setting, did you mean "):
        load_settings(config)


# -- where a value came from --------------------------------------------------------------------


def test_each_value_knows_where_it_was_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[queue]\nurl = "{QUEUE}"\n[observability]\nport = 9500\nhost = "::1"\n')
    monkeypatch.setenv("ORCHESTRATOR_OBSERVABILITY__HOST", "127.0.0.2")
    settings = load_settings(config, logging={"level": "DEBUG"})
    assert settings.origin("observability", "port") == f"in {config}: [observability] port"
    assert settings.origin("observability", "host") == (
        "environment variable ORCHESTRATOR_OBSERVABILITY__HOST"
    )
    assert settings.origin("logging", "level") == "given to load_settings"
    assert settings.origin("watch", "jitter") == (
        "the default; set [watch] jitter or environment variable ORCHESTRATOR_WATCH__JITTER to "
        "change it"
    )
