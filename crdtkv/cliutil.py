"""What every ``crdtkv`` subcommand's option parsing shares: one parser class, one error.

A bad option is one line on stderr, ``<prog>: error: <option>: <problem>``,
and exit status 2.  argparse's own ``error`` prints the usage text and exits
from deep inside ``parse_args``; ``ArgParser`` raises ``UsageError`` instead,
so a command checks its options in one place and its tests can call it.

Standard library only: ``crdtkv serve --help`` imports this module, and must
not pay for aiohttp or the benchmark's imports.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["ArgParser", "UsageError", "print_error"]


class UsageError(Exception):
    """A bad option: ``option`` is the flag or environment variable to blame ("" for none)."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}" if option else problem)
        self.option = option


class ArgParser(argparse.ArgumentParser):
    """argparse, but a usage error is an exception carrying one line (``--help`` still exits)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError("", " ".join(message.split()))


def print_error(prog: str, message: str) -> None:
    """``<prog>: error: <message>`` on stderr, folded onto one line."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
