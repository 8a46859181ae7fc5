"""benchmarks/bench_gpu.py's `run` on CPU (the path a lent GPU runs with device=cuda): one small photo set,
one round, the plain loop and the job as whole processes; it prints both rates, the ratio and the target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_gpu_benchmark_runs_on_cpu(shared_data, tmp_path):
    photos = tmp_path / "gpu" / "photos" / "tiny" / "kate"
    photos.mkdir(parents=True)
    with Image.open(shared_data / "faces-small" / "kate_siegel" / "1.jpg") as opened:
        opened.convert("RGB").resize((450, 645)).save(photos / "1.jpg", quality=90)

    command = [sys.executable, "benchmarks/bench_gpu.py", "run", str(tmp_path / "gpu"), "--device", "cpu"]
    done = subprocess.run(
        [*command, "--rounds", "1", "--sets", "tiny"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "== tiny: 1 photos, cpu" in lines
    whole = next(line for line in lines if line.startswith("whole process"))
    loop = next(line for line in lines if line.startswith("photo loop"))
    for line in (whole, loop):
        plain, job, ratio = line.split()[-3:]
        assert float(plain) > 0 and float(job) > 0 and ratio.endswith("x")
    assert "faces accepted: plain 1, job 1, same: True" in lines
    assert any(line.startswith("target: photo loop >= 10x the plain loop: ") for line in lines)


def test_gpu_benchmark_asks_for_prepared_photos(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_gpu.py", "run", str(tmp_path), "--device", "cpu"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "run `prepare` first" in done.stderr
