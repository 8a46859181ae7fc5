"""Hostile rules.py files, derived at test time from one that render_rules wrote, shared by the container's
and the publish Lambda's suites: name → (bytes, words the refusal must hold).

The first, `utf7-cookie-payload`, is the attack of issue 25: read as UTF-8 (or ASCII) it is the generated
file plus a comment; Python honours its `coding: utf-7` declaration, decodes `+AAo-` as a newline and
`+ACI-` as a quote, and runs the comment's payload on `import rules`.
"""

from __future__ import annotations

from facetrain.contract.rules_file import VERSION

# Identities that must round-trip through a pure-ASCII rules.py: accented Latin, Chinese, beyond the BMP.
NON_ASCII_IDENTITIES = {"alice": 2, "José": 2, "李雷": 2, "Zoë 🙂": 2}
FIX = "never edit it by hand"


def utf7_hidden_line(code: str) -> str:
    """A line that is a comment to a UTF-8 or ASCII reader and, decoded as UTF-7, a newline then `code`."""
    if any(char in code for char in "+\\~\n"):
        raise ValueError("the payload must avoid +, \\, ~ and newlines (UTF-7 shifts or rejects them)")
    return "# note " + ("\n" + code).replace("\n", "+AAo-").replace('"', "+ACI-") + "\n"


def utf7_cookie_payload(generated: bytes, code: str) -> bytes:
    """The generated file behind `# -*- coding: utf-7 -*-` (every `+` written `+-`, UTF-7's literal
    plus), with `code` hidden in a last comment line."""
    text = generated.decode("ascii").replace("+", "+-")
    return ("# -*- coding: utf-7 -*-\n" + text + utf7_hidden_line(code)).encode("ascii")


def _line_of(generated: bytes, piece: bytes) -> int:
    """1-based number of the line holding `piece` in the generated file."""
    return generated[: generated.index(piece)].count(b"\n") + 1


def hostile_rules_files(generated: bytes, code: str) -> dict[str, tuple[bytes, str]]:
    """Variants of a generated rules.py (pure ASCII, holding 'Jos\\xe9' among its identities and the
    not-for-production warning): each must be refused by every reader, with these words."""
    if not generated.isascii() or b"'Jos\\xe9'" not in generated:
        raise ValueError("derive the variants from a rules.py render_rules wrote for NON_ASCII_IDENTITIES")
    lines = generated.count(b"\n")
    rules_line = _line_of(generated, b"RULES = {")
    first_item = b"\n    'format'"
    return {
        "utf7-cookie-payload": (
            utf7_cookie_payload(generated, code),
            "line 1 is a coding declaration ('utf-7')",
        ),
        "latin1-cookie": (
            b"# -*- coding: latin-1 -*-\n" + generated,
            "line 1 is a coding declaration ('latin-1')",
        ),
        "cookie-on-line-2": (
            b"#!/usr/bin/env python3\n# vim: set fileencoding=utf-7 :\n" + generated,
            "line 2 is a coding declaration ('utf-7')",
        ),
        "byte-order-mark": (b"\xef\xbb\xbf" + generated, "starts with a byte-order mark"),
        "crlf-line-ends": (generated.replace(b"\n", b"\r\n"), "line 1 ends in a carriage return"),
        "trailing-comment": (generated + b"# checked by hand\n", f"line {lines + 1} is a comment"),
        "comment-in-rules": (
            generated.replace(b"RULES = {\n", b"RULES = {\n    # reviewed\n"),
            f"line {rules_line + 1} is a comment",
        ),
        "extra-statement-after": (
            generated + b"RULES['accept_threshold'] = 2.0\n",
            "statements other than RULES",
        ),
        "extra-blank-line": (
            generated.replace(b"\n\n\ndef distance", b"\n\n\n\ndef distance"),
            f"line {_line_of(generated, b'def distance')} is a blank line",
        ),
        "tab-indentation": (
            generated.replace(first_item, b"\n\t'format'"),
            f"line {rules_line + 1} holds a tab",
        ),
        "trailing-space": (
            generated.replace(b"'version': %d,\n" % VERSION, b"'version': %d, \n" % VERSION),
            f"line {rules_line + 2} is not what facetrain writes",
        ),
        "double-quoted-value": (
            generated.replace(b"'metric': 'euclidean'", b"'metric': \"euclidean\""),
            f"line {_line_of(generated, b'metric')} is not what facetrain writes",
        ),
        "no-final-newline": (generated[:-1], f"line {lines + 1} is missing"),
        "non-ascii-comment": (
            generated + "# José was here\n".encode(),
            f"line {lines + 1} holds a non-ASCII byte (0xc3)",
        ),
        "raw-utf8-identity": (  # the same value, written as pprint/repr did before rules.py was pure ASCII
            generated.replace(b"'Jos\\xe9'", "'José'".encode()),
            f"line {_line_of(generated, b'Jos')} holds a non-ASCII byte (0xc3)",
        ),
        "stale-warning": (  # values edited by hand: production, yet the not-for-production line is kept
            generated.replace(b"'not_for_production': True", b"'not_for_production': False"),
            f"line {_line_of(generated, b'# WARNING')} is a comment",
        ),
    }
