"""Counts in words, one rule for every message the job, the Lambdas and `facetrain` print: `1 photo`,
`2 photos`, `1 identity`, `3 identities`, never `photo(s)`. Standard-library only, like the rest of
facetrain.contract (the Lambdas' layer ships it)."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` with its noun in the right number: `plural` when given (`identity`/`identities`), else the
    singular with an s (`problem`/`problems`). One is singular; zero and every other count, plural."""
    noun = singular if count == 1 else (plural if plural is not None else f"{singular}s")
    return f"{count} {noun}"
