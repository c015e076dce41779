"""config.example.toml and docs/settings-reference.md are generated from the settings model and
kept up to date."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from pydantic import BaseModel

from orchestrator.daemon import settings_docs
from orchestrator.daemon.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / settings_docs.EXAMPLE
REFERENCE = ROOT / settings_docs.REFERENCE


def model_keys() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        section = field.annotation
        assert isinstance(section, type)
        assert issubclass(section, BaseModel)
        out[name] = list(section.model_fields)
    return out


def test_the_generated_files_are_up_to_date() -> None:
    stale = [str(path.relative_to(ROOT)) for path in settings_docs.stale(ROOT)]
    assert not stale, (
        f"{stale} out of date with the settings model: run `{settings_docs.REGENERATE}`"
    )


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.daemon.settings_docs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_names_each_stale_file_and_the_command_and_write_regenerates_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.example.toml").write_text("# an old copy\n")
    checked = run_generator("--check", "--root", str(tmp_path))
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [
        f"{tmp_path / path} is out of date: run `{settings_docs.REGENERATE}`"
        for path in (settings_docs.EXAMPLE, settings_docs.REFERENCE)
    ]

    assert run_generator("--write", "--root", str(tmp_path)).returncode == 0
    assert (tmp_path / "config.example.toml").read_text() == EXAMPLE.read_text()
    assert (tmp_path / "docs/settings-reference.md").read_text() == REFERENCE.read_text()
    assert run_generator("--check", "--root", str(tmp_path)).returncode == 0


def example_entries(text: str) -> dict[str, dict[str, str]]:
    """Each section's keys in the example, set or commented out (`# key = value`)."""
    entries: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            section = header.group(1)
            entries[section] = {}
        entry = re.fullmatch(r"(?:# )?(\w+) = (.*?)(?:  # .*)?", line)
        if entry and section:
            entries[section][entry.group(1)] = line.removeprefix("# ")
    return entries


def test_the_example_has_every_key_in_the_models_order_and_only_the_queue_url_set() -> None:
    text = EXAMPLE.read_text()
    entries = example_entries(text)
    assert {section: list(keys) for section, keys in entries.items()} == model_keys()
    set_keys = {section: keys for section, keys in tomllib.loads(text).items() if keys}
    assert set_keys == {
        "queue": {"url": "https://sqs.us-east-1.amazonaws.com/123456789012/call-requests"}
    }


def test_the_example_loads_as_the_defaults() -> None:
    loaded = load_settings(EXAMPLE)
    defaults = Settings.model_validate({"queue": {"url": loaded.queue.url}})
    assert loaded.model_dump() == defaults.model_dump()


def test_every_commented_out_line_of_the_example_is_a_valid_setting(tmp_path: Path) -> None:
    entries = example_entries(EXAMPLE.read_text())
    uncommented = "\n".join(
        f"[{section}]\n" + "\n".join(lines.values()) for section, lines in entries.items()
    )
    config = tmp_path / "everything.toml"
    config.write_text(uncommented)
    settings = load_settings(config)
    assert settings.contact_events.queue_url  # the examples of unset keys were taken
    assert settings.connect.instance_id == "11111111-2222-3333-4444-555555555555"
    assert settings.queue.max_in_flight == 1000  # and the defaults


def test_the_reference_has_a_heading_and_a_table_row_for_every_key() -> None:
    text = REFERENCE.read_text()
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        heading = re.fullmatch(r"## \[(\w+)\]", line)
        if heading:
            section = heading.group(1)
            found[section] = []
        row = re.match(r"\| `(\w+)` \|", line)
        if row:
            found[section].append(row.group(1))
    assert found == model_keys()
    assert "| `max_in_flight` | integer | `1000` | `in [1, 100000]` |" in text
    assert "| `url` | string | required |" in text
