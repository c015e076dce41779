"""The benchmark suite of contact-orchestrator (`make bench`, `make bench-quick`).

Four scenarios, each against the Connect emulator running in its own process, so that only the
client's cost is measured:

1. `quota`: how close the real daemon path gets to Connect's StartWebRTCContact quota;
2. `detection`: how fast agent connections are noticed when a DescribeContact budget is shared by
   many waiting contacts, against a round-robin poller under the same budget;
3. `scale`: memory, CPU and event-loop lag with thousands of contacts watched by one process;
4. `naive`: the thread-per-contact boto3 implementation users write instead, on 2 and 3.

`python -m bench --help` lists the sizes; `bench/RESULTS.md` holds the last full run.
"""
