"""The local hosts as containers: the job's training image run by podman, as SageMaker runs it.

SageMaker starts `docker run IMAGE train` on each instance with the host's /opt/ml tree in place and, with
network isolation, no network. Here each host's tree (host_files.py) is bind-mounted at /opt/ml and:

- one host: `--network none` (EnableNetworkIsolation: the container reaches nothing);
- several hosts: one podman network per job, `--internal` (no route out, as isolation wants), each
  container named by its host (`algo-1` …) so the job's rendezvous at resourceconfig's first host resolves
  through the network's DNS as it does between SageMaker's instances.

`ContainerHost` is a `subprocess.Popen` of `podman run`, so the backend's streaming, MaxRuntime and
StopTrainingJob code (host_processes.py) drives containers and processes alike; its signals go to the
container (`podman kill --signal`), not to the podman client, so SIGTERM reaches `train` as SageMaker's
does and SIGKILL cannot leave a container behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .lambda_runtime import environment_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
# podman's settings for this machine kind (runc, cgroupfs, no default ulimits): see that file.
CONTAINERS_CONF = REPO_ROOT / "container" / "podman" / "containers.conf"
OPT_ML = "/opt/ml"
VGGFACE2_LABEL = "facetrain.vggface2-weights"  # container/Dockerfile: "baked" or "absent"


class ContainerEngineError(RuntimeError):
    """podman is missing, or the image is not in its local store; the message names the fix."""


def podman_environment() -> dict[str, str]:
    """This process's environment with CONTAINERS_CONF set to the project's podman settings (unless the
    caller chose other settings)."""
    env = environment_snapshot()
    if "CONTAINERS_CONF" not in env and CONTAINERS_CONF.is_file():
        env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman_path() -> str:
    """Where podman is installed; ContainerEngineError (naming the fix) when it is not."""
    path = shutil.which("podman")
    if path is None:
        raise ContainerEngineError(
            "podman is not installed: install it (as root: apt-get install -y podman buildah runc "
            "debootstrap; see the README's training image section), then make image-local"
        )
    return path


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - podman with our own arguments
        [podman_path(), *args], env=podman_environment(), capture_output=True, text=True, check=check
    )


class ContainerHost(subprocess.Popen[str]):
    """`podman run` of one host's container; terminate() and kill() signal the container itself."""

    def __init__(self, container: str, command: list[str]) -> None:
        self.container = container
        super().__init__(
            command,
            env=podman_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            # Its own session, as the process hosts: a Ctrl-C reaches `facetrain run`, not the container.
            start_new_session=True,
        )

    def send_signal(self, sig: int) -> None:
        """Deliver `sig` to the container's main process (`train`); nothing when it has exited."""
        if self.poll() is not None:
            return
        name = signal.Signals(sig).name.removeprefix("SIG")
        _podman("kill", "--signal", name, self.container, check=False)
        if sig == signal.SIGKILL:
            super().send_signal(sig)  # and the client too: nothing waits on a container that is gone


def job_resources(job_name: str, hosts: int) -> tuple[str | None, list[str]]:
    """The podman network (None for one host) and the container names of a job's hosts."""
    tag = hashlib.sha256(job_name.encode()).hexdigest()[:12]
    network = f"facetrain-{tag}" if hosts > 1 else None
    return network, [f"facetrain-{tag}-algo-{i}" for i in range(1, hosts + 1)]


@dataclass(frozen=True)
class ContainerEngine:
    """Runs a job's hosts as containers of `image` (a name in podman's local store)."""

    image: str

    def check(self) -> None:
        """Raise ContainerEngineError unless podman is installed and the image is in its local store."""
        if _podman("image", "exists", self.image, check=False).returncode != 0:
            raise ContainerEngineError(
                f"image {self.image} is not in podman's local store: build it with make image-local "
                "(or pass the name of an image that `podman images` lists)"
            )

    def label(self, name: str) -> str | None:
        """The image's label `name`, or None when it has none."""
        found = _podman("image", "inspect", "--format", "{{json .Labels}}", self.image, check=False)
        if found.returncode != 0:
            return None
        labels = json.loads(found.stdout or "null") or {}
        value = labels.get(name)
        return str(value) if value is not None else None

    def has_vggface2(self) -> bool:
        """Whether the image was built with the vggface2 weights (its label says)."""
        return self.label(VGGFACE2_LABEL) == "baked"

    @contextmanager
    def hosts(
        self, job_name: str, bases: list[Path], extra_env: Mapping[str, str]
    ) -> Iterator[list[ContainerHost]]:
        """Start one container per host tree (`bases[i]` is algo-<i+1>'s /opt/ml); on leaving, remove
        any that still run and the job's network."""
        network, names = job_resources(job_name, len(bases))
        if network:
            _podman("network", "rm", "--force", network, check=False)
            _podman("network", "create", "--internal", network)
        started: list[ContainerHost] = []
        try:
            for host, (name, base) in enumerate(zip(names, bases, strict=True), start=1):
                started.append(ContainerHost(name, self._run_command(name, host, base, network, extra_env)))
            yield started
        finally:
            for process in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            for name in names:
                _podman("rm", "--force", "--ignore", name, check=False)
            if network:
                _podman("network", "rm", "--force", network, check=False)

    def _run_command(
        self, name: str, host: int, base: Path, network: str | None, extra_env: Mapping[str, str]
    ) -> list[str]:
        command = [podman_path(), "run", "--rm", "--name", name, "--volume", f"{base.resolve()}:{OPT_ML}"]
        if network is None:
            command += ["--network", "none"]
        else:
            command += ["--network", network, "--hostname", f"algo-{host}", "--network-alias", f"algo-{host}"]
        for key, value in extra_env.items():
            command += ["--env", f"{key}={value}"]
        return [*command, self.image, "train"]
