"""Benchmark: the facetrain job vs the plain facenet-pytorch loop, each as a whole process, same photos.

Two photo sets: IMAGES_DIR (faces-dev) and phone-size copies of faces-dev and faces-small (3000-4500 px,
made at run time by photo_sets.phone_size_copies). For each, the three programs run alternately
`--rounds` times: the plain loop, the job (facenet, random weights) and the job with embedder=dlib-resnet
(a trained model). Prints medians of photos/s (whole process, and the photo loop alone without imports
and model set-up), the ratios to the plain loop, CPU seconds, peak memory and the faces each accepted.
Then runs the job (each embedder) on IMAGES_DIR's photos repeated 2 and 2 x `--scale` times to show that
peak memory does not grow with the number of photos.

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
from photo_sets import phone_size_copies

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DEFAULT_IMAGES = DATA / "faces-dev"


@dataclass
class ProcessRun:
    wall_seconds: float
    cpu_seconds: float  # user + system, the process and its threads
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
    return ProcessRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output)


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
    run = run_measured([sys.executable, "-m", "facetrain.train"], env)  # what `train` runs
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    records = load_embeddings(base / "model" / "saved_embeddings.pkl")["records"]
    return run, metrics, {record["key"] for record in records}


@dataclass
class SetResult:
    """Every round of the three programs on one photo set."""

    photos: int
    baselines: list[ProcessRun]
    loops: list[dict]  # the plain loop's JSON line per round
    jobs: list[tuple[ProcessRun, dict, set[str]]]
    dlib_jobs: list[tuple[ProcessRun, dict, set[str]]]


def measure_set(images: Path, device: str, rounds: int) -> SetResult:
    """The plain loop, the facenet job and the dlib-resnet job, alternated `rounds` times (a cold run is
    noisy on a shared machine: the medians are compared)."""
    command = [sys.executable, str(ROOT / "benchmarks" / "baseline_loop.py"), str(images), "--device", device]
    result = SetResult(0, [], [], [], [])
    for _ in range(rounds):
        result.baselines.append(run_measured(command))
        result.loops.append(json.loads(result.baselines[-1].stdout.strip().splitlines()[-1]))
        result.jobs.append(run_job(images, {"weights": "none", "device": device}))
        result.dlib_jobs.append(run_job(images, {"embedder": "dlib-resnet", "device": device}))
    result.photos = result.loops[0]["photos"]
    return result


def print_set(name: str, images: Path, result: SetResult, rounds: int) -> None:
    """One table: medians, ratios to the plain loop, per-round loop ratios, memory, faces accepted."""
    photos = result.photos
    median = statistics.median
    jobs = [run for run, _, _ in result.jobs]
    dlibs = [run for run, _, _ in result.dlib_jobs]
    rows = [
        (
            "photos/s (whole process)",
            median(photos / run.wall_seconds for run in result.baselines),
            median(photos / run.wall_seconds for run in jobs),
            median(photos / run.wall_seconds for run in dlibs),
        ),
        (
            "photos/s (photo loop)",
            median(photos / loop["loop_seconds"] for loop in result.loops),
            median(m["images_per_second"] for _, m, _ in result.jobs),
            median(m["images_per_second"] for _, m, _ in result.dlib_jobs),
        ),
    ]
    print(f"\n== {name}: {photos} photos from {images}  rounds: {rounds} (medians, alternated)")
    print(f"{'':28}{'baseline loop':>16}{'facetrain job':>16}{'ratio':>8}{'job dlib-resnet':>18}{'ratio':>8}")
    for label, old, new, dlib in rows:
        print(f"{label:28}{old:16.2f}{new:16.2f}{new / old:7.2f}x{dlib:18.2f}{dlib / old:7.2f}x")
    cpu = [median(run.cpu_seconds for run in runs) for runs in (result.baselines, jobs, dlibs)]
    print(
        f"{'CPU seconds (whole process)':28}{cpu[0]:16.1f}{cpu[1]:16.1f}{cpu[0] / cpu[1]:7.2f}x"
        f"{cpu[2]:18.1f}{cpu[0] / cpu[2]:7.2f}x"
    )
    whole = [b.wall_seconds / j.wall_seconds for b, j in zip(result.baselines, jobs, strict=True)]
    loop = [
        m["images_per_second"] / (photos / b["loop_seconds"])
        for b, (_, m, _) in zip(result.loops, result.jobs, strict=True)
    ]
    print(f"{'whole ratio per round':28}{' '.join(f'{r:.2f}x' for r in whole):>40}")
    print(f"{'loop ratio per round':28}{' '.join(f'{r:.2f}x' for r in loop):>40}")
    for label, runs in (("baseline", result.baselines), ("job", jobs), ("job dlib-resnet", dlibs)):
        seconds = " ".join(f"{run.wall_seconds:.1f}" for run in runs)
        print(f"{'wall s per round, ' + label:28}{seconds:>40}")
    peaks = [max(run.peak_rss_mib for run in runs) for runs in (result.baselines, jobs, dlibs)]
    print(f"{'peak RSS MiB (max)':28}{peaks[0]:16.0f}{peaks[1]:16.0f}{'':8}{peaks[2]:18.0f}")
    base_accepted = set(result.loops[0]["accepted"])
    job_accepted, dlib_accepted = result.jobs[0][2], result.dlib_jobs[0][2]
    print(
        f"{'faces accepted':28}{len(base_accepted):16d}{len(job_accepted):16d}{'':8}{len(dlib_accepted):18d}"
    )
    for label, accepted in (("job", job_accepted), ("job dlib-resnet", dlib_accepted)):
        only_baseline, only_job = sorted(base_accepted - accepted), sorted(accepted - base_accepted)
        same = (
            "yes"
            if not only_baseline and not only_job
            else f"no: baseline only {only_baseline}, {label} only {only_job}"
        )
        print(f"same faces accepted ({label}): {same}")
    dlib_accuracy = result.dlib_jobs[0][1]["evaluation"]["identification_accuracy"]
    print(f"dlib-resnet leave-one-out identification accuracy: {dlib_accuracy}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", type=Path, nargs="?", default=DEFAULT_IMAGES)
    parser.add_argument("--scale", type=int, default=4, help="repeat factor for the memory check (default 4)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each program, alternated (3)")
    parser.add_argument(
        "--large-from",
        type=Path,
        nargs="*",
        default=[DATA / "faces-dev", DATA / "faces-small"],
        help="folders whose photos are upscaled to 3000-4500 px for the large set (none: no large set)",
    )
    args = parser.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no photos at {args.images}: pass a folder of <identity>/<photo> files")
    print(f"device: {args.device}  cores: {os.cpu_count()}  python: {sys.version.split()[0]}")
    print_set(args.images.name, args.images, measure_set(args.images, args.device, args.rounds), args.rounds)
    if args.large_from:
        started = time.perf_counter()
        large = phone_size_copies(args.large_from, Path(tempfile.mkdtemp(prefix="facetrain-bench-large-")))
        made = time.perf_counter() - started
        name = f"phone-size copies (3000-4500 px) of {' + '.join(f.name for f in args.large_from)}"
        print(f"\n(large set made in {made:.1f} s, not counted)")
        print_set(name, large, measure_set(large, args.device, args.rounds), args.rounds)

    # Memory: two dataset sizes, both larger than one embedding batch, so only the photo count differs.
    print()
    small, big = repeated_photos(args.images, 2), repeated_photos(args.images, 2 * args.scale)
    for name, settings in (
        ("facenet", {"weights": "none", "device": args.device}),
        ("dlib-resnet", {"embedder": "dlib-resnet", "device": args.device}),
    ):
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
