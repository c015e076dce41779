"""Prose the lead writes for RESULTS.md. Edit these constants, then rerun `make bench` (or
`python -m bench.report` to re-render RESULTS.md from results.json without rerunning anything)."""

from __future__ import annotations

#: Scenario 2: what the FIFO queue model implies (the oldest waiting contact is the next to be
#: connected) and whether the polling policy uses it. Markdown; rendered under its own heading.
FIFO_POLICY_NOTE = ""

#: The "What limits these figures" section. Markdown.
LIMITS_NOTE = ""

#: Shown in place of an empty note.
PENDING = "*(To be written by the lead: edit `{name}` in `bench/notes.py`.)*"
