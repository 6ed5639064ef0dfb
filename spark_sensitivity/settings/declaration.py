"""How a setting is declared (a config dataclass field with metadata) and checked."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

# The most values a setting that takes ``several`` accepts: each one is a pass over the data.
MAX_SEVERAL = 20


@dataclass(frozen=True)
class Setting:
    """One setting: its field name, default, help and check, and how the CLI and Params name it."""

    name: str
    default: Any
    help: str
    group: str
    # int, float, str, bool (a switch), dict (repeatable KEY=VALUE) or list (a repeatable flag, each
    # value checked against the choices)
    kind: type = str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    above: bool = False  # low itself is excluded
    below: bool = False  # high itself is excluded
    flag: str | None = None  # the flag when it is not --name-with-dashes
    inverted: bool = False  # a switch that sets the setting to False (--skip-id-check)
    param: str | None = None  # the Param of the pyspark.ml face
    required: bool = False
    metavar: str | None = None
    argname: str | None = None  # the argparse name (and config-file key) when not the flag's
    several: bool = False  # also takes a comma-separated list of values, as an ascending tuple

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """The argparse attribute the flag fills."""
        return self.argname or self.option.lstrip("-").replace("-", "_")

    def problem(self, value: Any, shown: str | None = None) -> str | None:
        """What is wrong with ``value`` ('must be at least 1, got 0'), or None; ``shown`` is how the
        user wrote the value."""
        if value is None or self.kind in (bool, dict, str) and self.choices is None:
            return None
        if self.kind is list:
            wrong = [one for one in value if self.choices is not None and one not in self.choices]
            return f"must be one of {', '.join(map(str, self.choices))}, got {wrong[0]!r}" if wrong else None
        if self.several and isinstance(value, tuple):
            if not 1 <= len(value) <= MAX_SEVERAL:
                return f"takes 1 to {MAX_SEVERAL} values, got {len(value)}"
            return next(filter(None, (self.problem(one) for one in value)), None)
        if self.choices is not None:
            if value not in self.choices:
                return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.kind is int and value != int(value):
            return f"must be an integer, got {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {shown or value!r}"
        if self.above and self.below and not self.low < value < self.high:
            return f"must be in ({self.low}, {self.high}), got {shown or value}"
        if self.low is not None and (value < self.low or (self.above and value == self.low)):
            return f"must be {'above' if self.above else 'at least'} {self.low}, got {shown or value}"
        if self.high is not None and (value > self.high or (self.below and value == self.high)):
            return f"must be {'below' if self.below else 'at most'} {self.high}, got {shown or value}"
        return None

    def check(self, value: Any, label: str | None = None) -> Any:
        """``value`` when it is allowed; else ValueError naming the setting (``label`` or its flag)."""
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(f"{label or self.option} {problem}")
        return value

    def parse(self, text: str) -> Any:
        """The value of a command-line or config-file string; ValueError with a short reason. A
        setting that takes ``several`` values reads "100,400,1600" as the tuple (100, 400, 1600)."""
        if self.several and "," in text:
            values = tuple(self.parse(part.strip()) for part in text.split(","))
            if len(set(values)) < len(values):
                raise ValueError(f"lists a value twice: {text!r}")
            if len(values) > MAX_SEVERAL:
                raise ValueError(
                    f"takes at most {MAX_SEVERAL} values (each is a pass over the data), got {len(values)}"
                )
            return tuple(sorted(values))
        try:
            value = self.kind(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            raise ValueError(f"expected {what}, got {text!r}") from None
        problem = None if self.choices is not None else self.problem(value, text)
        if problem is not None:
            raise ValueError(problem)
        return value


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    group: str,
    kind: type = str,
    **declared: Any,
) -> Any:
    """A config field declaring its setting (the arguments of :class:`Setting` but its name)."""
    required = default is dataclasses.MISSING
    info = {"help": help, "group": group, "kind": kind, "required": required, **declared}
    if kind in (dict, list):
        return field(default_factory=kind, metadata=info)
    return field(default=None if required else default, metadata=info)


def restated(config: type, name: str, default: Any = None, help: str = "", group: str | None = None) -> Any:
    """The field ``name`` of ``config`` declared again with another default and help (and group),
    its check, flag and Param unchanged (dataclasses.MISSING makes it required)."""
    base = next(f for f in dataclasses.fields(config) if f.name == name)
    info = {**base.metadata, "help": help, "required": default is dataclasses.MISSING}
    if group is not None:
        info["group"] = group
    if info["kind"] in (dict, list):
        return field(default_factory=info["kind"], metadata=info)
    return field(default=None if info["required"] else default, metadata=info)


def settings_of(config: type | Any) -> dict[str, Setting]:
    """The declared settings of a config class (or instance), by field name, in declaration order."""
    return {
        f.name: Setting(
            name=f.name,
            default=f.metadata["kind"]() if f.metadata["kind"] in (dict, list) else f.default,
            **f.metadata,
        )
        for f in dataclasses.fields(config)
    }


def check_settings(config: Any) -> None:
    """ValueError naming the first setting of ``config`` whose value is not allowed."""
    for name, declared in settings_of(config).items():
        value = getattr(config, name)
        if declared.required and value is None:
            raise ValueError(f"{declared.option} is required")
        declared.check(value)


# A setting's name in a message: not part of a longer word or of a hyphenated one ("k" but not "k-means").
_NAME = r"(?<![\w-]){}(?![\w=-])"


class SettingError(ValueError):
    """A value a setting does not allow, or a run the settings make impossible.

    The message names the settings as library callers set them (the Param name, ``fitFraction``, or
    the field name where there is no Param); ``names`` lists them, so the command line can show its
    flags instead (:meth:`naming`).
    """

    def __init__(self, message: str, *names: str):
        super().__init__(message)
        self.names = names

    def naming(self, flags: dict[str, str]) -> str:
        """The message with each of its setting names replaced by ``flags[name]`` (``--fit-fraction``)."""
        message = str(self)
        for name in self.names:
            if name in flags:
                message = re.sub(_NAME.format(re.escape(name)), flags[name], message)
        return message
