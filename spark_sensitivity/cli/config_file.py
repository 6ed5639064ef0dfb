"""Settings from a YAML or JSON config file, turned into defaults that command-line flags override.

A config file may come from anyone, so it is read defensively: at most ``MAX_CONFIG_BYTES``, UTF-8
only, no YAML aliases (an alias bomb expands a few lines into gigabytes), no key twice, strings of at
most ``MAX_STRING_CHARS``, and every value shown in a message cut to ``SHOWN_CHARS``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1 << 20
# Longer than any path (PATH_MAX is 4096) or option value a run needs.
MAX_STRING_CHARS = 4096
SHOWN_CHARS = 60
_KEY_AT_LINE_START = re.compile(rb"^\s*-*([A-Za-z0-9_.-]{1,64})\s*:")


def _shown(value: Any) -> str:
    """``repr(value)``, cut short: a message must never hold an unbounded value."""
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)} entries"
    text = (
        repr(value) if not isinstance(value, str) or len(value) <= SHOWN_CHARS else repr(value[:SHOWN_CHARS])
    )
    return text if len(text) <= SHOWN_CHARS + 2 else text[:SHOWN_CHARS] + "...'"


class ConfigError(ValueError):
    """A config file refused; the message names the file (and the key or line)."""


class _StrictLoader(yaml.SafeLoader):
    """The safe loader without aliases and with each key once per mapping; ``path`` names the file."""

    path = ""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"config file {self.path}: line {event.start_mark.line + 1}: YAML aliases "
                f"(*{str(event.anchor)[:SHOWN_CHARS]}) are not allowed; write each value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                continue  # the safe loader refuses an unhashable key itself
            if isinstance(key, str) and len(key) > MAX_STRING_CHARS:
                raise ConfigError(f"config file {self.path}: a key of {len(key)} characters is too long")
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"config file {self.path}: key {_shown(key)} is set twice (lines {seen[key]} and {line})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def _utf8(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        newline = b"\n"
        end = data.find(newline, error.start)
        line = data[data.rfind(newline, 0, error.start) + 1 : len(data) if end < 0 else end]
        key = _KEY_AT_LINE_START.match(line)
        number = data.count(newline, 0, error.start) + 1
        where = f"line {number}, key {key.group(1).decode()!r}" if key else f"line {number}"
        raise ConfigError(
            f"config file {path} is not UTF-8 (byte 0x{data[error.start]:02x} in {where}); save it as UTF-8"
        ) from None


def _read(path: str) -> str:
    try:
        with Path(path).open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB; is it a config file?"
        )
    return _utf8(path, data)


def load_config_file(path: str) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (YAML's safe loader reads both; it builds plain data only)."""
    loader = _StrictLoader(_read(path))
    loader.path = path
    try:
        values = loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError(
            f"config file {path} is not valid YAML or JSON: {str(error).splitlines()[0][:200]}"
        ) from error
    except RecursionError:
        raise ConfigError(f"config file {path} nests its values too deeply") from None
    except ConfigError:
        raise
    except (ValueError, OverflowError) as error:  # e.g. an integer of more digits than Python reads
        raise ConfigError(f"config file {path}: {str(error)[:200]}") from None
    finally:
        loader.dispose()
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of flag names to values")
    return values


def _text(value: Any, key: str, path: str) -> str:
    """``value`` as a flag's text, refused when it is a mapping, a list or too long."""
    if isinstance(value, (dict, list)):
        raise ConfigError(f"config file {path}: {key} must be a single value, got {_shown(value)}")
    text = str(value)
    if len(text) > MAX_STRING_CHARS:
        raise ConfigError(
            f"config file {path}: {key} is {len(text)} characters long, more than {MAX_STRING_CHARS}"
        )
    return text


def _converted(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"config file {path}: {key} must be true or false, got {_shown(value)}")
        return value
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, dict):
            raise ConfigError(f"config file {path}: {key} must be a mapping of KEY: VALUE")
        return [(_text(k, f"a key of {key}", path), _text(v, f"{key}.{k}", path)) for k, v in value.items()]
    if value is None:
        return None
    if isinstance(value, list) and getattr(action.type, "several", False):
        value = ",".join(_text(one, key, path) for one in value)
    text = _text(value, key, path)
    try:
        converted = action.type(text) if action.type is not None else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
        raise ConfigError(f"config file {path}: {key}: {str(error)[:200]}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(
            f"config file {path}: {key} must be one of {list(action.choices)}, got {_shown(value)}"
        )
    return converted


def config_defaults(parser: argparse.ArgumentParser, values: dict[str, Any], path: str) -> dict[str, Any]:
    """Parser defaults from a config mapping whose keys are flag names (``sample-size`` or ``sample_size``)."""
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in actions:
            raise ConfigError(
                f"config file {path}: unknown setting {_shown(key)} (not a flag of this command)"
            )
        if dest in defaults:
            raise ConfigError(
                f"config file {path}: {_shown(key)} sets --{dest.replace('_', '-')} a second time"
            )
        defaults[dest] = _converted(actions[dest], str(key), value, path)
    return defaults
