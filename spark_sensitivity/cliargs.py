"""Flags every command shares: KEY=VALUE options, --spark-conf, --quiet/--verbose and --config."""

from __future__ import annotations

import argparse


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
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print errors only")
    if verbose:
        verbosity.add_argument("--verbose", action="store_true", help="debug logs, and Spark's INFO logs")
    return run
