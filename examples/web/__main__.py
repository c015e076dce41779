"""`python -m examples.web [--host H] [--port P]`: the reference backend under uvicorn, settings
from the environment (`WebSettings.from_env`). Prints `READY` and its URL once it listens (port 0
picks a free one: the tests do)."""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from examples.web.app import app_from_env

READY = "Web example listening on "


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.web")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    host, port = sock.getsockname()[:2]
    print(f"{READY}http://{host}:{port}", flush=True)
    sys.stdout = sys.stderr  # nobody reads stdout past the announcement
    server = uvicorn.Server(uvicorn.Config(app_from_env(), log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
