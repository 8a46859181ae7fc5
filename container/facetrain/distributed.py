"""Several SageMaker instances, one job: each host embeds its shard of the photos (ShardedByS3Key) and
the first host gathers every host's outcomes with torch.distributed and writes the outputs.

The rendezvous comes from resourceconfig.json (hosts; the first is the master). MASTER_ADDR/MASTER_PORT
override the address (the offline backend runs the hosts on loopback). The gathered payload is small
(per-photo outcomes: about 2 KB each) and lives on the CPU, so the gloo backend carries it on CPU and GPU
instances alike; NCCL would move nothing faster here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch.distributed as dist

log = logging.getLogger("facetrain")
DEFAULT_PORT = 7777
# How long a host waits for the others (to start, and to finish their shares); FACETRAIN_GATHER_TIMEOUT
# (seconds) overrides it. SageMaker ends the whole job when one host fails, so this is a last resort.
GATHER_TIMEOUT = timedelta(hours=6)


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


@dataclass(frozen=True)
class Cluster:
    """This host's place among the job's hosts."""

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
    """The hosts could not exchange their outcomes."""


def _timeout() -> timedelta:
    seconds = os.environ.get("FACETRAIN_GATHER_TIMEOUT")
    return timedelta(seconds=float(seconds)) if seconds else GATHER_TIMEOUT


def gather_to_master(cluster: Cluster, outcomes: list[Any]) -> list[Any] | None:
    """Every host's outcomes on the master (flattened, in host order); None on the other hosts."""
    if cluster.size == 1:
        return outcomes
    address = os.environ.get("MASTER_ADDR", cluster.hosts[0])
    port = int(os.environ.get("MASTER_PORT", DEFAULT_PORT))
    log.info(
        "host %s (rank %d of %d): gathering at %s:%d",
        cluster.current_host,
        cluster.rank,
        cluster.size,
        address,
        port,
    )
    try:
        dist.init_process_group(
            backend="gloo",
            init_method=f"tcp://{address}:{port}",
            rank=cluster.rank,
            world_size=cluster.size,
            timeout=_timeout(),
        )
        gathered: list[list[Any] | None] = [None] * cluster.size if cluster.is_master else []
        dist.gather_object(outcomes, gathered if cluster.is_master else None, dst=0)
    except (RuntimeError, OSError, ValueError, dist.DistStoreError) as exc:
        raise GatherError(
            f"host {cluster.current_host} could not exchange outcomes with the other hosts at "
            f"{address}:{port} ({exc}); one of them may have failed first: see its log"
        ) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if not cluster.is_master:
        return None
    return [outcome for part in gathered for outcome in (part or [])]
