"""Identity folder names, made at test time, shared by the job's and the Lambdas' suites (issue 25,
defect 4): the classes of names refused (name → words of its reason), pairs that read as one name, and
names that must stay accepted. Written with escapes so that every invisible or lookalike character is
visible in the source."""

from __future__ import annotations

FORMULAS = {
    "=HYPERLINK(evil)": "starts with '='",
    "+cmd": "starts with '+'",
    "-2+3": "starts with '-'",
    "@SUM(A1)": "starts with '@'",
    "\tbob": "starts with '\\t'",
    "\rbob": "starts with '\\r'",
    "\uff1dcmd": "starts with '\uff1d'",  # FULLWIDTH EQUALS SIGN: '=' under NFKC
}
INVISIBLE = {
    "person_02\u200b": "U+200B ZERO WIDTH SPACE",
    "ali\u200dce": "U+200D ZERO WIDTH JOINER",
    "\u202eecila": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "bob\u202d": "U+202D LEFT-TO-RIGHT OVERRIDE",
    "\ufeffcarol": "U+FEFF ZERO WIDTH NO-BREAK SPACE",
    "da\u00advid": "U+00AD SOFT HYPHEN",
    "eve\u2066x": "U+2066 LEFT-TO-RIGHT ISOLATE",
    "fr\u034fank": "U+034F COMBINING GRAPHEME JOINER",
    "gina\ufe0f": "U+FE0F VARIATION SELECTOR-16",
    "x\n#y": "control character people cannot see (U+000A)",
    "bell\x07": "control character people cannot see (U+0007)",
    "del\x7f": "control character people cannot see (U+007F)",
    "line\u2028sep": "U+2028 LINE SEPARATOR",
    "private\ue000": "private-use character",
}
EDGE_SPACES = {
    "bob ": "starts or ends with white space",
    " bob": "starts or ends with white space",
    "bob\u00a0": "starts or ends with white space",
    "\u3000bob": "starts or ends with white space",
}
MIXED_SCRIPTS = {
    "\u0430lice": "mixes Cyrillic and Latin letters",  # Cyrillic a (U+0430) + Latin lice
    "p\u0430ypal": "mixes Cyrillic and Latin letters",
    "\u0391lex": "mixes Greek and Latin letters",  # Greek capital alpha
    "jos\u0435": "mixes Cyrillic and Latin letters",  # Cyrillic ie (U+0435)
    "\u041e\u043b\u044c\u0433a": "mixes Cyrillic and Latin letters",  # Ольга with a Latin final a
    "\u674e\u96f7\u0410": "mixes Cyrillic and Han letters",
}
REFUSED = {**FORMULAS, **INVISIBLE, **EDGE_SPACES, **MIXED_SCRIPTS}

# Pairs of folder names that read as one name: each pair is refused, naming both folders.
LOOKALIKE_PAIRS = [
    ("Alice", "alice"),  # case
    ("BOB", "bob"),
    ("\ufb01ona", "fiona"),  # LATIN SMALL LIGATURE FI
    ("Jos\u00e9", "Jose\u0301"),  # NFC and NFD
    ("\uff2b\uff41\uff54\uff45", "kate"),  # fullwidth
    ("Stra\u00dfe", "STRASSE"),  # case folding
    ("mary  jane", "Mary Jane"),  # white space collapsed
    ("person_02", "person_02\u200b"),  # invisible character dropped
    ("bob", "bob "),  # trimmed
]

ACCEPTED = [
    "Jos\u00e9",
    "Rene\u0301e",  # NFD (René e): accepted alone
    "\u674e\u96f7",  # 李雷
    "\u041e\u043b\u044c\u0433\u0430",  # Ольга
    "Mary-Jane O'Neil",
    "person_02",
    "Zo\u00eb \u00d1\u00fa\u00f1ez",
    "\u5c71\u7530\u306f\u306a\u3053",  # 山田はなこ: Han + Hiragana (UTS #39 allows it)
    "\u30ab\u30fc\u30eb",  # カール: Katakana with the prolonged sound mark (no script)
    "\uae40\ubbfc\uc900 Kim",  # 김민준 Kim: Hangul + Latin
    "\u0645\u062d\u0645\u062f",  # محمد
    "\u0905\u0928\u0940\u0924\u093e",  # अनीता: Devanagari with a vowel sign
    "\u02bbIolani",  # a modifier letter (U+02BB) is no script
    "Dr. Smith Jr.",
    "#team",
    "123",
    'O\'Brien "Bob"',
]
