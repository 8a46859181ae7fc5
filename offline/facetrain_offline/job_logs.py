"""A local training job's CloudWatch Logs, written as SageMaker writes them.

Group `/aws/sagemaker/TrainingJobs`, one stream `<job>/algo-<n>-<epoch seconds>` per host, all created
before CreateTrainingJob returns (the SDK's log streaming lists the streams once it finds as many as the
job has instances, and reads only those), one event per line of the container's output.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class TrainingJobLogs:
    """The streams of one job (moto's CloudWatch Logs through `logs`, a boto3 client)."""

    def __init__(self, logs: Any, job_name: str, host_count: int) -> None:
        self._logs = logs
        self._lock = threading.Lock()
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        started = int(time.time())
        self.streams = [f"{job_name}/algo-{host}-{started}" for host in range(1, host_count + 1)]
        for stream in self.streams:
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)

    def put(self, host: int, line: str) -> None:
        """One line of host `host` (1-based) at the current time."""
        event = {"timestamp": int(time.time() * 1000), "message": line}
        with self._lock:  # events of one stream in order
            self._logs.put_log_events(
                logGroupName=LOG_GROUP, logStreamName=self.streams[host - 1], logEvents=[event]
            )
