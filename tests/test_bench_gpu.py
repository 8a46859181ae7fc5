"""benchmarks/bench_gpu.py, ready for a GPU host: its `run` on CPU (the path a GPU host runs with
device=cuda) on one photo, one round, the plain loop and the job on both runtimes as whole processes; its
plain refusal where no runtime can use CUDA; the photo sets and pinned wheels `prepare` makes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_gpu  # noqa: E402
import bench_job  # noqa: E402
from photo_sets import real_photos, real_size_set  # noqa: E402


def bench(*arguments: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/bench_gpu.py", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_set(shared_data: Path, target: Path) -> Path:
    """One photo (one face) in target/photos/tiny."""
    photos = target / "photos" / "tiny" / "kate"
    photos.mkdir(parents=True)
    with Image.open(shared_data / "faces-small" / "kate_siegel" / "1.jpg") as opened:
        opened.convert("RGB").resize((450, 645)).save(photos / "1.jpg", quality=90)
    return target


def is_ratio(printed: float, rate: float, plain: float) -> bool:
    """Whether `printed` (2 decimals) is rate / plain, both printed with 2 decimals (rounding allowed for)."""
    low, high = (rate - 0.005) / (plain + 0.005), (rate + 0.005) / max(plain - 0.005, 1e-9)
    return low - 0.005 <= printed <= high + 0.005


@pytest.mark.slow
def test_gpu_benchmark_runs_both_runtimes_on_cpu(shared_data, tmp_path):
    target = tiny_set(shared_data, tmp_path / "gpu")
    done = bench("run", str(target), "--device", "cpu", "--rounds", "1", "--sets", "tiny", timeout=240)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "== tiny: 1 photos, cpu, 1 rounds (medians, alternated)" in lines
    assert any(line.startswith("runtime=onnx: ") and "onnxruntime" in line for line in lines), lines
    assert any(line.startswith("runtime=torch: ") and "torch" in line for line in lines), lines
    header = next(line for line in lines if line.startswith("photos/s"))
    assert header.split()[1:] == ["plain", "loop", "job", "onnx", "ratio", "job", "torch", "ratio"]
    for label in ("whole process", "photo loop"):
        row = next(line for line in lines if line.startswith(label)).split()[len(label.split()) :]
        plain, onnx, onnx_ratio, torch, torch_ratio = row
        assert all(float(rate) > 0 for rate in (plain, onnx, torch)), row
        for rate, ratio in ((onnx, onnx_ratio), (torch, torch_ratio)):
            assert ratio.endswith("x") and is_ratio(float(ratio[:-1]), float(rate), float(plain)), row
    stages = next(line for line in lines if line.startswith("detect + crop + embed")).split()[5:]
    assert stages[0] == "-" and float(stages[1]) > 0 and float(stages[3]) > 0, stages
    assert "faces accepted (round 1): plain 1, job onnx 1, job torch 1" in lines
    assert "same photos accepted by the plain loop and every job, every round: yes" in lines
    for runtime in ("onnx", "torch"):
        prefix = f"target: runtime={runtime} photo loop >= 10x the plain loop: "
        assert any(line.startswith(prefix) for line in lines), lines
    assert "Traceback" not in done.stdout + done.stderr


def test_without_a_usable_gpu_the_real_mode_says_why_and_fails(shared_data, tmp_path):
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a runtime here may use CUDA: the benchmark would run")
    target = tiny_set(shared_data, tmp_path / "gpu")
    done = bench("run", str(target), "--device", "cuda", "--rounds", "1", "--sets", "tiny")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "--device cuda: no runtime can use it on this machine" in done.stderr
    assert "runtime=onnx cannot use cuda here, not measured: " in done.stdout
    assert "install onnxruntime-gpu" in done.stdout
    assert "runtime=torch cannot use cuda here, not measured: " in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_gpu_benchmark_asks_for_prepared_photos(tmp_path):
    done = bench("run", str(tmp_path), "--device", "cpu")
    assert done.returncode != 0
    assert "run `prepare` first" in done.stderr


@pytest.mark.real_photos
def test_prepare_makes_faces_dev_and_the_real_size_set(shared_data, tmp_path):
    bench_gpu.prepare(tmp_path, "3.12", wheels=False, phone_size=False, onnx_gpu=False)

    def photos(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.glob("*/*") if p.is_file()}

    made = {name: photos(tmp_path / "photos" / name) for name in bench_gpu.SETS}
    assert made["faces-dev"] == photos(shared_data / "faces-dev")
    # bench_job's real-size set (photo_sets.real_size_set: every photo under shared data, edge-cases
    # included, at its own size), as copies that travel, not links into this machine's shared data.
    links = photos(real_size_set(shared_data, tmp_path / "links"))
    assert made["real-size"] == links
    assert len(made["real-size"]) == len(real_photos(shared_data)) == 29
    originals = sorted(photo.read_bytes() for photo in real_photos(shared_data))
    assert sorted(made["real-size"].values()) == originals
    assert "edge-cases/multiface.jpg" in made["real-size"]
    assert not any(p.is_symlink() for p in (tmp_path / "photos" / "real-size").rglob("*"))


def test_the_wheels_are_pinned_by_the_locks(tmp_path):
    pins = bench_gpu.locked_versions(REPO_ROOT / "requirements/job.txt", ("pydantic", "pillow-heif"))
    assert [pin.split("==")[0] for pin in pins] == ["pydantic", "pillow-heif"]
    assert all(pin.split("==")[1][0].isdigit() for pin in pins), pins
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "onnxruntime-gpu==1.26.0 \\\n    --hash=sha256:00\nnvidia_cudnn_cu12==9.28.0.42 ; sys_platform\n"
    )
    assert bench_gpu.locked_versions(lock, ("onnxruntime-gpu", "nvidia-cudnn-cu12")) == [
        "onnxruntime-gpu==1.26.0",
        "nvidia-cudnn-cu12==9.28.0.42",
    ]
    with pytest.raises(SystemExit, match="pins no facenet-pytorch"):
        bench_gpu.locked_versions(lock, ("facenet-pytorch",))


def test_only_onnx_jobs_get_the_cuda_12_libraries_installed_beside_onnxruntime_gpu(tmp_path, monkeypatch):
    site = tmp_path / "site"
    for package in ("cudnn", "cublas"):
        (site / "nvidia" / package / "lib").mkdir(parents=True)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64")
    with bench_gpu.onnx_cuda_libraries(site):
        inside = os.environ["LD_LIBRARY_PATH"].split(os.pathsep)
    libraries = [str(site / "nvidia" / package / "lib") for package in ("cublas", "cudnn")]
    assert inside == [*libraries, "/usr/local/nvidia/lib64"]
    assert os.environ["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    monkeypatch.delenv("LD_LIBRARY_PATH")
    with bench_gpu.onnx_cuda_libraries(tmp_path / "no-site"):
        assert "LD_LIBRARY_PATH" not in os.environ
    with bench_gpu.onnx_cuda_libraries(site):
        assert os.environ["LD_LIBRARY_PATH"].startswith(str(site))
    assert "LD_LIBRARY_PATH" not in os.environ


def measured_runs(plain: list[set[str]], jobs: dict[str, list[set[str]]]) -> bench_gpu.Runs:
    """Runs whose rounds accepted these photos (the other figures: one photo a second)."""
    process = bench_job.ProcessRun(wall_seconds=1.0, cpu_seconds=1.0, peak_rss_mib=1.0, stdout="")
    metrics = {"images_per_second": 1.0, "timings": {"detect": 0.5, "crop": 0.1, "embed": 0.4}}
    return bench_gpu.Runs(
        baselines=[process] * len(plain),
        loops=[{"photos": 2, "loop_seconds": 2.0, "accepted": sorted(accepted)} for accepted in plain],
        jobs={
            runtime: [(process, metrics, accepted) for accepted in rounds] for runtime, rounds in jobs.items()
        },
    )


def test_every_round_of_every_program_is_compared_with_the_plain_loop(capsys):
    same = measured_runs([{"a", "b"}] * 3, {"onnx": [{"a", "b"}] * 3, "torch": [{"a", "b"}] * 3})
    assert bench_gpu.report("set", "cuda", same)[1] == []
    assert "same photos accepted by the plain loop and every job, every round: yes" in capsys.readouterr().out

    # Round 1 agrees everywhere; later rounds of a job, and of the plain loop itself, do not.
    differ = measured_runs(
        [{"a", "b"}, {"a", "b"}, {"a"}],
        {"onnx": [{"a", "b"}, {"a", "b"}, {"a", "b"}], "torch": [{"a", "b"}, {"a", "b", "c"}, {"a", "b"}]},
    )
    _, differences = bench_gpu.report("set", "cuda", differ)
    assert "same photos accepted by the plain loop and every job, every round: NO" in capsys.readouterr().out
    assert differences == [
        "set, plain loop round 3: accepted 1 photos, the plain loop 2; plain loop only: ['b'], "
        "plain loop only: []",
        "set, job torch round 2: accepted 3 photos, the plain loop 2; plain loop only: [], "
        "job torch only: ['c']",
    ]


def test_different_photos_accepted_fail_the_benchmark_as_bench_job_does(capsys):
    differences = ["set, job torch round 2: accepted 3 photos, the plain loop 2; ..."]
    for refused, missed in ((False, False), (True, True)):  # before a refused runtime, a missed target
        assert bench_gpu.exit_status(differences, refused, missed, "cuda") == 1
        assert capsys.readouterr().out.splitlines() == [f"!!! DIFFERENT PHOTOS ACCEPTED: {differences[0]}"]
    assert bench_gpu.exit_status([], refused=False, missed=False, device="cuda") == 0
    assert bench_gpu.exit_status([], refused=True, missed=True, device="cuda") == 2
    assert bench_gpu.exit_status([], refused=False, missed=True, device="cuda") == 3
    assert bench_gpu.exit_status([], refused=False, missed=True, device="cpu") == 0
    assert capsys.readouterr().out == ""
