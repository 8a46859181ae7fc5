"""Hostile config files, made at test time, shared by the job's and the Lambdas' hostile-input suites:
(file name, content, words the refusal must contain)."""

from __future__ import annotations

import json

# 9 lists of 9 references, 9 levels deep: a few hundred bytes that expand to 9**9 strings.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)

HOSTILE_CONFIG_FILES: dict[str, tuple[str, bytes, str]] = {
    "alias-bomb": ("bomb.yaml", ALIAS_BOMB.encode(), "YAML aliases (*name) are not allowed"),
    "deep-yaml": ("deep.yaml", ("a:\n" + "- " * 20000 + "1\n").encode(), "nested more than 20 levels"),
    "deep-json": ("deep.json", ("[" * 100000 + "]" * 100000).encode(), "nested more than 20 levels"),
    "unary-minus": ("constants.py", ("X = " + "-" * 200000 + "1\n").encode(), "nested too deeply"),
    "huge-list": ("constants.py", ("BATCH_SIZE = [" + "0, " * 300000 + "]\n").encode(), "'batch_size'"),
    "oversized": ("big.yaml", b"weights: '" + b"x" * (2 * 1024 * 1024) + b"'\n", "must be at most"),
    "long-string": ("long.json", json.dumps({"device": "x" * 900000}).encode(), "'device'"),
    "latin1": ("latin1.yaml", "seed: 1 # café".encode("latin-1"), "is not UTF-8"),
}


def nested(depth: int) -> list:
    """[[…[1]…]] nested `depth` levels."""
    value: list = [1]
    for _ in range(depth - 1):
        value = [value]
    return value
