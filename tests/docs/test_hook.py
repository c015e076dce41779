"""The docs hook (docs/hooks/figures.py): figures from results.json, setting defaults from the
settings model, included markdown; and a real `mkdocs build --strict` of a small site with it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.daemon.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "docs" / "hooks" / "figures.py"


def _load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_figures_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()

RESULTS = {
    "quota_efficiency": 0.9671989930709521,
    "scenarios": {
        "quota": {"finals": {"screen_sharing.started": 300}, "start_calls": 61744},
        "scale": {"samples": [{"rss_mib": 441.0625}]},
    },
}


def test_a_figure_is_found_by_its_dotted_path_even_through_keys_that_hold_dots() -> None:
    assert hook.lookup(RESULTS, "quota_efficiency") == RESULTS["quota_efficiency"]
    assert hook.lookup(RESULTS, "scenarios.quota.finals.screen_sharing.started") == 300
    assert hook.lookup(RESULTS, "scenarios.scale.samples.0.rss_mib") == 441.0625
    for missing in ("scenarios.quota.nope", "scenarios.scale.samples.1.rss_mib", ""):
        with pytest.raises(hook.Missing):
            hook.lookup(RESULTS, missing)


def test_a_value_is_rendered_with_its_format_spec_and_unit() -> None:
    assert hook.render(0.9671989930709521, ".1%") == "96.7 %"
    assert hook.render(0.574775, ".2f", "s") == "0.57 s"
    assert hook.render(93.16, "-", "µs") == "93.2 µs"
    assert hook.render(12345.6) == "12,346"
    assert hook.render(61744) == "61,744"
    assert hook.render(300.0) == "300"
    assert hook.render(12.388682740211486) == "12.4"
    assert hook.render(True) == "true"


def test_a_default_is_read_from_the_settings_model() -> None:
    watch = Settings.model_fields["watch"].annotation
    assert isinstance(watch, type)
    expected = watch.model_fields["first_delay_s"].default

    assert hook.setting_default("watch.first_delay_s") == expected
    assert hook.setting_default("connect.allowed_instance_ids") == []
    for missing in ("watch.nope", "nope.first_delay_s", "queue.url"):  # queue.url: required
        with pytest.raises(hook.Missing):
            hook.setting_default(missing)


def test_placeholders_in_code_are_left_as_written() -> None:
    markdown = (
        "Rate {{ figure a }}, `{{ figure a }}` inline.\n"
        "```\n{{ figure a }}\n# not a heading\n```\n"
        "~~~~\n{{ figure a }}\n~~~~\n"
        "# Heading {{ figure a }}\n"
    )

    out = hook.substitute(markdown, lambda kind, args: f"<{kind}:{args}>")

    assert out == (
        "Rate <figure:a>, `{{ figure a }}` inline.\n"
        "```\n{{ figure a }}\n# not a heading\n```\n"
        "~~~~\n{{ figure a }}\n~~~~\n"
        "# Heading <figure:a>\n"
    )
    assert list(hook.placeholders(markdown)) == [("figure", "a"), ("figure", "a")]


def test_included_headings_are_demoted_outside_code() -> None:
    markdown = "# Title\n## Part\n```sh\n# a shell comment\n```\n###### Deepest\n"

    assert hook.demote_headings(markdown, 1) == (
        "## Title\n### Part\n```sh\n# a shell comment\n```\n###### Deepest\n"
    )


def test_relative_links_are_relocated_and_urls_and_anchors_left_alone() -> None:
    markdown = (
        "![plot](plots/a.png) [docs](docs/page.md#part) [web](https://example.com/x) "
        "[here](#part) [mail](mailto:a@example.com) `[code](plots/b.png)`"
    )

    out = hook.rewrite_links(markdown, lambda target: "moved/" + target)

    assert out == (
        "![plot](moved/plots/a.png) [docs](moved/docs/page.md#part) "
        "[web](https://example.com/x) [here](#part) [mail](mailto:a@example.com) "
        "`[code](plots/b.png)`"
    )
    assert list(hook.link_targets(markdown)) == ["plots/a.png", "docs/page.md"]


def _site(tmp_path: Path, page: str) -> Path:
    """A small MkDocs project using the hook: one page, results, and a report with a plot."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(page, encoding="utf-8")
    (tmp_path / "bench" / "plots").mkdir(parents=True)
    (tmp_path / "bench" / "results.json").write_text(json.dumps(RESULTS), encoding="utf-8")
    (tmp_path / "bench" / "plots" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "bench" / "RESULTS.md").write_text(
        "# Report\n\nEfficiency as measured.\n\n![a plot](plots/a.png)\n", encoding="utf-8"
    )
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: hook test\n"
        f"hooks:\n  - {HOOK}\n"
        "validation:\n  omitted_files: warn\n  unrecognized_links: warn\n  anchors: warn\n",
        encoding="utf-8",
    )
    return tmp_path


def _build(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", "site"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_strict_build_fills_in_figures_defaults_and_an_included_report(
    tmp_path: Path,
) -> None:
    project = _site(
        tmp_path,
        "# Home\n\n"
        "Quota {{ figure quota_efficiency .1% }}, "
        "{{ figure scenarios.quota.finals.screen_sharing.started - starts }}, "
        "first poll after {{ default watch.first_delay_s - s }}.\n\n"
        "{{ include bench/RESULTS.md demote=1 }}\n",
    )

    built = _build(project)

    assert built.returncode == 0, built.stderr
    html = (project / "site" / "index.html").read_text(encoding="utf-8")
    first_delay = hook.render(hook.setting_default("watch.first_delay_s"), "-", "s")
    assert f"Quota 96.7 %, 300 starts, first poll after {first_delay}." in html
    assert "<h2" in html and "Report" in html and "Efficiency as measured." in html
    assert 'src="bench/plots/a.png"' in html
    assert (project / "site" / "bench" / "plots" / "a.png").is_file()


@pytest.mark.parametrize(
    "placeholder",
    [
        "{{ figure scenarios.quota.nope }}",
        "{{ default watch.nope }}",
        "{{ include bench/NOPE.md }}",
    ],
)
def test_a_strict_build_fails_on_a_placeholder_that_names_nothing(
    tmp_path: Path, placeholder: str
) -> None:
    project = _site(tmp_path, f"# Home\n\nValue: {placeholder}\n")

    built = _build(project)

    output = built.stdout + built.stderr
    assert built.returncode != 0
    assert "Aborted with 1 warnings in strict mode" in output
    kind, named = placeholder.split()[1:3]
    assert f"index.md: {kind} '{named}'" in output
