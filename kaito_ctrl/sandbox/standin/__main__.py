"""``python -m kaito_ctrl.sandbox.standin --entrypoint JSON --port N``: one stand-in server on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aiohttp import web

from kaito_ctrl.sandbox.standin import server
from kaito_ctrl.sandbox.standin.entrypoint import Entrypoint
from kaito_ctrl.sandbox.standin.server import banner, make_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaito_ctrl.sandbox.standin")
    parser.add_argument("--entrypoint", required=True, help="the parsed entry point, as JSON")
    parser.add_argument("--port", type=int, required=True, help="local port (bound on 127.0.0.1 only)")
    parser.add_argument("--log-file", type=Path, help="the container log, in CRI format (default: stdout)")
    args = parser.parse_args(argv)
    entry = Entrypoint.from_json(json.loads(args.entrypoint))
    server.CONTAINER_LOG.path = args.log_file
    server.CONTAINER_LOG.say(banner(entry, args.port))
    web.run_app(make_app(entry), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
