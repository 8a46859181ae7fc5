"""Read the `cfg` channel as data: `constants.py` through `ast`, JSON and YAML through safe loaders.

Nothing from the channel is ever executed or imported.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

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
        except ValueError:
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


def parse_data_file(path: Path) -> dict[str, object]:
    """Load a JSON or YAML mapping of settings."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: not valid {path.suffix[1:].upper()} ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: must hold a mapping of setting names to values")
    return {str(key): value for key, value in data.items()}


def read_config_dir(cfg_dir: Path) -> list[tuple[str, dict[str, object]]]:
    """Settings layers found in the cfg channel, in a fixed order: constants.py, then data files by name.

    A key given twice with different values in the channel is an error naming both files.
    """
    layers: list[tuple[str, dict[str, object]]] = []
    constants = cfg_dir / CONSTANTS_FILE
    if constants.is_file():
        layers.append((f"cfg/{CONSTANTS_FILE}", parse_constants(constants.read_text(encoding="utf-8"))))
    for path in sorted(p for p in cfg_dir.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES):
        layers.append((f"cfg/{path.relative_to(cfg_dir).as_posix()}", parse_data_file(path)))
    seen: dict[str, tuple[str, object]] = {}
    for origin, values in layers:
        for key, value in values.items():
            if key in seen and seen[key][1] != value:
                raise ConfigError(f"'{key}' is set to different values in {seen[key][0]} and {origin}")
            seen[key] = (origin, value)
    return layers
