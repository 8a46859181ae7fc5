"""Generate and verify `rules.py`: the enrollment's decision rules as literal data, pure ASCII.

`render_rules` is the one source of the file's text. Every reader goes through `load_rules`, which parses
without executing, then renders the parsed values again and requires the file to be exactly that text,
byte for byte: so a coding declaration (`# -*- coding: utf-7 -*-` makes Python decode the file otherwise
than any reader does, and run what a reader takes for a comment), a byte-order mark, CRLF line ends, an
extra comment, blank line or statement, or any non-ASCII byte is refused, whoever wrote the file.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping

from .shorten import shorten

FORMAT = "facetrain.rules"
VERSION = 2  # 2: pure ASCII in a fixed layout, read byte for byte (1: pprint's layout, UTF-8)

_HEADER = '''"""Decision rules of a facetrain enrollment (generated; do not edit).

RULES holds literal data only. Importing this module has no side effects.
"""

'''
_NOT_FOR_PRODUCTION = "# WARNING: random weights (weights=none). NOT FOR PRODUCTION.\n"

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
_INDENT = "    "
MAX_DISTANCE = 2.0  # Euclidean distance between unit vectors
# A rules.py of 100,000 identities with 20-character names is ~3 MB; 32 MiB bounds what a reader parses.
MAX_RULES_BYTES = 32 * 1024**2
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
# PEP 263: a comment on line 1 or 2 matching this makes Python decode the file with that codec.
_CODING_DECLARATION = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_BOM = b"\xef\xbb\xbf"
_FIX = (
    "rules.py is generated data: never edit it by hand; use the rules.py the training job published "
    "(the results prefix, or `facetrain run`'s OUT_DIR), or retrain to make a new one"
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


def _literal(value: object, depth: int) -> str:
    """Python source for plain data, in the one layout rules.py uses: containers one item per line.

    Written here rather than with pprint because the file is compared byte for byte by readers on other
    Python versions (the job's 3.11, the publish Lambda's 3.13, the user's identify) and pprint's line
    breaking is an implementation detail; this layout rests only on ascii() and repr() of int and float,
    which every Python 3 writes alike. ascii() escapes every non-ASCII character (\\xe9, \\u674e,
    \\U0001f600), so a name such as "José" stays exactly itself while the file stays pure ASCII.
    """
    if isinstance(value, str):
        return ascii(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return repr(value)
    inner, outer = _INDENT * (depth + 1), _INDENT * depth
    if isinstance(value, list):
        if not value:
            return "[]"
        items = "".join(f"{inner}{_literal(item, depth + 1)},\n" for item in value)
        return f"[\n{items}{outer}]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = "".join(f"{inner}{key!a}: {_literal(item, depth + 1)},\n" for key, item in value.items())
        return f"{{\n{items}{outer}}}"
    raise RulesError(f"{type(value).__name__} is not plain data")


def _render_text(data: Mapping[str, object]) -> str:
    """The text of rules.py for already-checked data (format and version included)."""
    warning = _NOT_FOR_PRODUCTION if data["not_for_production"] else ""
    return _HEADER + warning + "RULES = " + _literal(dict(data), 0) + "\n" + _FUNCTIONS


def render_rules(rules: Mapping[str, object]) -> str:
    """Return the text of rules.py for these rules (pure ASCII), verified to load back through
    `load_rules` — the readers' own check — to exactly the same data."""
    data = {"format": FORMAT, "version": VERSION, **dict(rules)}
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise RulesError(f"rules lack {', '.join(missing)}")
    _check_plain(data, "RULES")
    _check_threshold(data["accept_threshold"])
    text = _render_text(data)
    if load_rules(text) != data:
        raise RulesError("rules.py did not parse back to the data it was generated from")
    return text


def load_rules(source: bytes | str) -> dict[str, object]:
    """Parse rules.py as data (never executing it) and return RULES, after checking that the file is
    exactly what `render_rules` writes for those values. Pass the file's bytes where you have them.

    The module must be: the docstring, `RULES = <literal dict>`, and the fixed helper functions, in
    facetrain's layout, pure ASCII. Raises RulesError naming the first problem (and its line) and the fix.
    """
    raw = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else bytes(source)
    if len(raw) > MAX_RULES_BYTES:
        raise RulesError(
            f"rules.py is {len(raw)} bytes, over the {MAX_RULES_BYTES}-byte cap: a training job's rules.py "
            f"is far smaller. {_FIX}"
        )
    _check_ascii(raw)
    text = raw.decode("ascii")  # parsed as text: a coding declaration, were there one, means nothing here
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise RulesError(f"rules.py line {exc.lineno}: not valid Python ({exc.msg}). {_FIX}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise RulesError(f"rules.py cannot be parsed ({shorten(exc)}). {_FIX}") from None
    try:
        rules = _rules_of(tree)
    except RulesError as exc:
        raise RulesError(f"{exc}. {_FIX}") from None
    if rules.get("version") != VERSION:
        raise RulesError(_other_version(rules.get("version")))
    try:
        expected = _render_text(rules).encode("ascii")
    except (RecursionError, ValueError) as exc:
        raise RulesError(f"RULES cannot be rendered again ({shorten(exc)}). {_FIX}") from None
    if raw != expected:
        raise RulesError(_first_difference(raw, expected))
    return rules


def _rules_of(tree: ast.Module) -> dict[str, object]:
    """RULES of a parsed rules.py, its statements and values checked (not yet its bytes)."""
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
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
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
    _check_plain(rules, "RULES")  # a tuple, set or bytes would render back to itself: refused here
    return rules


def _other_version(version: object) -> str:
    """The refusal of a rules.py of another version than this facetrain writes."""
    if version == 1:
        return (
            "rules.py is version 1, written by an earlier facetrain (laid out by pprint, not read byte for "
            "byte): retrain to publish a version 2 rules.py (the embeddings are reused: only new photos are "
            "examined); deploy the new training image before the new Lambdas"
        )
    return f"rules.py is version {shorten(repr(version))}, which this facetrain does not read: {_FIX}"


def _check_ascii(raw: bytes) -> None:
    if raw.isascii():
        return
    if raw.startswith(_BOM):
        raise RulesError(
            f"rules.py starts with a byte-order mark (re-saved by an editor?): facetrain writes it as pure "
            f"ASCII. {_FIX}"
        )
    offset = next(i for i, byte in enumerate(raw) if byte > 0x7F)
    line = raw.count(b"\n", 0, offset) + 1
    raise RulesError(
        f"rules.py line {line} holds a non-ASCII byte (0x{raw[offset]:02x}): facetrain writes it as pure "
        f"ASCII, names escaped. {_FIX}"
    )


def _first_difference(raw: bytes, expected: bytes) -> str:
    """Where and how a file differs from what facetrain writes for its values (no content echoed: a
    line may hold identity names)."""
    got, want = raw.split(b"\n"), expected.split(b"\n")
    for number, first in enumerate(got[:2], start=1):  # where Python looks for one (PEP 263)
        declaration = _CODING_DECLARATION.match(first)
        if declaration:
            codec = shorten(declaration.group(1).decode())
            return (
                f"rules.py line {number} is a coding declaration ({codec}): Python would decode the file "
                f"otherwise than facetrain reads it, and could run what a reader takes for a comment. {_FIX}"
            )
    pairs = enumerate(zip(got, want, strict=False))  # the shorter one ends the comparison
    index = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
    line = got[index] if index < len(got) else b""
    if line.endswith(b"\r"):
        what = "ends in a carriage return (CRLF line ends)"
    elif index >= len(want):
        what = "is past the end of what facetrain writes"
    elif index >= len(got):
        what = "is missing: the file ends early"
    elif b"\t" in line:
        what = "holds a tab"
    elif line.lstrip().startswith(b"#"):
        what = "is a comment facetrain does not write"
    elif not line.strip():
        what = "is a blank line facetrain does not write"
    else:
        what = "is not what facetrain writes for these values"
    return f"rules.py line {index + 1} {what}: it is not the file facetrain generates. {_FIX}"


def _check_threshold(value: object) -> None:
    """accept_threshold: a finite number in (0, MAX_DISTANCE], the range of distances between unit vectors."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise RulesError(f"accept_threshold {shorten(value)} is not a number")
    if not (math.isfinite(value) and 0.0 < value <= MAX_DISTANCE):
        raise RulesError(
            f"accept_threshold {value!r} is outside (0, {MAX_DISTANCE}], the range of distances between "
            "unit embeddings"
        )
