"""The ``kaito-ctrl`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kaito_ctrl import __version__

# Subcommand modules, each with ``register(subparsers)``; a missing one (a room still being built) is skipped.
_SUBCOMMANDS = ("kaito_ctrl.cli.run", "kaito_ctrl.cli.catalog", "kaito_ctrl.sandbox.commands")


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
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
