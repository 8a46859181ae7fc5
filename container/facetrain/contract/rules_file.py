"""Generate and verify `rules.py`: the enrollment's decision rules as literal data.

Every value enters the file through `repr` of plain data (so names stay escaped string literals), and the
generated text is re-parsed and checked against the data before anyone writes it. Consumers read it back
with `load_rules`, which parses without executing.
"""

from __future__ import annotations

import ast
import math
import pprint
from collections.abc import Mapping

from .shorten import shorten

FORMAT = "facetrain.rules"
VERSION = 1

_HEADER = '''"""Decision rules of a facetrain enrollment (generated; do not edit).

RULES holds literal data only. Importing this module has no side effects.
"""

'''

# Pure helpers shipped inside rules.py; their text is fixed here and checked on every load.
_FUNCTIONS = '''

def distance(a, b):
    """Euclidean distance between two embeddings (sequences of floats)."""
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5


def accept(dist):
    """True when a distance is close enough to accept the match."""
    return dist <= RULES["accept_threshold"]
'''

_LITERAL_TYPES = (str, int, float, bool, type(None))
MAX_DISTANCE = 2.0  # Euclidean distance between unit vectors
REQUIRED_KEYS = (
    "format",
    "version",
    "metric",
    "accept_threshold",
    "identities",
    "image_size",
    "margin",
    "weights",
    "not_for_production",
    "dataset_fingerprint",
    "created_at",
)


class RulesError(ValueError):
    """rules.py is not the data-only module facetrain generates."""


def _check_plain(value: object, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise RulesError(f"{where}: non-finite number")
    if isinstance(value, _LITERAL_TYPES):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RulesError(f"{where}: keys must be strings")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise RulesError(f"{where}: {type(value).__name__} is not plain data")


def render_rules(rules: Mapping[str, object]) -> str:
    """Return the text of rules.py for these rules, verified to parse back to exactly the same data."""
    data = {"format": FORMAT, "version": VERSION, **dict(rules)}
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise RulesError(f"rules lack {', '.join(missing)}")
    _check_plain(data, "RULES")
    _check_threshold(data["accept_threshold"])
    text = _HEADER
    if data["not_for_production"]:
        text += "# WARNING: random weights (weights=none). NOT FOR PRODUCTION.\n"
    text += "RULES = " + pprint.pformat(data, indent=1, width=100, sort_dicts=False) + "\n" + _FUNCTIONS
    if load_rules(text) != data:
        raise RulesError("rules.py did not parse back to the data it was generated from")
    return text


def load_rules(text: str) -> dict[str, object]:
    """Parse rules.py as data (never executing it) and return RULES, after checking the module's shape.

    The module must be: a docstring, `RULES = <literal dict>`, and the fixed helper functions.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise RulesError(f"rules.py line {exc.lineno}: not valid Python ({exc.msg})") from None
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body:
        raise RulesError("rules.py holds no RULES")
    first = body[0]
    if not (
        isinstance(first, ast.Assign)
        and len(first.targets) == 1
        and isinstance(first.targets[0], ast.Name)
        and first.targets[0].id == "RULES"
    ):
        raise RulesError("rules.py must start with `RULES = {...}`")
    try:
        rules = ast.literal_eval(first.value)
    except ValueError:
        raise RulesError("RULES in rules.py is not a literal") from None
    expected = ast.parse(_FUNCTIONS).body
    if [ast.dump(node) for node in body[1:]] != [ast.dump(node) for node in expected]:
        raise RulesError("rules.py holds statements other than RULES and the generated helper functions")
    if not isinstance(rules, dict) or rules.get("format") != FORMAT:
        raise RulesError(f"RULES is not a {FORMAT} mapping")
    missing = [key for key in REQUIRED_KEYS if key not in rules]
    if missing:
        raise RulesError(f"RULES lacks {', '.join(missing)}")
    _check_threshold(rules["accept_threshold"])
    return rules


def _check_threshold(value: object) -> None:
    """accept_threshold: a finite number in (0, MAX_DISTANCE], the range of distances between unit vectors."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RulesError(f"accept_threshold {shorten(value)} is not a number")
    if not (math.isfinite(value) and 0.0 < value <= MAX_DISTANCE):
        raise RulesError(
            f"accept_threshold {value!r} is outside (0, {MAX_DISTANCE}], the range of distances between "
            "unit embeddings"
        )
