"""Named errors the state machine retries or catches by class name (Lambda reports it as `errorType`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

MAX_LISTED_PROBLEMS = 50

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


class InvalidInput(Exception):
    """The run's input, photos or settings need fixing by a person; the message lists every problem."""

    def __init__(self, problems: list[str], where: str | None = None) -> None:
        self.problems = problems
        shown = problems[:MAX_LISTED_PROBLEMS]
        lines = [f"The retraining input has {len(problems)} problem(s) to fix:", *(f"- {p}" for p in shown)]
        if len(problems) > len(shown):
            lines.append(
                f"- … and {len(problems) - len(shown)} more" + (f" (all listed in {where})" if where else "")
            )
        super().__init__("\n".join(lines))


class TransientError(Exception):
    """An AWS call failed in a way that a later retry can succeed (throttling, 5xx, network)."""


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
