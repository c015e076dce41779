"""`python -m bench tracing --quick` runs every mode end to end and records its figures: CPU per
lifecycle in each mode, the overhead against tracing off, the spans the OTLP receiver got.

Only that the figures exist is checked, not their values (a quick run is far too small for them
to mean anything), and what each mode must be: off imports no tracing SDK, the SDK modes trace,
only the OTLP mode exports. The run writes into the test's directory."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.quick import dig, number, run_quick

CONTACTS = 30


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_tracing_run_records_the_cost_of_each_mode(tmp_path: Path) -> None:
    results, _ = run_quick(tmp_path, "tracing", "--set", f"contacts={CONTACTS}", timeout_s=290)

    figures = results["scenarios"]["tracing"]
    modes = figures["modes"]
    assert set(modes) == {"off", "unsampled", "recorded", "otlp"}
    for mode, run in modes.items():
        assert run["lifecycles"] == CONTACTS, mode
        number(run["cpu_ms_per_lifecycle"], f"{mode} CPU per lifecycle")
        assert run["tracing_enabled"] is (mode != "off")
        assert run["sdk_imported"] is (mode != "off")
    assert [m for m, run in modes.items() if run["spans_exported"]] == ["otlp"]
    assert modes["otlp"]["spans_exported"] >= 3 * CONTACTS  # receive, process, Connect calls...
    for mode in ("unsampled", "recorded", "otlp"):
        number(dig(figures, f"overhead.{mode}.cpu_ms_per_lifecycle"), f"{mode} overhead")
    assert math.isfinite(figures["noop_share_of_lifecycle"])
    assert "## Tracing: CPU per lifecycle" in (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
