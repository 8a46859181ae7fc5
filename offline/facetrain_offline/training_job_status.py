"""DescribeTrainingJob's status fields on a moto-recorded job, moved as SageMaker moves them.

`set_status` sets the status and secondary status, ends the current secondary-status transition and
opens the next (with its message); `finish` does that for the job's end and also sets its end time,
training seconds (at least 1) and, when given, its FailureReason. No billable seconds: nothing is billed
for a local run, and the notification says so (facetrain_lambdas.publish) rather than bill this machine.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from moto.sagemaker.models import FakeTrainingJob


def set_status(job: FakeTrainingJob, status: str, secondary: str, message: str) -> None:
    """The job is now `status`/`secondary`; the transition into it says `message`."""
    now = datetime.now(UTC)
    job.training_job_status = status
    job.secondary_status = secondary
    job.last_modified_time = now
    job.secondary_status_transitions = [
        *[dict(t, EndTime=t.get("EndTime") or now) for t in (job.secondary_status_transitions or [])],
        {"Status": secondary, "StartTime": now, "StatusMessage": message},
    ]


def finish(
    job: FakeTrainingJob, status: str, secondary: str, started: float, reason: str | None = None
) -> None:
    """The job has ended `status`/`secondary`; `started` is its time.monotonic() at submission."""
    set_status(job, status, secondary, reason or status)
    job.training_end_time = datetime.now(UTC)
    job.training_time_in_seconds = max(1, round(time.monotonic() - started))
    job.billable_time_in_seconds = None  # DescribeTrainingJob then reports none: a local run bills nothing
    if reason:
        job.failure_reason = reason
