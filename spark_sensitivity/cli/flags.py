"""Flags every command shares: KEY=VALUE options, --spark-conf, --quiet/--verbose and --config."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

# Spark hashes the seed as a signed 64-bit literal; numpy wants it non-negative.
MAX_SEED = 2**63 - 1
# Draw counts and indexes are 32-bit integers in the subset's schema.
MAX_SAMPLE_SIZE = 2**31 - 1


def number(
    kind: type, low: float | None = None, high: float | None = None, *, above: bool = False
) -> Callable[[str], int | float]:
    """An argparse type: an int or a finite float in [low, high] ((low, high] when ``above``)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value < low or (above and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def seed_type() -> Callable[[str], int | float]:
    return number(int, 0, MAX_SEED)


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_key_values(group: argparse._ActionsContainer, flag: str, help: str) -> None:
    """A repeatable KEY=VALUE flag, collected as a list of pairs."""
    group.add_argument(flag, action="append", type=key_value, default=[], metavar="KEY=VALUE", help=help)


def add_config(parser: argparse.ArgumentParser, example: str = "") -> None:
    parser.add_argument(
        "--config",
        help=f"YAML or JSON file of settings, keys named like the flags{example}; flags on the command "
        "line override it",
    )


def add_running(parser: argparse.ArgumentParser, verbose: bool = True) -> argparse._ArgumentGroup:
    """The 'running' group: --spark-conf, --quiet and (when ``verbose``) --verbose. Returned, so a
    command can add its own running flags to it."""
    run = parser.add_argument_group("running")
    add_key_values(run, "--spark-conf", "a Spark setting for the session this command starts, repeatable")
    run.add_argument(
        "--remote",
        metavar="URL",
        help="run over Spark Connect: sc://host:15002, or local[2] to start a server here (default: the "
        "SPARK_REMOTE variable; unset = a classic session)",
    )
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print errors only")
    if verbose:
        verbosity.add_argument("--verbose", action="store_true", help="debug logs, and Spark's INFO logs")
    return run
