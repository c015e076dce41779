"""`python -m orchestrator` and the `orchestrator` command.

The entry point stays light: before anything heavy is imported it makes SIGTERM and SIGINT end
the process quietly (exit status 0: nothing was received yet), so a pod stopped during start-up
does not die by the signal. The daemon's event loop replaces these handlers before it builds
anything (a SystemExit raised inside its task groups would end it with a traceback): a signal
then ends the start-up quietly, or once the worker runs only asks it to stop.
"""

from __future__ import annotations

import signal
from types import FrameType


def _stopped_before_start(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> int:
    signal.signal(signal.SIGTERM, _stopped_before_start)
    signal.signal(signal.SIGINT, _stopped_before_start)
    from orchestrator.cli import main as cli_main  # noqa: PLC0415 (after the handlers)

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
