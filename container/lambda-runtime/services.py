"""The two services `sam local invoke` needs here: podman's Docker-compatible API (SAM CLI's container
engine) and a moto server the function containers reach as their AWS.

Why the moto server is not on loopback: SAM CLI creates the function's container on podman's default
bridge network whatever `--docker-network` says (`host` only skips connecting it to another network:
samcli/local/docker/container.py), and a bridge container cannot reach the host's 127.0.0.1. So the server
listens on the bridge's gateway address (podman's network `podman`, 10.88.0.1 by default): reachable from
the host and its containers, not from other machines. The bridge interface exists only while a container
uses it, so the socket is bound with IP_FREEBIND (allowed before the address exists); moto's own
`moto_server` cannot do that, hence moto's WSGI application served here, as ThreadedMotoServer serves it.

Why AWS_ENDPOINT_URL comes through podman: SAM CLI passes only the variables the template declares (and
its own AWS_* set) to a function, whatever --env-vars holds; the endpoint is added to every container of
this API service by the service's containers.conf ([containers] env). The CA of the CloudFormation
stand-in (cloudformation.py) reaches them the same way, as a read-only mount ([containers] volumes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_CONTAINERS_CONF = REPO_ROOT / "container" / "podman" / "containers.conf"
PODMAN_NETWORK = "podman"  # the network compat-API containers join when none is named
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux <linux/in.h>; Python has the name from 3.12


class ServiceError(RuntimeError):
    """A service could not start; the message says which and why."""


def missing_tools() -> list[str]:
    """What `sam local invoke` here needs and this machine lacks, each with how to get it."""
    missing = []
    if not shutil.which("podman"):
        missing.append("podman (apt-get install podman buildah runc)")
    if not (REPO_ROOT / ".venv-sam" / "bin" / "sam").is_file():
        missing.append("SAM CLI in .venv-sam (make tools)")
    pyenv_python = subprocess.run(
        ["python3", "--version"],  # noqa: S607 (pyenv's shim, as `make build` uses it)
        env={**os.environ, "PYENV_VERSION": "3.13.0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if pyenv_python.returncode != 0 or not pyenv_python.stdout.startswith("Python 3.13"):
        missing.append("Python 3.13.0 for sam build (pyenv install 3.13.0)")
    return missing


def bridge_gateway(conf: Path = PROJECT_CONTAINERS_CONF) -> str:
    """The gateway address of podman's default network, where containers reach the host."""
    inspected = subprocess.run(  # noqa: S603
        ["podman", "network", "inspect", PODMAN_NETWORK],  # noqa: S607
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=False,
    )
    if inspected.returncode != 0:
        raise ServiceError(f"podman network inspect {PODMAN_NETWORK}: {inspected.stderr.strip()}")
    for subnet in json.loads(inspected.stdout)[0].get("subnets", []):
        if "." in subnet.get("gateway", ""):
            return subnet["gateway"]
    raise ServiceError(f"podman's network {PODMAN_NETWORK} has no IPv4 gateway")


def _freebind_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.bind((address, 0))
    sock.listen(128)
    return sock


@dataclass(frozen=True)
class MotoEndpoints:
    """One moto server, two addresses: for this host (seeding, checks) and for the containers."""

    host_url: str
    container_url: str


@contextlib.contextmanager
def moto_server(container_address: str) -> Iterator[MotoEndpoints]:
    """A moto server (this process's moto backends) on 127.0.0.1 and on container_address, free ports."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    application = DomainDispatcherApplication(create_backend_app)
    sockets = [_freebind_socket("127.0.0.1"), _freebind_socket(container_address)]
    servers = [
        make_server(address, sock.getsockname()[1], application, threaded=True, fd=sock.fileno())
        for address, sock in zip(("127.0.0.1", container_address), sockets, strict=True)
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, name="moto-server", daemon=True).start()
    try:
        yield MotoEndpoints(*(f"http://{s.getsockname()[0]}:{s.getsockname()[1]}" for s in sockets))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class PodmanService:
    """A running `podman system service`: its socket (DOCKER_HOST) and its containers.conf."""

    docker_host: str
    containers_conf: Path


def _service_conf(
    project_conf: Path, container_env: dict[str, str], folder: Path, volumes: Sequence[str] = ()
) -> Path:
    """The project's containers.conf with container_env and volumes ("HOST:CONTAINER:ro") added to every
    container ([containers] env, volumes)."""
    text = project_conf.read_text()
    if "\n[containers]\n" not in f"\n{text}":
        raise ServiceError(f"{project_conf} has no [containers] table to add the environment to")
    lines = "env = " + json.dumps([f"{name}={value}" for name, value in container_env.items()])
    if volumes:
        lines += "\nvolumes = " + json.dumps(list(volumes))
    conf = folder / "containers.conf"
    conf.write_text(f"\n{text}".replace("\n[containers]\n", f"\n[containers]\n{lines}\n", 1).lstrip("\n"))
    return conf


@contextlib.contextmanager
def podman_service(
    container_env: dict[str, str], timeout_s: float = 30.0, volumes: Sequence[str] = ()
) -> Iterator[PodmanService]:
    """`podman system service` on a socket of its own whose containers all get container_env and
    volumes."""
    with tempfile.TemporaryDirectory(prefix="facetrain-sam-local-") as scratch:
        folder = Path(scratch)
        conf = _service_conf(PROJECT_CONTAINERS_CONF, container_env, folder, volumes)
        socket_path = folder / "podman.sock"
        log = (folder / "podman-service.log").open("w")
        process = subprocess.Popen(  # noqa: S603
            ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],  # noqa: S607
            env={**os.environ, "CONTAINERS_CONF": str(conf)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not socket_path.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise ServiceError(
                        f"podman system service did not start: {(folder / 'podman-service.log').read_text()}"
                    )
                time.sleep(0.1)
            yield PodmanService(f"unix://{socket_path}", conf)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
