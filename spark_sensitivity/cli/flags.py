"""Command-line flags: those derived from the declared settings (``spark_sensitivity.settings``), and
the ones every command shares (KEY=VALUE options, --spark-conf, --remote, --quiet/--verbose)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from spark_sensitivity.settings import MAX_SEED, Setting, settings_of

Config = TypeVar("Config")


def argument_type(declared: Setting) -> Callable[[str], Any]:
    """The argparse type of a setting: parses and checks with the declaration."""

    def parse(text: str) -> Any:
        try:
            return declared.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = declared.kind.__name__  # argparse names the type in "invalid int value"
    parse.several = declared.several  # a config file may give such a setting as a list
    return parse


def number(kind: type, low: float | None = None, high: float | None = None, *, above: bool = False):
    """An argparse type for a flag that is not a declared setting: an int or a finite float in
    [low, high] ((low, high] when ``above``)."""
    return argument_type(Setting("value", None, "", "", kind=kind, low=low, high=high, above=above))


def seed_type() -> Callable[[str], Any]:
    return number(int, 0, MAX_SEED)


def _help(declared: Setting, required: bool) -> str:
    text = declared.help.replace("%", "%%")  # argparse formats help with %
    if required:
        return f"{text} (required)"
    if declared.kind in (bool, dict) or declared.default is None:
        return text
    return f"{text} (default: {declared.default})"


def add_setting(group: argparse._ActionsContainer, declared: Setting, required: bool | None = None) -> None:
    """The flag of one declared setting; ``required`` overrides the declaration's (for the help)."""
    required = declared.required if required is None else required
    if declared.kind is dict:
        add_key_values(group, declared.option, declared.help)
    elif declared.kind is list:
        group.add_argument(
            declared.option,
            dest=declared.dest,
            action="append",
            choices=declared.choices,
            default=[],
            metavar=declared.metavar,
            help=declared.help.replace("%", "%%"),
        )
    elif declared.kind is bool:
        group.add_argument(declared.option, action="store_true", help=_help(declared, required))
    else:
        group.add_argument(
            declared.option,
            dest=declared.dest,
            type=argument_type(declared),
            choices=declared.choices,
            default=None if required else declared.default,
            metavar=declared.metavar,
            help=_help(declared, required),
        )


def add_settings(
    parser: argparse.ArgumentParser,
    config: type,
    groups: Iterable[str],
    helps: dict[str, str] | None = None,
) -> dict[str, argparse._ArgumentGroup]:
    """The flags of every setting of ``config``, in argument groups ordered as ``groups`` (every
    group the settings use must be named there); ``helps`` replaces the help of some settings.
    Returns the groups, so a command can add flags of its own to them."""
    declared = settings_of(config).values()
    unplaced = {s.group for s in declared} - set(groups)
    if unplaced:
        raise ValueError(f"no place for the settings of group {sorted(unplaced)[0]!r}")
    made = {}
    for title in groups:
        made[title] = parser.add_argument_group(title)
        for one in (s for s in declared if s.group == title):
            if one.name in (helps or {}):
                one = Setting(**{**one.__dict__, "help": helps[one.name]})
            add_setting(made[title], one)
    return made


def required_flags(config: type) -> tuple[str, ...]:
    """The argparse names of the settings ``config`` cannot do without."""
    return tuple(s.dest for s in settings_of(config).values() if s.required)


def config_from_args(config: type[Config], args: argparse.Namespace) -> Config:
    """The config a command line gives: each setting read from its flag."""
    values = {}
    for name, declared in settings_of(config).items():
        value = getattr(args, declared.dest)
        if declared.kind in (dict, list):
            value = declared.kind(value)
        elif declared.inverted:
            value = not value
        values[name] = value
    return config(**values)


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
    add_key_values(
        run,
        "--spark-conf",
        "a Spark setting for the session this command starts, repeatable; given to the driver's JVM "
        "at its launch when this command starts one, so spark.driver.memory works",
    )
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
