"""The rules an identity folder's name must meet, checked once here for validate (Lambda) and the job.

An identity's name is its folder's name: it becomes a row of final_mean_embeddings.csv and the answer of
identify. A name is refused when a person could not read it for what it is:

- it starts like a spreadsheet formula (`=`, `+`, `-`, `@`, tab, CR: contract.spreadsheet_cells);
- it holds a character people cannot see: a format character (Unicode category Cf: zero-width space and
  joiners, direction overrides such as U+202E, the byte order mark, soft hyphen), another default-ignorable
  one (`_INVISIBLE`), a control character, a line or paragraph separator, a surrogate, a private-use or
  unassigned code point;
- it starts or ends with white space (`bob ` beside `bob`);
- it mixes scripts (Latin `a` with Cyrillic `\u0430`), except the mixes Unicode's UTS #39 "highly restrictive"
  level allows for Chinese, Japanese and Korean names (`_ALLOWED_MIXES`);
- it equals another folder's name once compared as people read them (`comparison_key`: NFKC, case
  folding, invisible characters dropped, white space collapsed and trimmed): `Alice`/`alice`,
  `ﬁona`/`fiona`, `José` in NFC and in NFD. Both folders are named.

Written here rather than taken from a library: the Lambdas' layer ships this module, so it is standard
library only (unicodedata). `unicodedata` has no Script property, so a letter's script is the first word
of its Unicode name, read after NFKC (fullwidth, mathematical and halfwidth forms take their base letter's
script); marks named COMBINING, modifier letters, digits, punctuation, symbols and spaces belong to no
script (Unicode's Common and Inherited). A name written wholly in one lookalike script (Cyrillic
`\u0430\u0441\u0435` for `ace`) passes: telling it apart needs Unicode's confusables table, which the
standard library does not have.

Also here: how the job shows a file name that is not UTF-8 (`undecodable`, `shown_bytes`), so that such a
name becomes a rejection naming it, never an error when a report is written.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterable

from .spreadsheet_cells import starts_like_formula

# Default_Ignorable_Code_Point characters outside category Cf: fillers and selectors that render as nothing.
_INVISIBLE = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0}
    | set(range(0xFE00, 0xFE10))  # variation selectors 1-16
    | set(range(0xE0100, 0xE01F0))  # variation selectors 17-256
)
_UNSEEN_CATEGORIES = {
    "Cf": "format character",
    "Cc": "control character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
    "Cs": "surrogate",
    "Co": "private-use character",
    "Cn": "unassigned code point",
}
# First words of Unicode names that are no script (Common, Inherited), and scripts named otherwise.
_NO_SCRIPT = frozenset(
    {"COMBINING", "MODIFIER", "KATAKANA-HIRAGANA", "VARIATION", "CARON", "TURNED", "VERTICAL", "MUSICAL"}
    | {"ROMAN", "MASU", "VEDIC"}
)
_SCRIPT_ALIASES = {"CJK": "HAN", "IDEOGRAPHIC": "HAN", "HENTAIGANA": "HIRAGANA"}
# UTS #39 "highly restrictive": one script, or Latin with the scripts a CJK name is written in.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
RENAME = "rename the folder"


def _unseen_kind(char: str) -> str | None:
    """What makes this character one people cannot see, or None for a visible one."""
    if ord(char) in _INVISIBLE:
        return "invisible character"
    return _UNSEEN_CATEGORIES.get(unicodedata.category(char))


def _described(char: str) -> str:
    """`U+200B ZERO WIDTH SPACE`: a character named so that a person can find it (controls have no name)."""
    return f"U+{ord(char):04X} {unicodedata.name(char, '')}".rstrip()


def shown(name: str) -> str:
    """The name with every character people cannot see written as `\\uXXXX`, for messages."""
    return "".join(
        (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}") if _unseen_kind(c) else c
        for c in name
    )


def _script(char: str) -> str | None:
    """The script of a letter or mark (first word of its Unicode name), None for script-neutral ones."""
    if unicodedata.category(char)[0] not in "LM":
        return None
    word = unicodedata.name(char, "").split(" ", 1)[0]
    if not word or word in _NO_SCRIPT:
        return None
    return _SCRIPT_ALIASES.get(word, word)


def _mixed_scripts(name: str) -> str | None:
    """Why the name mixes scripts people confuse, or None."""
    letters: dict[str, str] = {}  # script → its first letter in the name
    for char in unicodedata.normalize("NFKC", name):
        script = _script(char)
        if script is not None:
            letters.setdefault(script, char)
    scripts = frozenset(letters)
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in _ALLOWED_MIXES):
        return None
    names = sorted(scripts)
    return (
        f"mixes {', '.join(s.title() for s in names[:-1])} and {names[-1].title()} letters "
        f"({'; '.join(f'{letters[s]!r} is {_described(letters[s])}' for s in names)}), so it can look like "
        "another name; write it in one script"
    )


def name_reasons(name: str) -> list[str]:
    """Every reason this folder name cannot name an identity (empty when it can)."""
    reasons: list[str] = []
    if starts_like_formula(name):
        reasons.append(
            f"starts with {name[:1]!r}, so a spreadsheet opening final_mean_embeddings.csv or rejected.csv "
            "would run it as a formula"
        )
    unseen = [(index, char) for index, char in enumerate(name) if _unseen_kind(char)]
    for index, char in unseen[:3]:
        reasons.append(
            f"holds a {_unseen_kind(char)} people cannot see ({_described(char)}) at position {index}"
        )
    if name != name.strip():
        reasons.append("starts or ends with white space")
    if mixed := _mixed_scripts(name):
        reasons.append(mixed)
    return reasons


def comparison_key(name: str) -> str:
    """The name as people read it: NFKC, case folded, invisible characters dropped, white space collapsed
    and trimmed. Two folders with one key would be two identities for what reads as one name."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join("".join(c for c in folded if not _unseen_kind(c)).split())


def identity_name_problems(names: Iterable[str], folder: Callable[[str], str]) -> list[str]:
    """One sentence per refused identity folder and per group of folders that read alike, each naming the
    folder(s) (`folder` renders a name, as `shown` writes it, as the folder's location) and the fix."""
    unique = sorted(set(names))
    problems = [
        f"identity folder {folder(shown(name))} {'; '.join(reasons)}: {RENAME} (photos of one person in "
        "one folder named after them, in visible characters)"
        for name in unique
        if (reasons := name_reasons(name))
    ]
    groups: dict[str, list[str]] = {}
    for name in unique:
        groups.setdefault(comparison_key(name), []).append(name)
    for alike in groups.values():
        if len(alike) > 1:
            folders = [folder(shown(name)) for name in alike]
            if len({unicodedata.normalize("NFC", where) for where in folders}) < len(folders):  # NFC, NFD
                folders = [f"{where} ({name!a})" for where, name in zip(folders, alike, strict=True)]
            listed = " and ".join(folders)
            problems.append(
                f"identity folders {listed} read as one name (once case, character forms (NFKC), "
                "invisible characters and spaces are set aside): they would be separate identities; put one "
                "person's photos in one folder, or rename the folders so that the names differ"
            )
    return problems


def undecodable(name: str) -> bool:
    """True for a file or folder name that is not valid UTF-8 (Python holds its bytes as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def shown_bytes(name: str) -> str:
    """A name read from the file system, as text: bytes that are not UTF-8 written `\\xNN`."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")
