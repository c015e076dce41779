"""The Grafana dashboard and the Prometheus alerts query only what a real worker exposes.

Every PromQL expression (dashboard targets, alerts.yaml, the PrometheusRule) must parse and name
only metrics a real worker serves on /metrics: one runs a couple of requests against the Connect
emulator and the local SQS server and is scraped over HTTP. A labelled metric that has no sample
yet still shows its `# HELP`/`# TYPE` lines, so names come from those lines as well. Where
`promtool` is installed, it checks the rule file and runs its unit tests (alerts.test.yaml).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import promql_parser
import pytest
import yaml

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.observability import serve_observability
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.deploy._support import DEPLOY, one
from tests.support import create_queue_with_dlq, request_body, send_all, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

DASHBOARD = DEPLOY / "grafana" / "contact-orchestrator.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"

#: Series Prometheus makes itself for every scrape target.
PROMETHEUS_SERIES = {"up"}
#: Grafana's built-in variables, as a query sees them once Grafana has filled them in.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
#: Sample suffixes of each metric type in the text exposition.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


# -- the files -----------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_expressions() -> list[str]:
    exprs = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    (group,) = yaml.safe_load(ALERTS.read_text())["groups"]
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def every_expression() -> list[str]:
    rule_groups = one("PrometheusRule")["spec"]["groups"]
    operator_rules = [rule["expr"] for group in rule_groups for rule in group["rules"]]
    return [*dashboard_expressions(), *(r["expr"] for r in alert_rules()), *operator_rules]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (parsing it, so a bad one fails here)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def exposed_names(text: str) -> set[str]:
    """Sample names of a /metrics body, plus those its HELP/TYPE lines promise."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            base = name.removesuffix("_total") if kind == "counter" else name
            names |= {name, *(base + suffix for suffix in SUFFIXES.get(kind, ()))}
        elif line.startswith("# HELP "):
            names.add(line.split(maxsplit=3)[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# -- a real worker's /metrics --------------------------------------------------------------------


@pytest.fixture
async def scraped(emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient) -> str:
    """/metrics of a worker that ran two requests (one with screen sharing) to the end."""
    queue, _ = await create_queue_with_dlq(sqs_client)
    events = (await sqs_client.create_queue(QueueName=f"{queue.rsplit('/', 1)[-1]}-events"))[
        "QueueUrl"
    ]
    await send_all(sqs_client, queue, [request_body("plain"), request_body("shares-screen")])
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        events={"sqs_queue_url": events},
        observability={"enabled": True, "host": "127.0.0.1", "port": 0},
    )
    metrics = Metrics()
    async with (
        open_worker(settings, metrics=metrics) as worker,
        aiohttp.ClientSession() as http,
        anyio.create_task_group() as tg,
    ):
        base: str = await tg.start(
            serve_observability, settings.observability, worker, metrics, emulator.url
        )
        await worker.run(drain=True)
        async with http.get(base + "/metrics") as response:
            assert response.status == 200
            body = await response.text()
        tg.cancel_scope.cancel()
    assert metrics.value("orchestrator_messages_acknowledged_total") == 2
    return body


async def test_every_expression_names_only_metrics_a_worker_exposes(scraped: str) -> None:
    exposed = exposed_names(scraped) | PROMETHEUS_SERIES
    used: set[str] = set()
    for expr in every_expression():
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        unknown = names - exposed
        assert not unknown, f"{expr!r} names metrics no worker exposes: {sorted(unknown)}"
        used |= names
    # The kit watches the worker's main signals, not a corner of them.
    for needed in (
        "orchestrator_requests_total",
        "orchestrator_connect_calls_total",
        "orchestrator_agent_detection_delay_seconds_bucket",
        "orchestrator_fleet_degraded",
        "orchestrator_contact_events_total",
    ):
        assert needed in used, needed


def test_exposition_reader_accepts_names_from_help_and_type_lines() -> None:
    text = (
        "# HELP orchestrator_requests_total Requests\n"
        "# TYPE orchestrator_requests_total counter\n"
        "# HELP lag_seconds Lag\n"
        "# TYPE lag_seconds histogram\n"
        'lag_seconds_bucket{le="0.1"} 1.0\n'
    )
    names = exposed_names(text)
    assert {"orchestrator_requests_total", "lag_seconds_count", "lag_seconds_sum"} <= names


# -- the dashboard -------------------------------------------------------------------------------


def test_dashboard_covers_the_operators_questions() -> None:
    titles = {panel["title"] for panel in dashboard_panels()}
    assert {
        "Request outcomes",
        "Lifecycles in flight and waiting to start",
        "Time to agent",
        "Detection delay by via",
        "DescribeContact per contact",
        "Connect calls by result",
        "Rate budget",
        "Event publishes and failures",
        "Receive errors and deployment faults",
        "Event-loop lag",
        "Contact events",
        "Fleet",
    } <= titles
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_queries_the_chosen_datasource_and_jobs() -> None:
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert variables == {"datasource", "job"}
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])


# -- the alerts ----------------------------------------------------------------------------------


def test_prometheus_rule_carries_exactly_the_rule_file() -> None:
    assert one("PrometheusRule")["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_every_alert_has_a_severity_a_summary_and_a_unit_test() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == [ALERTS.name]
    firing: dict[str, int] = {}
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            expected = check["exp_alerts"]
            if expected:
                firing[check["alertname"]] = firing.get(check["alertname"], 0) + 1
                # A healthy neighbour in the same input does not fire.
                assert len(case["input_series"]) > len(expected), case["name"]
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert firing.get(rule["alert"]), f"{rule['alert']}: no promtool test makes it fire"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not on PATH (apt-get install prometheus, or Prometheus' tarball)")
    return found


def run(command: list[str], cwd: Path) -> tuple[int, str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def test_promtool_accepts_both_rule_files(tmp_path: Path) -> None:
    tool = promtool()
    operator = tmp_path / "prometheusrule-spec.yaml"
    operator.write_text(yaml.safe_dump(one("PrometheusRule")["spec"]))
    for path in (ALERTS, operator):
        code, output = run([tool, "check", "rules", str(path)], tmp_path)
        assert code == 0, output


def test_promtool_unit_tests_fire_and_hold_each_alert() -> None:
    tool = promtool()
    code, output = run([tool, "test", "rules", ALERT_TESTS.name], ALERT_TESTS.parent)
    assert code == 0, output
