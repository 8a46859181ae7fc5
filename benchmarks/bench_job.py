"""Benchmark: the facetrain job vs the plain facenet-pytorch loop, each as a whole process, same photos.

Prints photos/s for both (whole process, and the photo loop alone without imports and model set-up),
their ratios, the faces each accepted, and peak memory; beside them the job with embedder=dlib-resnet
(a trained model) on the same photos in the same rounds. Then runs the job (each embedder) on the photos
repeated 2 and 2 x `--scale` times to show that peak memory does not grow with the number of photos.

    make bench            # or: .venv/bin/python benchmarks/bench_job.py [IMAGES_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from facetrain.contract.embeddings_file import load_embeddings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "faces-dev"


@dataclass
class ProcessRun:
    wall_seconds: float
    peak_rss_mib: float
    stdout: str


def run_measured(command: list[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run a command to completion; its wall time and its own peak RSS (the child is reaped with wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    return ProcessRun(wall, usage.ru_maxrss / 1024, output)


def job_tree(images: Path, hyperparameters: dict[str, str]) -> Path:
    """A SAGEMAKER_BASE_DIR tree whose face_imgs channel links to the photos."""
    base = Path(tempfile.mkdtemp(prefix="facetrain-bench-"))
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "data").mkdir(parents=True)
    (base / "input" / "data" / "face_imgs").symlink_to(images.resolve())
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return base


def repeated_photos(images: Path, times: int) -> Path:
    """The same photos `times` over (symlinks, new names): a bigger dataset with the same content."""
    root = Path(tempfile.mkdtemp(prefix="facetrain-bench-x"))
    for photo in sorted(p for p in images.rglob("*") if p.is_file()):
        relative = photo.relative_to(images)
        for copy in range(times):
            target = root / relative.parent / f"{copy}-{relative.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(photo.resolve())
    return root


def run_job(images: Path, hyperparameters: dict[str, str]) -> tuple[ProcessRun, dict, set[str]]:
    """Run `train` on the photos; its process figures, metrics.json and the photos it embedded."""
    base = job_tree(images, hyperparameters)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
    run = run_measured([str(Path(sys.executable).with_name("train"))], env)
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    records = load_embeddings(base / "model" / "saved_embeddings.pkl")["records"]
    return run, metrics, {record["key"] for record in records}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", type=Path, nargs="?", default=DEFAULT_IMAGES)
    parser.add_argument("--scale", type=int, default=4, help="repeat factor for the memory check (default 4)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each program, alternated (3)")
    args = parser.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no photos at {args.images}: pass a folder of <identity>/<photo> files")
    hyperparameters = {"weights": "none", "device": args.device}
    dlib_hyperparameters = {"embedder": "dlib-resnet", "device": args.device}

    baseline_command = [
        sys.executable,
        str(ROOT / "benchmarks" / "baseline_loop.py"),
        str(args.images),
        "--device",
        args.device,
    ]
    # Alternate the two programs `--rounds` times and compare medians: one cold run of 24 photos is
    # noisy on a shared 2-core machine.
    baselines, bases, jobs, dlib_jobs = [], [], [], []
    for _ in range(args.rounds):
        baselines.append(run_measured(baseline_command))
        bases.append(json.loads(baselines[-1].stdout.strip().splitlines()[-1]))
        jobs.append(run_job(args.images, hyperparameters))
        dlib_jobs.append(run_job(args.images, dlib_hyperparameters))
    base = bases[0]
    job_accepted = jobs[0][2]
    photos = base["photos"]

    def rate(seconds: float) -> float:
        return photos / seconds

    # The job's own photo loop (decode → detect → crop → embed), as the baseline's loop; the job's
    # evaluation and report come after it and count in the whole-process figure only.
    rows = [
        (
            "photos/s (whole process)",
            statistics.median(rate(run.wall_seconds) for run in baselines),
            statistics.median(rate(run.wall_seconds) for run, _, _ in jobs),
            statistics.median(rate(run.wall_seconds) for run, _, _ in dlib_jobs),
        ),
        (
            "photos/s (photo loop)",
            statistics.median(rate(b["loop_seconds"]) for b in bases),
            statistics.median(m["images_per_second"] for _, m, _ in jobs),
            statistics.median(m["images_per_second"] for _, m, _ in dlib_jobs),
        ),
    ]
    print(
        f"photos: {photos} from {args.images}  device: {args.device}  cores: {os.cpu_count()}  "
        f"rounds: {args.rounds} (medians)"
    )
    print(f"{'':28}{'baseline loop':>16}{'facetrain job':>16}{'ratio':>8}{'job dlib-resnet':>18}{'ratio':>8}")
    for label, old, new, dlib in rows:
        print(f"{label:28}{old:16.2f}{new:16.2f}{new / old:7.2f}x{dlib:18.2f}{dlib / old:7.2f}x")
    loop_ratios = [
        m["images_per_second"] / rate(b["loop_seconds"]) for b, (_, m, _) in zip(bases, jobs, strict=True)
    ]
    print(f"{'loop ratio per round':28}{' '.join(f'{r:.2f}x' for r in loop_ratios):>40}")
    baseline_peak = max(run.peak_rss_mib for run in baselines)
    job_peak = max(run.peak_rss_mib for run, _, _ in jobs)
    dlib_peak = max(run.peak_rss_mib for run, _, _ in dlib_jobs)
    print(f"{'peak RSS MiB (max)':28}{baseline_peak:16.0f}{job_peak:16.0f}{'':8}{dlib_peak:18.0f}")
    dlib_accepted = dlib_jobs[0][2]
    counts = f"{len(base['accepted']):16d}{len(job_accepted):16d}{'':8}{len(dlib_accepted):18d}"
    print(f"{'faces accepted':28}{counts}")
    only_baseline = sorted(set(base["accepted"]) - job_accepted)
    only_job = sorted(job_accepted - set(base["accepted"]))
    same = (
        "yes"
        if not only_baseline and not only_job
        else f"no: baseline only {only_baseline}, job only {only_job}"
    )
    print(f"same faces accepted: {same}")

    dlib_accuracy = dlib_jobs[0][1]["evaluation"]["identification_accuracy"]
    print(f"dlib-resnet leave-one-out identification accuracy: {dlib_accuracy}")

    # Memory: two dataset sizes, both larger than one embedding batch, so only the photo count differs.
    small, big = repeated_photos(args.images, 2), repeated_photos(args.images, 2 * args.scale)
    for name, settings in (("facenet", hyperparameters), ("dlib-resnet", dlib_hyperparameters)):
        small_job, small_metrics, _ = run_job(small, settings)
        big_job, big_metrics, _ = run_job(big, settings)
        small_rate, big_rate = small_metrics["images_per_second"], big_metrics["images_per_second"]
        print(
            f"memory ({name}): {small_metrics['images_total']} photos → peak "
            f"{small_job.peak_rss_mib:.0f} MiB; {big_metrics['images_total']} photos → peak "
            f"{big_job.peak_rss_mib:.0f} MiB (x{big_job.peak_rss_mib / small_job.peak_rss_mib:.2f} for "
            f"x{args.scale} photos); loop {small_rate:.2f} and {big_rate:.2f} photos/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
