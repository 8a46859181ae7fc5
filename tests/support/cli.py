"""Run the `facetrain` command in-process, as a test reads it."""

from __future__ import annotations

import json

import pytest
from facetrain_offline.cli import main


def identify(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, list[dict], str]:
    """`facetrain identify ARGS…`: exit code, the JSON answers printed on stdout, and stderr."""
    code = main(["identify", *map(str, args)])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err
