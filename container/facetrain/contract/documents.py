"""What every versioned JSON document of the project shares: a `format` and a `version` field that its
reader checks first, and errors that name the fields that do not fit the model."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

Document = TypeVar("Document", bound=BaseModel)


class DocumentError(ValueError):
    """A document cannot be read: the message names the document, what is wrong and what to do."""


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


def parse_document(
    model: type[Document],
    data: object,
    where: str,
    *,
    format: str,
    version: int,
    remedy: str,
    error: type[DocumentError] = DocumentError,
) -> Document:
    """`data` (decoded JSON) as `model`, or `error`: "<where> is format X version Y, not …: <remedy>" for
    another format or version, "<where> does not fit <format> version N: <fields>: <remedy>" otherwise."""
    problem = format_problem(data, format, version, where)
    if problem:
        raise error(f"{problem}: {remedy}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(
            f"{where} does not fit {format} version {version}: {field_problems(exc)}: {remedy}"
        ) from None
