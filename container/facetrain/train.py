"""`train`: the SageMaker entry point (`docker run IMAGE train`), also installed as `.venv/bin/train`.

Exit 0 on success. On failure, the reason goes to output/failure (SageMaker shows its first 1024
characters as FailureReason, so the essential sentence comes first) and the exit code is non-zero.
SIGTERM (StopTrainingJob) stops the job between photos, leaves model/ without partial files, exits 143.

The log (stdout, which SageMaker sends to CloudWatch /aws/sagemaker/TrainingJobs, a log group the stack
neither owns nor bounds) holds no identity name and no photo key at INFO: counts, settings, hosts and
timings. A failure's reason, which may name a photo or a person so that it can be fixed, goes to
output/failure (the job's FailureReason) and is logged only at DEBUG, as are the rejected photos.
FACETRAIN_LOG_LEVEL=DEBUG turns that detail on (for a job run by hand; the stack never sets it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from . import stopping
from .sagemaker_env import base_dir_from_env

log = logging.getLogger("facetrain")
EXIT_STOPPED = 128 + signal.SIGTERM
LOG_LEVEL_ENV = "FACETRAIN_LOG_LEVEL"  # the job's log level (INFO when unset); DEBUG adds names and keys
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


FAILURE_CHARS = 1024  # what SageMaker shows of output/failure as FailureReason


TRACEBACK_HEADER = "Traceback (most recent call last):"
CHAINED_TRACEBACK = (  # the lines that join the tracebacks of chained exceptions
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def without_traceback(message: str) -> str:
    """The message without any Python traceback it quotes (a library's exception may embed one, e.g. of a
    child process): its header and indented frame lines go, the exception's own line stays. The reason is
    read by a person, as the training job's FailureReason and in the notification; tracebacks belong in
    the log. Hand-written: the stdlib formats tracebacks but has nothing to take one out of a text."""
    kept: list[str] = []
    in_traceback = False
    for line in message.splitlines():
        if TRACEBACK_HEADER in line or line.strip() in CHAINED_TRACEBACK:
            in_traceback = True
            while kept and not kept[-1].strip():  # the blank lines that led up to it
                kept.pop()
            if TRACEBACK_HEADER in line and (before := line[: line.index(TRACEBACK_HEADER)].rstrip()):
                kept.append(before)
        elif not (in_traceback and (line.startswith(" ") or not line.strip())):
            in_traceback = False
            kept.append(line)
    return "\n".join(kept)


def write_failure(base_dir: Path, message: str) -> None:
    """Write the failure reason where SageMaker looks for it, without a traceback (without_traceback). On
    a full disk, retry with only the part SageMaker shows (it may fit where the whole did not); the log has
    the reason in any case."""
    output = base_dir / "output"
    message = without_traceback(message)
    for text in (message, message[:FAILURE_CHARS]):
        try:
            output.mkdir(parents=True, exist_ok=True)
            (output / "failure").write_text(text, encoding="utf-8")
            return
        except OSError as exc:
            log.error("cannot write %s (%s); the reason is logged at DEBUG", output / "failure", exc)
            log.debug("the reason: %s", message)  # may name a photo or a person: not at INFO


def configure_logging() -> None:
    """Log to stdout at INFO; the `facetrain` logger at FACETRAIN_LOG_LEVEL when it is set (other
    libraries stay at INFO: DEBUG there is noise, e.g. Pillow's chunk traces)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    wanted = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    if not wanted:
        return  # INFO, from the root logger
    if wanted not in LOG_LEVELS:
        log.warning(
            "%s=%r is not a log level: logging at INFO; use one of %s",
            LOG_LEVEL_ENV,
            os.environ[LOG_LEVEL_ENV],
            ", ".join(LOG_LEVELS),
        )
        wanted = "INFO"
    log.setLevel(wanted)


def _stack_without_messages(exc: BaseException) -> str:
    """The traceback's frames and the exception's type, without its message (which may quote a photo's
    path): what the log keeps at INFO of an internal error. The stdlib renders the frames."""
    kind = type(exc)
    return "".join(traceback.format_tb(exc.__traceback__)) + f"{kind.__module__}.{kind.__qualname__}"


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
    configure_logging()
    base_dir = base_dir_from_env()
    previous = stopping.install()  # before the heavy imports: a stop during start-up is handled too
    try:
        # Imported here, after the handler: the job's libraries take a while to import.
        from .accelerator import DeviceError
        from .contract.config_files import ConfigError
        from .contract.hyperparameters import SettingsError
        from .distributed import GatherError
        from .inference.model_files import WeightsError
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
            log.error(
                "job failed (%s): the reason is in output/failure, shown as the training job's "
                "FailureReason; it may name a photo or a person, so the log has it only at DEBUG",
                type(exc).__name__,
            )
            log.debug("job failed: %s", message)
            write_failure(base_dir, message)
            return 1
    except stopping.JobStopped as exc:
        message = f"Stopped: {exc}; model/ holds no partial output."
        log.warning(message)
        write_failure(base_dir, message)
        return EXIT_STOPPED
    except Exception as exc:
        log.error("internal error (its message is in output/failure):\n%s", _stack_without_messages(exc))
        log.debug("internal error:\n%s", traceback.format_exc())
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
