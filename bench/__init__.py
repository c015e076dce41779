"""The benchmark suite of contact-orchestrator: `python -m bench [SCENARIO ...]` (`make bench`,
`make bench-quick`), each scenario against the Connect emulator in processes of its own, recorded
in bench/results.json and rendered in bench/RESULTS.md. `python -m bench --help` lists them."""
