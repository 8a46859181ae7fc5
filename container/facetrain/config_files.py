"""Read the `cfg` channel as data: `constants.py` through `ast`, JSON and YAML through safe loaders.

Nothing from the channel is ever executed or imported.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import yaml

CONSTANTS_FILE = "constants.py"
DATA_SUFFIXES = (".json", ".yaml", ".yml")


class ConfigError(ValueError):
    """A config file that cannot be read as plain data."""


def parse_constants(source: str, filename: str = CONSTANTS_FILE) -> dict[str, object]:
    """Return the top-level `NAME = <literal>` assignments of a constants.py, keys lower-cased.

    Docstrings and comments are allowed; any other statement (import, call, def, …) is refused with the
    line that holds it, since the file is data and is never run.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ConfigError(f"{filename} line {exc.lineno}: not valid Python syntax ({exc.msg})") from None
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
                f"{filename} line {node.lineno}: the value of {target} is not a literal "
                "(numbers, strings, lists, tuples, dicts, True/False/None only); the file is never run"
            ) from None
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
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{name}: not valid {suffix[1:].upper()} ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: must hold a mapping of setting names to values")
    return {str(key): value for key, value in data.items()}


def parse_data_file(path: Path) -> dict[str, object]:
    """Load a JSON or YAML mapping of settings from a file."""
    return parse_data_text(path.read_text(encoding="utf-8"), path.name)


def is_config_file(relative: str) -> bool:
    """Whether the channel reader reads this relative POSIX path: constants.py at the top, data anywhere."""
    return relative == CONSTANTS_FILE or PurePosixPath(relative).suffix.lower() in DATA_SUFFIXES


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
            if key in seen and seen[key][1] != value:
                raise ConfigError(f"'{key}' is set to different values in {seen[key][0]} and {origin}")
            seen[key] = (origin, value)
    return layers


def read_config_dir(cfg_dir: Path) -> list[tuple[str, dict[str, object]]]:
    """Settings layers found in the cfg channel folder (see config_layers)."""
    texts = {
        relative: path.read_text(encoding="utf-8")
        for path in cfg_dir.rglob("*")
        if path.is_file() and is_config_file(relative := path.relative_to(cfg_dir).as_posix())
    }
    return config_layers(texts)
