"""`python -m bench client --quick` runs end to end and records the client's figures: submit ->
connection data idle and loaded, beside the emulator's own StartWebRTCContact latency and the SQS
server's SendMessage latency.

Only that the figures exist is checked, not their values: a quick run is far too small for them
to mean anything. The run writes into the test's directory, never the committed results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.quick import dig, number, run_quick


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_client_scenario_records_every_figure(tmp_path: Path) -> None:
    results, _ = run_quick(tmp_path, "client", timeout_s=230)

    figures = results["scenarios"]["client"]
    for stat in ("p50", "p95", "max"):
        number(dig(figures, f"emulator_start_s.{stat}"), f"emulator {stat}")
        number(dig(figures, f"sqs_send_s.{stat}"), f"SQS {stat}")
        for run in ("idle", "loaded"):
            number(dig(figures, f"{run}.submit_to_connection_data_s.{stat}"), f"{run} {stat}")
    for run in ("idle", "loaded"):
        assert figures[run]["calls"] == figures[run]["with_connection_data"]
        assert figures[run]["dropped_replies"] == 0
    assert isinstance(dig(figures, "targets.idle_p95_over_emulator_s.pass"), bool)
    markdown = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "## The producer's client: submit -> connection data" in markdown
