"""Small pieces every command shares: writing output lines and parsing counts."""

from __future__ import annotations

import argparse
import sys

#: exit code for bad input (an invalid config, a missing file, a locked folder)
EXIT_BAD_INPUT = 2


def say(text: str) -> None:
    """Write a line of command output to standard output (the CLI owns the terminal)."""
    sys.stdout.write(f"{text}\n")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value
