"""Several SageMaker instances, one job: each host embeds its shard of the photos (ShardedByS3Key) and
the first host gathers every host's outcomes with torch.distributed and writes the outputs.

Two waits, two bounds. The rendezvous, at the start of the job (`joined_hosts`), waits for every host of
resourceconfig.json to be there: at most RENDEZVOUS_TIMEOUT (5 min; FACETRAIN_RENDEZVOUS_TIMEOUT seconds
overrides it), well below the MaxRuntime a job runs under (the template's MaxRuntimeSeconds: default
21600 s, at least 600 s; the job cannot read it), so a host that never starts ends the job with a message
naming it instead of a silent wait until SageMaker stops the job. SageMaker starts the hosts' containers
together, each once its own shard is downloaded, so they arrive within about the difference of their
download times. The gather, once every host has embedded its share, then waits as long as the slowest
host needs (GATHER_TIMEOUT, 6 h; FACETRAIN_GATHER_TIMEOUT): the hosts are known to be there, and
SageMaker ends the whole job when one of them fails, so that bound is only a last resort.

The rendezvous is a TCPStore at the first host (MASTER_ADDR/MASTER_PORT override the address: the offline
backend runs the hosts on loopback) where each host leaves its name, so that the first host can name the
hosts that never came. The gathered payload is small (per-photo outcomes: about 2 KB each) and lives on the
CPU, so the gloo backend carries it on CPU and GPU instances alike; NCCL would move nothing faster here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch.distributed as dist

log = logging.getLogger("facetrain")
DEFAULT_PORT = 7777
RENDEZVOUS_TIMEOUT = timedelta(minutes=5)
GATHER_TIMEOUT = timedelta(hours=6)
_JOINED = "facetrain/joined/"  # + rank: the host's name, left in the store when it arrives


@dataclass(frozen=True)
class HostShare:
    """What one host contributes: its photos' outcomes and counts (gathered on the master). The known
    strangers' photos (face_imgs/_strangers/) are sharded like the others: their outcomes are among
    `outcomes` (PhotoRef.is_stranger tells them apart) and counted in `photos`, `computed`, `reused`."""

    outcomes: list[Any]
    stray_files: list[str]
    computed: int
    reused: int
    photos: int  # listed on this host, known strangers' included
    loop_seconds: float
    examined: int  # photos examined now (neither reused nor resumed): images_per_second counts these


@dataclass(frozen=True)
class Cluster:
    """This host's place among the job's hosts (sagemaker_env checks that current_host is among them)."""

    hosts: tuple[str, ...]
    current_host: str

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def is_master(self) -> bool:
        return self.rank == 0


class GatherError(RuntimeError):
    """The hosts could not meet or exchange their outcomes."""


def _seconds(variable: str, default: timedelta) -> timedelta:
    """A wait from the environment (seconds), else the default; a value that is no positive number is a
    GatherError naming the variable."""
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise GatherError(f"{variable}={raw!r} must be a positive number of seconds")
    return timedelta(seconds=seconds)


def rendezvous_timeout() -> timedelta:
    """How long the hosts wait for each other at the start (FACETRAIN_RENDEZVOUS_TIMEOUT, seconds)."""
    return _seconds("FACETRAIN_RENDEZVOUS_TIMEOUT", RENDEZVOUS_TIMEOUT)


def gather_timeout() -> timedelta:
    """How long the hosts wait for the slowest one's share (FACETRAIN_GATHER_TIMEOUT, seconds)."""
    return _seconds("FACETRAIN_GATHER_TIMEOUT", GATHER_TIMEOUT)


class HostExchange:
    """The hosts, met: `gather_to_master` once, when this host's share is ready."""

    def __init__(self, cluster: Cluster, where: str, group: Any = None) -> None:
        self.cluster = cluster
        self.where = where
        self.group = group  # every host, with the gather's long timeout (None: one host)

    def gather_to_master(self, outcomes: list[Any]) -> list[Any] | None:
        """Every host's outcomes on the master (flattened, in host order); None on the other hosts."""
        cluster = self.cluster
        if cluster.size == 1:
            return outcomes
        try:
            gathered: list[list[Any] | None] = [None] * cluster.size if cluster.is_master else []
            dist.gather_object(outcomes, gathered if cluster.is_master else None, dst=0, group=self.group)
        except (RuntimeError, OSError, ValueError) as exc:
            raise GatherError(
                f"host {cluster.current_host} could not exchange outcomes with the other hosts at "
                f"{self.where} ({exc}); one of them may have failed first: see its log"
            ) from None
        finally:
            _leave()
        if not cluster.is_master:
            return None
        return [outcome for part in gathered for outcome in (part or [])]


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _meet(cluster: Cluster, address: str, port: int, wait: timedelta) -> dist.TCPStore:
    """The rendezvous store, once every host has left its name in it (GatherError naming who is missing)."""
    where = f"{address}:{port}"
    seconds = f"{wait.total_seconds():g} s"
    bound = (
        f"The wait is {seconds} (FACETRAIN_RENDEZVOUS_TIMEOUT), well below the job's MaxRuntime: a host that "
        "never arrives ends the job here"
    )
    try:
        store = dist.TCPStore(
            address, port, cluster.size, cluster.is_master, timeout=wait, wait_for_workers=False
        )
    except (RuntimeError, OSError) as exc:  # DistNetworkError: no master listening
        if cluster.is_master:
            raise GatherError(
                f"host {cluster.current_host} (the first host) could not listen on port {port} for the other "
                f"hosts ({exc})"
            ) from None
        raise GatherError(
            f"host {cluster.current_host} could not reach the first host {cluster.hosts[0]} at {where} "
            f"within {seconds} ({exc}); it may have failed to start: see its log. {bound}."
        ) from None
    # A host that arrived first waits in init_process_group while the first host still waits for the last
    # one: up to `wait` more.
    store.set_timeout(wait * 2)
    store.set(f"{_JOINED}{cluster.rank}", cluster.current_host)
    if cluster.is_master:
        keys = [f"{_JOINED}{rank}" for rank in range(cluster.size)]
        try:
            store.wait(keys, wait)
        except (RuntimeError, OSError):  # DistStoreError: timed out
            missing = [host for rank, host in enumerate(cluster.hosts) if not store.check([keys[rank]])]
            raise GatherError(
                f"host {cluster.current_host} waited {seconds} at {where} for {len(missing)} of the "
                f"{cluster.size} hosts, which never arrived: {', '.join(missing)}; they may have failed to "
                f"start or cannot reach {address}: see their logs. {bound}."
            ) from None
    return store


@contextmanager
def joined_hosts(cluster: Cluster) -> Iterator[HostExchange]:
    """Meet the other hosts (at most rendezvous_timeout(); GatherError naming the missing ones), then
    yield the exchange that gathers the shares (waiting at most gather_timeout() for the slowest). One
    host: no meeting at all. The process group is left on the way out, whatever happens inside."""
    address = os.environ.get("MASTER_ADDR", cluster.hosts[0])
    port = int(os.environ.get("MASTER_PORT", DEFAULT_PORT))
    where = f"{address}:{port}"
    if cluster.size == 1:
        yield HostExchange(cluster, where)
        return
    wait = rendezvous_timeout()
    gather_wait = gather_timeout()  # read now: a bad value fails before any waiting
    log.info(
        "host %s (rank %d of %d): meeting the other hosts at %s:%d (waiting at most %g s)",
        cluster.current_host,
        cluster.rank,
        cluster.size,
        address,
        port,
        wait.total_seconds(),
    )
    store = _meet(cluster, address, port, wait)
    try:  # every wait but the gather's is bounded by the rendezvous: a host that fails now is not waited on
        dist.init_process_group(
            backend="gloo", store=store, rank=cluster.rank, world_size=cluster.size, timeout=wait * 2
        )
        group = dist.new_group(list(range(cluster.size)), timeout=gather_wait, backend="gloo")
    except (RuntimeError, OSError, ValueError) as exc:
        _leave()
        raise GatherError(
            f"host {cluster.current_host} met the other hosts at {address}:{port} but could not connect "
            f"to them ({exc}); see the other hosts' logs"
        ) from None
    log.info("host %s: all %d hosts are here", cluster.current_host, cluster.size)
    try:
        yield HostExchange(cluster, where, group)
    finally:
        _leave()
