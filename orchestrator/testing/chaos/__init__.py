"""Chaos soak: several worker processes on one queue, a faulty Connect, workers killed mid-flight.

Used by tests/testing/chaos/test_chaos.py (the short run of the test suite) and
`python -m bench.soak` (a long one). Everything is real and talks over loopback:

* an SQS server (passed in: the test session's, or one the soak starts), holding a request queue
  whose redrive policy moves a message to a dead-letter queue after `max_receive_count` receives,
  and an events queue every worker's SQS sink writes to;
* the Connect emulator in its own process (`orchestrator emulator`), with 5xx faults, dropped
  connections after the call took effect, added latency, quotas low enough that the workers (each
  given the whole quota: `quota_share = 1.0`) are throttled, abandons, and a cap on concurrent
  calls;
* `orchestrator run` worker processes configured by environment variables, with a short
  visibility timeout so that a killed worker's messages come back quickly.

While the queue drains, a seeded schedule SIGKILLs workers (and SIGTERMs some, a graceful drain) at
random points of progress, starting a replacement each time. Then `check` holds the run to the
promises (see `promises`).

```python
report = await run_chaos(ChaosPlan(requests=100), sqs_url=sqs.url, workdir=tmp_path)
assert report.problems == [], report.render()
```
"""

from orchestrator.testing.chaos.plan import ChaosPlan, Planned
from orchestrator.testing.chaos.promises import check
from orchestrator.testing.chaos.report import ChaosReport, outcome_of
from orchestrator.testing.chaos.run import run_chaos
from orchestrator.testing.poison import Poison

__all__ = ["ChaosPlan", "ChaosReport", "Planned", "Poison", "check", "outcome_of", "run_chaos"]
