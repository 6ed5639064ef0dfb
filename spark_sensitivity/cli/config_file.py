"""Settings from a YAML or JSON config file, turned into defaults that command-line flags override."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml


def load_config_file(path: str) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (YAML's safe loader reads both; it builds plain data only)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(
            f"config file {path} is not valid YAML or JSON: {str(error).splitlines()[0]}"
        ) from error
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of flag names to values")
    return values


def _converted(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ValueError(f"config file {path}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, dict):
            raise ValueError(f"config file {path}: {key} must be a mapping of KEY: VALUE")
        return [(str(k), str(v)) for k, v in value.items()]
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ValueError(f"config file {path}: {key} must be a single value, got {value!r}")
    try:
        converted = action.type(str(value)) if action.type is not None else str(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
        raise ValueError(f"config file {path}: {key}: {error}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"config file {path}: {key} must be one of {list(action.choices)}, got {value!r}")
    return converted


def config_defaults(parser: argparse.ArgumentParser, values: dict[str, Any], path: str) -> dict[str, Any]:
    """Parser defaults from a config mapping whose keys are flag names (``sample-size`` or ``sample_size``)."""
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in actions:
            raise ValueError(f"config file {path}: unknown setting {key!r} (not a flag of this command)")
        defaults[dest] = _converted(actions[dest], str(key), value, path)
    return defaults
