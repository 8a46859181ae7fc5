"""What every versioned JSON document of the project shares: a `format` and a `version` field that its
reader checks first, and errors that name the fields that do not fit the model."""

from __future__ import annotations

from pydantic import ValidationError


def format_problem(data: object, expected_format: str, expected_version: int, where: str) -> str | None:
    """None when `data` is a JSON object of that format and version; else what it is instead."""
    found = (data.get("format"), data.get("version")) if isinstance(data, dict) else (None, None)
    if found == (expected_format, expected_version):
        return None
    expected = f"{expected_format} version {expected_version}"
    return f"{where} is format {found[0]!r} version {found[1]!r}, not {expected}"


def field_problems(error: ValidationError, limit: int = 5) -> str:
    """`field.path: message; …` of a pydantic error, at most `limit` of them."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()[:limit]
    )
