"""Named errors the state machine retries or catches by class name (Lambda reports it as `errorType`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
from facetrain.contract.counting import counted

MAX_LISTED_PROBLEMS = 50
MAX_LISTED_WARNINGS = 10

# Error codes AWS services return for conditions that go away by themselves.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)


def bulleted(items: list[str], limit: int, where: str | None = None) -> list[str]:
    """`- item` lines, at most `limit` of them, then one line saying how many more (and where they are)."""
    lines = [f"- {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"- … and {len(items) - limit} more" + (f" (all listed in {where})" if where else ""))
    return lines


class InvalidInput(Exception):
    """The run's input, photos or settings need fixing by a person; the message lists every problem, one
    per line, each saying what to do (it reaches the notification and the Step Functions failure as is).

    `warnings` (what validation left out without refusing it, or kept with a warning) follow the problems,
    since they may explain them (e.g. photos directly under the images prefix when no person folder was
    found).
    """

    def __init__(self, problems: list[str], where: str | None = None, warnings: Sequence[str] = ()) -> None:
        self.problems = problems
        self.warnings = list(warnings)
        lines = [
            f"The retraining input has {counted(len(problems), 'problem')} to fix:",
            *bulleted(problems, MAX_LISTED_PROBLEMS, where),
        ]
        if self.warnings:
            # each line says what happened to its file: left out of the run, or read with a warning
            lines.append(f"Warnings, not errors ({len(self.warnings)}):")
            lines.extend(bulleted(self.warnings, MAX_LISTED_WARNINGS, where))
        super().__init__("\n".join(lines))


class TransientError(Exception):
    """An AWS call failed in a way that a later retry can succeed (throttling, 5xx, network)."""


class TrainingQuotaExceeded(Exception):
    """SageMaker refused the training job for a service quota of the account (ResourceLimitExceeded): a
    person must raise it (docs/workflow.md, "Before the first run: SageMaker quotas"); not retried."""


class ResultsInvalid(Exception):
    """The training job's model.tar.gz failed verification; the current results were left untouched."""


def is_transient(error: ClientError) -> bool:
    """True for throttling and server-side errors."""
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in TRANSIENT_ERROR_CODES or status >= 500


@contextmanager
def transient_aws_errors(action: str) -> Iterator[None]:
    """Re-raise throttling, 5xx and connection errors of AWS calls as TransientError (retried by the ASL)."""
    try:
        yield
    except ClientError as exc:
        if is_transient(exc):
            raise TransientError(f"{action}: {exc}") from exc
        raise
    except (ConnectionError, HTTPClientError) as exc:
        raise TransientError(f"{action}: {exc}") from exc
