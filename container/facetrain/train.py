"""`train`: the SageMaker entry point (`docker run IMAGE train`), also installed as `.venv/bin/train`.

Exit 0 on success. On failure, the reason goes to output/failure (SageMaker shows its first 1024
characters as FailureReason, so the essential sentence comes first) and the exit code is non-zero.
SIGTERM (StopTrainingJob) stops the job between photos, leaves model/ without partial files, exits 143.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
from pathlib import Path

from . import stopping
from .sagemaker_env import base_dir_from_env

log = logging.getLogger("facetrain")
EXIT_STOPPED = 128 + signal.SIGTERM


FAILURE_CHARS = 1024  # what SageMaker shows of output/failure as FailureReason


def write_failure(base_dir: Path, message: str) -> None:
    """Write the failure reason where SageMaker looks for it. On a full disk, retry with only the part
    SageMaker shows (it may fit where the whole did not); the log has the reason in any case."""
    output = base_dir / "output"
    for text in (message, message[:FAILURE_CHARS]):
        try:
            output.mkdir(parents=True, exist_ok=True)
            (output / "failure").write_text(text, encoding="utf-8")
            return
        except OSError as exc:
            log.error("cannot write %s (%s); the reason: %s", output / "failure", exc, message)


def main(argv: list[str] | None = None) -> int:
    """Run the job in the SAGEMAKER_BASE_DIR tree; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "train":
        args = args[1:]  # SageMaker runs `IMAGE train`
    if args:
        print(
            f"train takes no arguments (got {' '.join(args)}); settings come from hyperparameters.json",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    base_dir = base_dir_from_env()
    previous = stopping.install()  # before the heavy imports: a stop during start-up is handled too
    try:
        # Imported here, after the handler: torch takes seconds to import.
        from .contract.config_files import ConfigError
        from .contract.hyperparameters import SettingsError
        from .distributed import GatherError
        from .faces import DeviceError, WeightsError
        from .job import JobFailure, run_job
        from .outputs import OutputsNotWritten
        from .sagemaker_env import ContractError, load_environment

        expected = (
            JobFailure,
            SettingsError,
            ConfigError,
            ContractError,
            WeightsError,
            DeviceError,
            GatherError,
            OutputsNotWritten,
        )
        try:
            stopping.check()  # a stop during the imports above was recorded: act on it now
            run_job(load_environment(base_dir))
            return 0
        except expected as exc:
            message = str(exc)
            log.error("job failed: %s", message)
            write_failure(base_dir, message)
            return 1
    except stopping.JobStopped as exc:
        message = f"Stopped: {exc}; model/ holds no partial output."
        log.warning(message)
        write_failure(base_dir, message)
        return EXIT_STOPPED
    except Exception as exc:
        log.error("internal error:\n%s", traceback.format_exc())
        write_failure(
            base_dir,
            f"Internal error ({type(exc).__name__}: {exc}). This is a facetrain bug, not bad input; "
            "the traceback is in the job's log.",
        )
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
