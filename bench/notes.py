"""Prose for RESULTS.md. Edit these constants, then rerun `make bench` (or
`python -m bench.report` to re-render RESULTS.md from results.json without rerunning anything)."""

from __future__ import annotations

#: Scenario 2: what the FIFO queue model implies (the oldest waiting contact is the next to be
#: connected) and whether the polling policy uses it. Markdown; rendered under its own heading.
FIFO_POLICY_NOTE = """\
A Connect queue hands the next free agent to the contact that has waited longest. Two things
follow for a worker that watches many contacts in one queue under a fixed DescribeContact
budget:

* **Who is worth polling.** The probability that a contact connects in the next second is
  concentrated at the head of the queue: the oldest waiting contacts are next, the youngest will
  not connect until everyone ahead of them has. Polling everyone in turn (round-robin) or backing
  off per contact (exponential backoff polls a contact *less* the longer it waits) spends most of
  the budget on contacts that cannot have changed.
* **What a connection implies.** Once a contact enqueued at *T* is seen connected, every contact
  enqueued before *T* has most likely been served (or has hung up) too.

**The policy uses both** (`[watch] queue_aware = true`, the default; `orchestrator/frontier.py`):
after its first poll a contact knows its queue and enqueue time; the `head_contacts` (2) oldest
waiting contacts of each queue poll every `head_interval_s` (1 s) instead of backing off; a
contact seen connected wakes the oldest contacts enqueued before it and the new heads, which poll
at once (so detections chain along the queue at the budget's speed); and when the budget is
short, waiting polls are served oldest contact first. Everyone else keeps the backoff, which is
the fallback when a queue is not FIFO: then the heads cost 2 polls a second per queue and each
connection at most 2 extra polls. The *queued* rows above are where this shows: contacts that
connect one by one as agents free up are noticed within a few seconds, against half a
round-robin cycle. The *first wave* (every agent taking a contact at the same instant) cannot be
helped by ordering: each of those contacts needs one poll and the budget allows 10 a second,
whoever polls; there the policy is slightly behind round-robin because it waits
`first_delay_s` (2 s) before a contact's first poll and spends a few polls on heads.
"""

#: The "What limits these figures" section. Markdown.
LIMITS_NOTE = """\
* **Connect's quotas, not the worker.** StartWebRTCContact at 2 requests/s (burst 5) caps the
  whole account at 120 new calls a minute; the worker reaches 97 % of it (the 3 % is the
  configured `rate_headroom`, kept so latency jitter does not turn into 429s; the client's burst
  also keeps one token back for the same reason). DescribeContact at 10/s bounds detection: a
  wave of N contacts connecting at the same instant needs N/10 seconds to be noticed by any
  polling design. Only Connect's contact events (EventBridge) can beat that; the watch can be
  woken by them (`ContactNotifier.notify`), but feeding it is left to a later issue.
* **CPU per Connect call.** One worker process spends about 1.2 ms of CPU per Connect call, most
  of it inside aiobotocore and botocore (SigV4 signing, the user-agent string botocore rebuilds
  for every request, response parsing, aiohttp), so a core sustains roughly 800 calls per second.
  A lifecycle costs its polls plus two calls: in the scale scenario, where agents take about two
  minutes, 12.7 polls and 17 ms of CPU. With Connect's default quotas a worker needs a few percent
  of a core. The scale scenario raises the quotas far beyond that (a DescribeContact budget of
  2,000/s, while 10,000 contacts polled every 10 s ask for 1,000/s): the process then spends most
  of a core, its event loop runs late at the peaks (the lag p99 in the table), and it makes about
  560 polls a second instead of 1,000, so detection is later than the schedule promises. When
  quotas are raised that far, run more worker processes (and split `quota_share` between them)
  rather than one bigger one.
* **Memory.** A watched contact costs about 35-40 KiB of RSS (the validated request, its task and
  coroutine frames, the parsed responses, the in-flight bookkeeping). 10,000 contacts take about
  0.4 GiB; size `max_in_flight` and the container's memory limit together.
* **The naive baseline.** Under Connect's real quota (scenario 2) it turns into a 429 storm (97 %
  of its DescribeContact calls throttled) and misses contacts whose calls end before it notices
  them; that is the difference that matters. At equal size with raised quotas (scenario 3) it
  cannot keep its 2-second schedule either: 10,000 threads in one process manage about 590 polls
  a second, 9.7 per contact instead of the 55-65 the schedule implies, which is why its CPU per
  lifecycle and its detection come out close to ours there (it spends about 1.4 ms of CPU per
  call against our 1.2, and 47 KiB per contact against our 37).
* **The machine.** Two cores shared by the worker, the emulators, moto and (in scenario 2) three
  implementations at once; figures vary from run to run by 10-20 %. The emulator runs in its own
  process and used well under a core in every scenario, so it was not the bottleneck.
"""

#: Shown in place of an empty note.
PENDING = "*(To be written by the lead: edit `{name}` in `bench/notes.py`.)*"
