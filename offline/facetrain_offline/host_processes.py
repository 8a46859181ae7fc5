"""The local hosts' containers: `train` run once per host as a process, its output streamed, and the
signals SageMaker sends.

`start_hosts` starts one process per host tree (SAGEMAKER_BASE_DIR), each in its own session, all
listening on loopback (MASTER_ADDR/MASTER_PORT) where SageMaker's hosts resolve each other by name.
`stream_to_exit` streams their lines until all have exited: SIGTERM to all at MaxRuntimeInSeconds, and to
the others when one fails. `signal_stop` is StopTrainingJob's: SIGTERM now, SIGKILL after the grace period.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from .lambda_runtime import environment_snapshot

LineSink = Callable[[str, int], None]  # (line, host number from 1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_hosts(
    command: list[str], bases: list[Path], extra_env: Mapping[str, str]
) -> list[subprocess.Popen[str]]:
    """`<command> train` once per host tree, stdout and stderr together on a pipe (loopback stands in for
    the hosts' network)."""
    port = _free_port()
    processes = []
    for base in bases:
        env = {
            **environment_snapshot(),
            **extra_env,
            "SAGEMAKER_BASE_DIR": str(base),
            "PYTHONUNBUFFERED": "1",
            # On SageMaker the hosts resolve each other by name; here they all listen on loopback.
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        processes.append(
            subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
                [*command, "train"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                # Its own session: a Ctrl-C at the terminal reaches `facetrain run`, which stops the
                # job as SageMaker would (SIGTERM), not the container directly.
                start_new_session=True,
            )
        )
    return processes


def signal_stop(
    processes: list[subprocess.Popen[str]], grace_seconds: float, say: Callable[[str], None]
) -> None:
    """SIGTERM now, SIGKILL to those still running after the grace period (said through `say`)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()

    def kill() -> None:
        for process in processes:
            if process.poll() is None:
                say(f"local training backend: SIGKILL after {grace_seconds:g} s")
                process.kill()

    timer = threading.Timer(grace_seconds, kill)
    timer.daemon = True
    timer.start()


def stream_to_exit(
    processes: list[subprocess.Popen[str]],
    max_runtime: float,
    stop_requested: threading.Event,
    emit: LineSink,
) -> tuple[list[int], bool]:
    """Hand each host's lines to `emit` (prefixed `[algo-n] ` when there are several hosts) until every
    process has exited; SIGTERM them all when `max_runtime` seconds pass. Returns (exit codes, whether
    MaxRuntimeInSeconds stopped them). `stop_requested`: a StopTrainingJob has already SIGTERMed them."""
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        for process in processes:
            process.terminate()  # SIGTERM, as SageMaker does at MaxRuntimeInSeconds

    def stream(process: subprocess.Popen[str], host: int) -> None:
        assert process.stdout is not None
        prefix = f"[algo-{host}] " if len(processes) > 1 else ""
        for line in process.stdout:
            emit(prefix + line.rstrip("\n"), host)
        stopping = stop_requested.is_set() or timed_out.is_set()  # they have had their SIGTERM
        # As on SageMaker, one failed host ends the others' work; a second SIGTERM to a host that is
        # already exiting after the first could meet it in interpreter shutdown (exit -15, not 143).
        if process.wait() != 0 and not stopping:
            for other in processes:
                if other.poll() is None:
                    other.terminate()

    timer = threading.Timer(max_runtime, stop)
    timer.start()
    readers = [
        threading.Thread(target=stream, args=(process, host))
        for host, process in enumerate(processes, start=1)
    ]
    try:
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        codes = [process.wait() for process in processes]
    finally:
        timer.cancel()
    return codes, timed_out.is_set()
