"""The hosts' two waits (facetrain.distributed): the rendezvous at the start is bounded well below the
MaxRuntime a job runs under, so its clear error can appear; the gather after it waits for the slowest
host's share however long past that bound it takes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from facetrain.distributed import GATHER_TIMEOUT, RENDEZVOUS_TIMEOUT

REPO = Path(__file__).resolve().parents[2]

# One host of a two-host job: meet, spend `share_seconds` on its share, gather; prints the master's result.
HOST = textwrap.dedent(
    """
    import json, sys, time
    from facetrain.distributed import Cluster, HostShare, joined_hosts
    host, share_seconds = sys.argv[1], float(sys.argv[2])
    cluster = Cluster(hosts=("algo-1", "algo-2"), current_host=host)
    with joined_hosts(cluster) as hosts:
        time.sleep(share_seconds)  # embedding this host's share
        shares = hosts.gather_to_master([HostShare([], [f"{host}.txt"], 0, 0, 0, share_seconds, 0)])
        print(json.dumps(None if shares is None else [name for s in shares for name in s.stray_files]))
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _template_parameter(name: str) -> dict[str, object]:
    from facetrain_offline.sam import load_sam  # the template's short forms (!Ref, !Sub) as plain data

    return load_sam(REPO / "template.yaml")["Parameters"][name]


def test_the_rendezvous_bound_lies_well_below_every_maxruntime_the_template_allows():
    runtime = _template_parameter("MaxRuntimeSeconds")
    shortest, default = float(runtime["MinValue"]), float(runtime["Default"])
    bound = RENDEZVOUS_TIMEOUT.total_seconds()
    assert bound <= shortest / 2, "a missing host must be named before even the shortest MaxRuntime ends"
    assert bound <= default / 50
    # the start function's own default MaxRuntimeInSeconds, used without the template
    from facetrain_lambdas.training_job import TrainingSettings

    assert bound <= TrainingSettings.model_fields["max_runtime_seconds"].default / 50
    assert GATHER_TIMEOUT > RENDEZVOUS_TIMEOUT  # the slowest share may take far longer than the meeting


# 8 s: well past the rendezvous bound (2 s) and the store's own timeout (twice it), so a pass shows that the
# gather waits on neither
@pytest.mark.parametrize(("slow_host", "seconds"), [("algo-1", 8.0), ("algo-2", 8.0)])
def test_a_share_that_takes_longer_than_the_rendezvous_bound_is_still_gathered(tmp_path, slow_host, seconds):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # the hosts run the code this test imports
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "FACETRAIN_RENDEZVOUS_TIMEOUT": "2",  # shorter than the slow host's share
        "FACETRAIN_GATHER_TIMEOUT": "60",
    }
    hosts = {
        host: subprocess.Popen(  # this interpreter, our own script
            [sys.executable, "-c", HOST, host, str(seconds if host == slow_host else 0)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in ("algo-1", "algo-2")
    }
    results = {host: process.communicate(timeout=120) for host, process in hosts.items()}
    for host, process in hosts.items():
        assert process.returncode == 0, (host, results[host][1][-2000:])
    assert json.loads(results["algo-1"][0].strip().splitlines()[-1]) == ["algo-1.txt", "algo-2.txt"]
    assert results["algo-2"][0].strip().splitlines()[-1] == "null"
