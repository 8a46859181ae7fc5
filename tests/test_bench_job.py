"""benchmarks/bench_job.py (`make bench`) cannot rot: its quick mode runs the plain loop and the job on both
runtimes as whole processes on one real-size photo; its report flags different accepted photos loudly and
says by how much a target is missed; photo_sets.real_size_set links every shared photo unchanged."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_job  # noqa: E402
import photo_sets  # noqa: E402

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def shared_photos(shared_data: Path) -> dict[str, bytes]:
    """Every photo under ../shared/data, by '<its folder>/<name>'."""
    return {
        f"{p.parent.name}/{p.name}": p.read_bytes()
        for p in shared_data.rglob("*")
        if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
    }


@pytest.mark.real_photos
def test_the_real_size_set_is_every_shared_photo_unchanged_in_its_identity_folder(shared_data, tmp_path):
    made = photo_sets.real_size_set(shared_data, tmp_path / "all")
    linked = {p.relative_to(made).as_posix(): p.read_bytes() for p in made.glob("*/*") if p.is_file()}

    expected = shared_photos(shared_data)
    assert linked == expected  # the originals' bytes: faces-dev, faces-small and edge-cases
    assert {"edge-cases/multiface.jpg", "kate_siegel/1.jpg", "person_02/img3.jpg"} <= set(linked)
    assert photo_sets.long_sides(made) == (500, 2400)
    two = photo_sets.real_size_set(shared_data, tmp_path / "two", limit=2)
    assert len(photo_sets.photos_of(two)) == 2


def finished_set(images: Path, torch_accepted: set[str]) -> bench_job.SetResult:
    """A set's rounds as measure_set returns them: the plain loop and both jobs (figures as a run gives)."""

    def run(
        wall: float, rss: float, accepted: set[str], first: float | None, loop: float
    ) -> bench_job.ProgramRun:
        metrics = None if first is None else {"timings": dict.fromkeys(bench_job.STAGES, 0.1)}
        process = bench_job.ProcessRun(wall, wall, rss, "")
        return bench_job.ProgramRun(process, loop, accepted, metrics, first)

    accepted = {p.relative_to(images).as_posix() for p in photo_sets.photos_of(images)}
    return bench_job.SetResult(
        "real-size",
        images,
        len(accepted),
        {
            bench_job.PLAIN: [run(12.0, 900, accepted, None, 0.5)],
            "job onnx": [run(4.0, 400, accepted, 0.8, 4.0)],
            "job torch": [run(6.0, 950, torch_accepted, 5.0, 2.0)],
        },
    )


@pytest.mark.real_photos
def test_different_accepted_photos_are_printed_loudly_and_fail_and_a_missed_target_says_by_how_much(
    shared_data, tmp_path, capsys
):
    images = photo_sets.real_size_set(shared_data, tmp_path / "set", limit=2)
    keys = sorted(p.relative_to(images).as_posix() for p in photo_sets.photos_of(images))

    same = bench_job.Report()
    bench_job.print_set(finished_set(images, set(keys)), same)
    printed = capsys.readouterr().out
    assert "same photos accepted by the plain loop and every job, every round: yes" in printed
    assert "job onnx vs job torch: 1.50x whole process, 2.00x photo loop, 1.50x fewer CPU seconds" in printed
    assert bench_job.conclude(same) == 3  # 3x of 4x, and 0.8 s to the first photo
    printed = capsys.readouterr().out
    assert (
        "target real-size: job onnx >= 4x the plain loop (whole process): MISSED by 1.00x (3.00x of 4.00x)"
        in (printed)
    )
    assert "target real-size: job onnx start -> first photo <= 0.5 s: MISSED by 0.30 s (0.80 s)" in printed
    assert "target real-size: job onnx peak RSS <= job torch's (950 MiB): met 400 MiB" in printed

    different = bench_job.Report()
    bench_job.print_set(finished_set(images, {keys[0]}), different)
    assert "every round: NO" in capsys.readouterr().out
    assert bench_job.conclude(different) == 1
    loud = (
        "!!! DIFFERENT PHOTOS ACCEPTED: real-size, job torch round 1: accepted 1 photos, the plain loop 2; "
        f"plain loop only: ['{keys[1]}'], job torch only: []"
    )
    assert loud in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.real_photos
def test_the_quick_mode_runs_every_program_as_a_whole_process(shared_data):
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_job.py", "--rounds", "1", "--limit", "1", "--sets", "real-size",
         "--no-dlib", "--scale", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip

    assert done.returncode in (0, 3), done.stdout + done.stderr  # 3: a target missed on a loaded machine
    lines = done.stdout.splitlines()
    assert "== real-size: 1 photos (1200-1200 px)  rounds: 1 (medians, order rotated)" in lines, lines
    header = next(line for line in lines if line.strip().startswith("plain loop")).split()
    assert header == ["plain", "loop", "job", "onnx", "ratio", "job", "torch", "ratio"]
    for label in ("photos/s (whole process)", "photos/s (photo loop)"):
        plain, onnx, onnx_ratio, torch, torch_ratio = next(
            line for line in lines if line.startswith(label)
        ).split()[len(label.split()) :]
        for rate, ratio in ((onnx, onnx_ratio), (torch, torch_ratio)):
            assert (
                float(rate) > 0
                and abs(float(ratio[:-1]) - float(rate) / float(plain)) < 0.05 * float(ratio[:-1]) + 0.02
            ), (label, plain, rate, ratio)
    first = next(line for line in lines if line.startswith("start -> first photo (s)")).split()[-2:]
    assert all(0 < float(seconds) < 60 for seconds in first), first
    assert "same photos accepted by the plain loop and every job, every round: yes" in lines
    assert any(
        re.fullmatch(r"job onnx timings \(median s\): model_setup .* detect .* embed .*", line)
        for line in lines
    )
    assert any(line.startswith("memory (job onnx): 2 photos -> peak ") for line in lines), lines
    targets = [line for line in lines if line.startswith("target real-size: ")]
    assert len(targets) == 3 and all(re.search(r": (met|MISSED by) ", line) for line in targets), targets
    assert "Traceback" not in done.stdout + done.stderr
