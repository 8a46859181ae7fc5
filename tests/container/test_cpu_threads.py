"""facetrain.cpu_threads: torch gets the cores this process may use, a cgroup quota included."""

from __future__ import annotations

import os

import pytest
from facetrain.cpu_threads import intra_op_threads, quota_cores, usable_cores


@pytest.mark.parametrize(
    ("line", "cores"),
    [
        ("max 100000", None),
        ("200000 100000", 2),
        ("150000 100000", 2),
        ("50000 100000", 1),
        ("x y", None),
        ("", None),
    ],
)
def test_cgroup_quota_is_read_as_whole_cores(line, cores):
    assert quota_cores(line) == cores


def test_usable_cores_are_capped_by_the_quota(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    assert usable_cores(cpu_max) == 1
    assert usable_cores(tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_an_explicit_omp_num_threads_is_the_operators_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert intra_op_threads() == 3  # passed on: ONNX Runtime's pool does not read OMP_NUM_THREADS
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert intra_op_threads() == usable_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert intra_op_threads() == usable_cores()
