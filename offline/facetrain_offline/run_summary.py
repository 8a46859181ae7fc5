"""run.json of `facetrain run`: what one offline run did. One model for its writer (the runner) and its
readers (the CLI's exit code, the tests, an operator's scripts through `read_run_summary`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from facetrain.contract.documents import DocumentError, parse_document
from pydantic import BaseModel, ConfigDict, Field

FORMAT = "facetrain.offline-run"
VERSION = 1
RUN_SUMMARY_FILE = "run.json"

ExecutionStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateVisitRecord(_Record):
    """One pass through a state of the last execution, from its history."""

    state: str
    entered: str  # ISO 8601
    exited: str | None
    seconds: float | None


class ExecutionOutcome(_Record):
    """One execution of the run and where it ended."""

    name: str
    status: ExecutionStatus
    outcome: Literal["published", "no_change", "forgotten"] | None  # None: it ended before publishing
    states: int  # states entered


class Notification(_Record):
    """A message the SNS topic sent (SNS's own field names)."""

    Subject: str
    Message: str


class RunSummary(_Record):
    """The summary `facetrain run` writes to OUT_DIR/run.json."""

    format: Literal["facetrain.offline-run"] = FORMAT
    version: Literal[1] = VERSION
    status: ExecutionStatus  # SUCCEEDED only when every execution did
    trigger: Literal["console", "upload"]
    executions_started: int
    training_jobs_started: int
    training_job_name: str | None  # the last one started
    training_job_status: str | None  # its DescribeTrainingJob status
    training_job_exit_code: int | None  # its container's exit code (143: stopped by SIGTERM)
    input: dict[str, Any]  # the console input, or {"trigger": "upload", "settings": …}
    bucket: str | None  # None: the run was stopped before its local stack existed
    results_prefix: str | None
    executions: list[ExecutionOutcome]
    history: list[StateVisitRecord]  # of the last execution
    lambda_invocations: int
    notifications: list[Notification]
    results: list[str] = Field(default_factory=list)  # files copied into OUT_DIR (relative paths)
    error: str | None = None  # set when status is not SUCCEEDED
    failure_reason: str | None = None
    wall_seconds: float | None = None
    interrupted: bool = False  # Ctrl-C or SIGTERM came during the run (status says how it ended)


def write_run_summary(summary: RunSummary, out_dir: Path) -> Path:
    """Write OUT_DIR/run.json; its path."""
    path = out_dir / RUN_SUMMARY_FILE
    partial = path.with_name(f".{RUN_SUMMARY_FILE}.partial")
    partial.write_text(summary.model_dump_json(indent=2) + "\n")
    partial.replace(path)  # whole or not at all, however the process ends
    return path


def read_run_summary(path: Path) -> RunSummary:
    """A run.json, or DocumentError naming the file and what does not fit."""
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise DocumentError(f"{path} is not JSON ({exc}): run facetrain run again") from None
    return parse_document(
        RunSummary,
        data,
        str(path),
        format=FORMAT,
        version=VERSION,
        remedy="it was written by another version of facetrain run; read it with that version or run again",
    )
