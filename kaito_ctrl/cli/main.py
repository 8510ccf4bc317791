"""The ``kaito-ctrl`` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kaito_ctrl import __version__
from kaito_ctrl.cli.inputs import CliError

# What a process killed by SIGPIPE reports (128 + 13), as `yes | head` does.
EXIT_BROKEN_PIPE = 141

# Subcommand modules, each with ``register(subparsers)``; a missing one (a room still being built) is skipped.
_SUBCOMMANDS = (
    "kaito_ctrl.cli.run",
    "kaito_ctrl.cli.catalog",
    "kaito_ctrl.cli.render",
    "kaito_ctrl.sandbox.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito-ctrl", description="Kaito workspace operator and GPU provisioner"
    )
    parser.add_argument("--version", action="version", version=f"kaito-ctrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: 0 on success, 1 for a problem in the input (one line naming the file and field),
    2 for a usage error (argparse), 141 when the reader of our output went away (``| head``)."""
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args))
        sys.stdout.flush()
    except CliError as e:
        sys.stdout.flush()
        for line in str(e).splitlines():
            print(f"kaito-ctrl: {line}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader closed the pipe: stop quietly, and point stdout at /dev/null so the interpreter's own
        # flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return status


if __name__ == "__main__":
    sys.exit(main())
