"""What counts as a trace of the people to forget, for the erasure's scrub (erasure_scrub.py).

Four tests, from the strictest to the loosest, each used only where the format calls for it:

- `is_name(value)`: a string that equals a name (a CSV row's identity, a pickle record's identity...).
- `is_photo_key(value)`: a string that is a photo key of theirs: `<name>/...` (relative to the images
  prefix) or `<images_prefix><name>/...`.
- `mentions(text)`: generated free text (a warning, a rejection's message, a report's cell) that names one
  of their photos or folders: a word that is a photo key of theirs whose last part is a file name
  (`ann/img1.jpg`, `ann/`, not `and/or`), or holds `<images_prefix><name>/` (an s3:// URI), or the name
  quoted as `repr` and JSON write it (`'ann'`, `"ann"`). Template words (`max`, `mean`, `identity`) and
  parts of other words are never a trace here.
- `in_text(text)`: the token rule, for text without known structure (a file no reader here knows, a
  known file that does not parse): a name that stands as a whole token: the characters on both sides are
  not name characters (letters, digits, `_`, non-ASCII), nor `-` or `.` followed by one. So forgetting
  `ann` finds `ann/img1.jpg`, `"ann"`, `<td>ann</td>` and `... ann.` but not `anna`, `ann_b` or `ann.lee`.
  It looks for the name as written and in the escapes JSON (`\\u00e9`), HTML (`&amp;`, `&#39;`), Python
  `ascii()` and URLs (`%20`) write. A name followed by a space and more text (`ann` in `ann lee`) counts: a
  file without structure cannot tell the two apart, and the rule errs on the side of erasing.

`holds_trace(body)` is the rule for bytes no format here could read: the token rule over them when they
are UTF-8 text; for binary, `in_binary` (never the token rule over arbitrary bytes: 7 MB of float32 values
"contain" every two-letter name as a token dozens of times).
"""

from __future__ import annotations

import html
import json
import re
import struct
import urllib.parse
from collections.abc import Collection, Iterator

# Names at least this long (UTF-8 bytes) are looked for by the token rule in binary too: a given 6-byte
# string turns up by chance in random bytes about once in 2**48 places (once in ~10**7 objects of 7 MB).
MIN_BINARY_TOKEN_BYTES = 6
MAX_PICKLED_STRING_BYTES = 4096  # longer framed strings are not looked at (a photo key is far shorter)

_WORD = rb"[A-Za-z0-9_\x80-\xff]"
_BEFORE = rb"(?<!" + _WORD + rb")(?<!" + _WORD + rb"[-.])"
_AFTER = rb"(?!" + _WORD + rb")(?![-.]" + _WORD + rb")"
_QUOTES = "\"'()[]{}<>,;:!?`"
# pickle's string opcodes with a length prefix (protocols 1-5): SHORT_BINUNICODE, BINUNICODE,
# BINUNICODE8, SHORT_BINSTRING, BINSTRING
_PICKLED_STRING = re.compile(rb"[\x8cXU\x8dT]", re.DOTALL)
_LENGTH_FORMAT = {0x8C: "<B", ord("U"): "<B", ord("X"): "<I", ord("T"): "<I", 0x8D: "<Q"}


class NoSafeRewrite(Exception):
    """The object holds a trace the rewriter cannot take out without changing what it means."""


def _spellings(name: str) -> set[bytes]:
    """The name as UTF-8 and as the escapes JSON, HTML (html.escape and Jinja's), ascii() and URLs write."""
    jinja = (
        name.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )
    forms = {
        name,
        json.dumps(name)[1:-1],
        html.escape(name),
        jinja,
        ascii(name)[1:-1],
        urllib.parse.quote(name, safe=""),
        urllib.parse.quote(name),
    }
    return {form.encode("utf-8", "surrogatepass") for form in forms if form}


def _token_pattern(spellings: Collection[bytes]) -> re.Pattern[bytes] | None:
    ordered = sorted(spellings, key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(_BEFORE + b"(?:" + b"|".join(map(re.escape, ordered)) + b")" + _AFTER)


def utf8_text(body: bytes) -> str | None:
    """The body as UTF-8 text (a character cut off at the end allowed: a truncated file), else None."""
    for cut in range(4):
        try:
            return body[: len(body) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


class Traces:
    """The people to forget, and the tests of whether a value is a trace of theirs (module docstring)."""

    def __init__(self, names: Collection[str], images_prefix: str) -> None:
        self.names = frozenset(name for name in names if name)
        self.images_prefix = images_prefix
        all_spellings = {s for name in self.names for s in _spellings(name)}
        self._token = _token_pattern(all_spellings)
        self._long_token = _token_pattern({s for s in all_spellings if len(s) >= MIN_BINARY_TOKEN_BYTES})
        self._quoted = {q for name in self.names for q in (repr(name), ascii(name), json.dumps(name))}
        self._prefixed = {f"{images_prefix}{name}/" for name in self.names} if images_prefix else set()
        self._prefixed_bytes = {p.encode("utf-8", "surrogatepass") for p in self._prefixed}

    def in_text(self, text: object) -> bool:
        """The token rule over a string (False for anything else)."""
        return (
            isinstance(text, str)
            and self._token is not None
            and self._token.search(text.encode("utf-8", "surrogatepass")) is not None
        )

    def is_name(self, value: object) -> bool:
        return isinstance(value, str) and value in self.names

    def is_photo_key(self, value: object) -> bool:
        """`<name>/...` (relative to the images prefix) or `<images_prefix><name>/...`."""
        if not isinstance(value, str):
            return False
        relative = value.removeprefix(self.images_prefix) if self.images_prefix else value
        return any(
            "/" in candidate and candidate.split("/", 1)[0] in self.names for candidate in (relative, value)
        )

    def mentions(self, text: object) -> bool:
        """Free text naming a photo or folder of theirs, or their name quoted (module docstring)."""
        if not isinstance(text, str):
            return False
        if any(prefixed in text for prefixed in self._prefixed) or any(q in text for q in self._quoted):
            return True
        for word in text.split():
            word = word.strip(_QUOTES).rstrip(".")
            if self.is_photo_key(word):
                last = word.rsplit("/", 1)[-1]
                if not last or "." in last:  # a folder (`ann/`) or a file (`ann/img1.jpg`)
                    return True
        return False

    def in_value(self, value: object) -> bool:
        """A string value that is a name or a photo key of theirs, or generated text that mentions them."""
        return self.is_name(value) or self.is_photo_key(value) or self.mentions(value)

    def in_binary(self, body: bytes) -> bool:
        """Bytes that are not text and that no reader here could read (a garbled pickle, an unknown
        binary). They hold a trace when (1) a string pickle frames (opcode, length, UTF-8 bytes) is a name
        or a photo key of theirs: what a pickled record keeps, found even in a truncated pickle; a given
        2-letter name framed so is 4 exact bytes, by chance about once in 2**32 places (0.2 % of 7 MB
        objects of random bytes); (2) `<images_prefix><name>/` is in them verbatim; or (3) the token rule
        finds a name of MIN_BINARY_TOKEN_BYTES or more (chance: module constant). A shorter name written
        into an unknown binary format in some other way is missed: the price of not deleting every model
        and figure of everyone whenever a two-letter name is forgotten."""
        if any(prefixed in body for prefixed in self._prefixed_bytes):
            return True
        if self._long_token is not None and self._long_token.search(body):
            return True
        return any(self.is_name(s) or self.is_photo_key(s) for s in pickled_strings(body))


def pickled_strings(body: bytes) -> Iterator[str]:
    """Every string a pickle frames with a length prefix that decodes as UTF-8 (scanned in any bytes,
    whether or not they are a whole pickle; never unpickled)."""
    for match in _PICKLED_STRING.finditer(body):
        opcode = body[match.start()]
        layout = _LENGTH_FORMAT[opcode]
        start = match.end() + struct.calcsize(layout)
        if start > len(body):
            continue
        (length,) = struct.unpack_from(layout, body, match.end())
        if length == 0 or length > MAX_PICKLED_STRING_BYTES or start + length > len(body):
            continue
        try:
            yield body[start : start + length].decode("utf-8")
        except UnicodeDecodeError:
            continue


def holds_trace(body: bytes, traces: Traces) -> bool:
    """The rule for bytes no reader here could read: the token rule over UTF-8 text, else `in_binary`."""
    text = utf8_text(body)
    return traces.in_text(text) if text is not None else traces.in_binary(body)


def values(value: object) -> Iterator[str]:
    """Every string value in a JSON-like value (dict keys left out: they are a format's field names)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from values(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from values(item)


def check_no_trace_left(data: object, traces: Traces) -> None:
    """After a rewrite (or when none was needed): no string value is a trace of theirs, else NoSafeRewrite."""
    if any(traces.in_value(s) for s in values(data)):
        raise NoSafeRewrite


def json_text(data: object, indent: int, newline: bool) -> bytes:
    return (json.dumps(data, indent=indent, ensure_ascii=False) + ("\n" if newline else "")).encode("utf-8")
