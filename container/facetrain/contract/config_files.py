"""Read the `cfg` channel as data: `constants.py` through `ast`, JSON and YAML through safe loaders.

Nothing from the channel is ever executed or imported. What is parsed is bounded, in the job and the
validate Lambda alike: each file at most MAX_CONFIG_BYTES, values nested at most MAX_DEPTH levels, no YAML
aliases (a few hundred bytes of anchors and aliases can expand to gigabytes); a file past a bound is a
ConfigError naming it, never a RecursionError or an exhausted memory.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import yaml

from .hyperparameters import MAX_VALUE_DEPTH, nested_deeper_than
from .shorten import clip, shorten

CONSTANTS_FILE = "constants.py"
DATA_SUFFIXES = (".json", ".yaml", ".yml")
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = MAX_VALUE_DEPTH  # the same bound as for hyperparameters


class ConfigError(ValueError):
    """A config file that cannot be read as plain data."""


class _BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases and with at most MAX_DEPTH nested collections."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases (*name) are not allowed in config files; "
                "write the value out"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ConfigError(f"values are nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


def _check_depth(value: object, where: str) -> None:
    if nested_deeper_than(value, MAX_DEPTH):
        raise ConfigError(f"{where}: values are nested more than {MAX_DEPTH} levels deep")


def decode_text(data: bytes, name: str) -> str:
    """A config file's bytes as text: at most MAX_CONFIG_BYTES, UTF-8; else a ConfigError naming it."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{name} is {len(data)} bytes; config files must be at most {MAX_CONFIG_BYTES} bytes"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None


def parse_constants(source: str, filename: str = CONSTANTS_FILE) -> dict[str, object]:
    """Return the top-level `NAME = <literal>` assignments of a constants.py, keys lower-cased.

    Docstrings and comments are allowed; any other statement (import, call, def, …) is refused with the
    line that holds it, since the file is data and is never run.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ConfigError(f"{filename} line {exc.lineno}: not valid Python syntax ({exc.msg})") from None
    except (RecursionError, MemoryError):
        raise ConfigError(
            f"{filename}: expressions are nested too deeply to read; write plain `NAME = value` lines"
        ) from None
    values: dict[str, object] = {}
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # module docstring
        target = _assignment_target(node)
        if target is None:
            raise ConfigError(
                f"{filename} line {node.lineno}: only `NAME = value` lines with literal values are allowed "
                f"(found {type(node).__name__}); the file is read as data and never run"
            )
        try:
            values[target.lower()] = ast.literal_eval(node.value)  # type: ignore[attr-defined]
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise ConfigError(
                f"{filename} line {node.lineno}: the value of {shorten(target)} is not a literal "
                "(numbers, strings, lists, tuples, dicts, True/False/None only); the file is never run"
            ) from None
        _check_depth(values[target.lower()], f"{filename} line {node.lineno} ({shorten(target)})")
    return values


def _assignment_target(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id
    return None


def parse_data_text(text: str, name: str) -> dict[str, object]:
    """Load a JSON (`name` ends in .json) or YAML mapping of settings; `name` is used in messages."""
    suffix = PurePosixPath(name).suffix
    try:
        data = json.loads(text) if suffix == ".json" else yaml.load(text, Loader=_BoundedSafeLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    except (RecursionError, MemoryError):
        raise ConfigError(f"{name}: values are nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{name}: not valid {suffix[1:].upper()} ({clip(str(exc))})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: must hold a mapping of setting names to values")
    _check_depth(data, name)
    return {str(key): value for key, value in data.items()}


def parse_data_file(path: Path) -> dict[str, object]:
    """Load a JSON or YAML mapping of settings from a file."""
    return parse_data_text(decode_text(path.read_bytes(), path.name), path.name)


def is_config_file(relative: str) -> bool:
    """Whether the channel reader reads this relative POSIX path: constants.py at the top, data anywhere."""
    return relative == CONSTANTS_FILE or PurePosixPath(relative).suffix.lower() in DATA_SUFFIXES


def same_setting(first: object, second: object) -> bool:
    """Whether two files give a key the same value. Python's == holds True equal to 1 (and False to 0): a
    YAML `batch_size: yes` beside a constants.py `BATCH_SIZE = 1` would pass as the same value and leave
    the boolean unseen by the settings' check, so a boolean equals only a boolean here."""
    if isinstance(first, (list, tuple)) and isinstance(second, (list, tuple)):
        return len(first) == len(second) and all(map(same_setting, first, second))
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(same_setting(first[k], second[k]) for k in first)
    return isinstance(first, bool) == isinstance(second, bool) and first == second


def config_layers(texts: Mapping[str, str]) -> list[tuple[str, dict[str, object]]]:
    """Settings layers from the channel's files (relative POSIX path → text), in a fixed order:
    constants.py, then data files by path. Other files are ignored.

    A key given twice with different values in the channel is an error naming both files.
    """
    layers: list[tuple[str, dict[str, object]]] = []
    if CONSTANTS_FILE in texts:
        layers.append((f"cfg/{CONSTANTS_FILE}", parse_constants(texts[CONSTANTS_FILE])))
    data_files = sorted(
        (relative for relative in texts if relative != CONSTANTS_FILE and is_config_file(relative)),
        key=lambda relative: relative.split("/"),
    )
    for relative in data_files:
        layers.append((f"cfg/{relative}", parse_data_text(texts[relative], PurePosixPath(relative).name)))
    seen: dict[str, tuple[str, object]] = {}
    for origin, values in layers:
        for key, value in values.items():
            if key in seen and not same_setting(seen[key][1], value):
                raise ConfigError(f"'{key}' is set to different values in {seen[key][0]} and {origin}")
            seen[key] = (origin, value)
    return layers


def read_config_dir(cfg_dir: Path) -> list[tuple[str, dict[str, object]]]:
    """Settings layers found in the cfg channel folder (see config_layers)."""
    texts: dict[str, str] = {}
    for path in sorted(cfg_dir.rglob("*")):
        relative = path.relative_to(cfg_dir).as_posix()
        if not (path.is_file() and is_config_file(relative)):
            continue
        if path.stat().st_size > MAX_CONFIG_BYTES:  # before reading it
            raise ConfigError(
                f"cfg/{relative} is {path.stat().st_size} bytes; config files must be at most "
                f"{MAX_CONFIG_BYTES} bytes"
            )
        texts[relative] = decode_text(path.read_bytes(), f"cfg/{relative}")
    return config_layers(texts)
