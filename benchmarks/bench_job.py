"""Benchmark: the facetrain job on each runtime vs the plain facenet-pytorch loop, each as a whole process.

Three photo sets, made at run time (never stored in the repository): faces-dev (IMAGES_DIR); real-size:
every photo under ../shared/data at its own size (photo_sets.real_size_set); phone-size: faces-dev and
faces-small upscaled to 3000-4500 px (photo_sets.phone_size_copies). On each set the programs run
`--rounds` times, the order rotated every round: the plain loop (baseline_loop.py), the job with
runtime=onnx, the job with runtime=torch (facenet-pytorch, the reference path), both weights=none, and the
job with embedder=dlib-resnet on runtime=onnx (where dlib is installed; `--no-dlib` leaves it out). Before
timing, one untimed job per ONNX setting makes the ONNX exports it needs.

Prints, per set, medians of photos/s (whole process; the photo loop alone), the ratios to the plain loop and
onnx vs torch, CPU seconds, wall seconds per round, start to first photo (the job's log line, counted from
the kernel's process start), peak RSS (wait4), the runtime=onnx job's stage timings, and whether the plain
loop and every job accepted the same photos; then the memory check (runtime=onnx on faces-dev's photos
repeated 2 and 2 x `--scale` times) and one line per target: "met" or "MISSED by ...".
Exit status: 0; 1 when the programs accepted different photos; 3 when a target is missed.

    make bench            # or: .venv/bin/python benchmarks/bench_job.py [IMAGES_DIR]
    .venv/bin/python benchmarks/bench_job.py --rounds 1 --limit 2 --no-dlib      # a quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facetrain.contract.embeddings_file import load_embeddings
from photo_sets import long_sides, phone_size_copies, photos_of, real_size_set

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DEFAULT_IMAGES = DATA / "faces-dev"
SETS = ("faces-dev", "real-size", "phone-size")
PLAIN = "plain loop"
JOBS = {  # program name: the job's hyperparameters
    "job onnx": {"runtime": "onnx", "weights": "none"},
    "job torch": {"runtime": "torch", "weights": "none"},
    "job dlib onnx": {"runtime": "onnx", "embedder": "dlib-resnet"},
}
# Whole-process ratio of runtime=onnx to the plain loop, per set (phone-size: at least runtime=torch's).
RATIO_TARGETS = {"faces-dev": 2.0, "real-size": 4.0}
FIRST_PHOTO_TARGET_SECONDS = 0.5
FIRST_PHOTO = re.compile(r"first photo examined ([0-9.]+) s after the process started")
STAGES = ("model_setup", "decode", "detect", "crop", "embed", "report", "total")


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
class ProgramRun:
    """One run of one program: its process, photo-loop rate, the photos it accepted, and (a job) its
    metrics.json and seconds from process start to the first photo examined."""

    process: ProcessRun
    loop_rate: float
    accepted: set[str]
    metrics: dict | None = None
    first_photo_seconds: float | None = None


def run_plain(images: Path) -> ProgramRun:
    """The plain facenet-pytorch loop as its own process."""
    process = run_measured([sys.executable, str(ROOT / "benchmarks" / "baseline_loop.py"), str(images)])
    line = json.loads(process.stdout.strip().splitlines()[-1])
    return ProgramRun(process, line["photos"] / line["loop_seconds"], set(line["accepted"]))


def run_program(name: str, images: Path) -> ProgramRun:
    """Run one program on the photos; a job must report the runtime it was asked for."""
    if name == PLAIN:
        return run_plain(images)
    settings = JOBS[name]
    process, metrics, accepted = run_job(images, settings)
    if metrics.get("runtime") != settings["runtime"]:
        sys.exit(
            f"{name}: asked for runtime={settings['runtime']}, metrics.json says {metrics.get('runtime')}"
        )
    found = FIRST_PHOTO.search(process.stdout)
    if found is None:
        sys.exit(f"{name}: the job logged no 'first photo examined ... s after the process started' line")
    return ProgramRun(process, metrics["images_per_second"], accepted, metrics, float(found.group(1)))


@dataclass
class SetResult:
    """Every round of every program on one photo set."""

    name: str
    images: Path
    photos: int
    runs: dict[str, list[ProgramRun]] = field(default_factory=dict)


def measure_set(name: str, images: Path, programs: list[str], rounds: int) -> SetResult:
    """Each program `rounds` times, the order rotated every round (a shared machine's load drifts: the
    medians and the ratios per round are compared, never one run)."""
    result = SetResult(name, images, len(photos_of(images)), {program: [] for program in programs})
    for round_index in range(rounds):
        shift = round_index % len(programs)
        for program in programs[shift:] + programs[:shift]:
            result.runs[program].append(run_program(program, images))
    return result


@dataclass
class Target:
    label: str
    met: bool
    detail: str


@dataclass
class Report:
    targets: list[Target] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


def ratio_target(label: str, ratio: float, target: float) -> Target:
    detail = (
        f"{ratio:.2f}x" if ratio >= target else f"by {target - ratio:.2f}x ({ratio:.2f}x of {target:.2f}x)"
    )
    return Target(label, ratio >= target, detail)


def print_set(result: SetResult, report: Report) -> None:
    """One table (medians), the onnx job's stage timings, the accepted photos compared, the set's targets."""
    median = statistics.median
    photos, runs = result.photos, result.runs
    jobs = [program for program in runs if program != PLAIN]
    low, high = long_sides(result.images)
    rounds = len(runs[PLAIN])
    print(f"\n== {result.name}: {photos} photos ({low}-{high} px)  rounds: {rounds} (medians, order rotated)")
    print(f"{'':30}{PLAIN:>12}" + "".join(f"{job:>15}{'ratio':>8}" for job in jobs))

    def row(
        label: str,
        value: Callable[[str], float | None],
        fmt: str,
        ratio_of: Callable[[float, float], float] | None = None,
    ) -> None:
        """One line: value(program) per column (None: '-'), and ratio_of(plain's, job's) beside each job."""
        cells = f"{label:30}{format(value(PLAIN), fmt) if value(PLAIN) is not None else '-':>12}"
        for job in jobs:
            number = value(job)
            cells += f"{format(number, fmt) if number is not None else '-':>15}"
            cells += f"{ratio_of(value(PLAIN), number):7.2f}x" if ratio_of and number else f"{'':8}"
        print(cells)

    whole = {p: median(photos / r.process.wall_seconds for r in runs[p]) for p in runs}
    loop = {p: median(r.loop_rate for r in runs[p]) for p in runs}
    cpu = {p: median(r.process.cpu_seconds for r in runs[p]) for p in runs}
    peak = {p: max(r.process.peak_rss_mib for r in runs[p]) for p in runs}
    first = {p: median(r.first_photo_seconds for r in runs[p]) if p != PLAIN else None for p in runs}
    row("photos/s (whole process)", whole.get, ".2f", lambda old, new: new / old)
    row("photos/s (photo loop)", loop.get, ".2f", lambda old, new: new / old)
    row("CPU seconds (whole process)", cpu.get, ".1f", lambda old, new: old / new)
    row("start -> first photo (s)", first.get, ".2f")
    row("peak RSS MiB (max)", peak.get, ".0f")
    row("faces accepted", lambda p: len(runs[p][0].accepted), "d")
    for program in runs:
        seconds = " ".join(f"{r.process.wall_seconds:.1f}" for r in runs[program])
        print(f"{'wall s per round, ' + program:30}{seconds:>40}")
    for job in jobs:
        ratios = " ".join(
            f"{b.process.wall_seconds / j.process.wall_seconds:.2f}x"
            for b, j in zip(runs[PLAIN], runs[job], strict=True)
        )
        print(f"{'whole ratio per round, ' + job:30}{ratios:>40}")
    if "job torch" in runs:
        print(
            f"job onnx vs job torch: {whole['job onnx'] / whole['job torch']:.2f}x whole process, "
            f"{loop['job onnx'] / loop['job torch']:.2f}x photo loop, "
            f"{cpu['job torch'] / cpu['job onnx']:.2f}x fewer CPU seconds"
        )
    onnx_wall = median(r.process.wall_seconds for r in runs["job onnx"])
    timings = {s: median(r.metrics["timings"].get(s, 0.0) for r in runs["job onnx"]) for s in STAGES}
    stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in timings.items())
    print(
        f"job onnx timings (median s): {stages}; whole process {onnx_wall:.2f}, of which outside the job's "
        f"total (interpreter, imports, settings, exit) {onnx_wall - timings['total']:.2f}"
    )

    accepted = {program: [run.accepted for run in program_runs] for program, program_runs in runs.items()}
    report.differences += accepted_differences(result.name, accepted)
    same = not any(d.startswith(f"{result.name}, ") for d in report.differences)
    print(f"same photos accepted by the plain loop and every job, every round: {'yes' if same else 'NO'}")

    onnx_ratio = whole["job onnx"] / whole[PLAIN]
    if result.name in RATIO_TARGETS:
        goal = RATIO_TARGETS[result.name]
        label = f"{result.name}: job onnx >= {goal:.0f}x the plain loop (whole process)"
        report.targets.append(ratio_target(label, onnx_ratio, goal))
    elif "job torch" in runs:
        torch_ratio = whole["job torch"] / whole[PLAIN]
        label = f"{result.name}: job onnx's ratio to the plain loop >= job torch's ({torch_ratio:.2f}x)"
        report.targets.append(ratio_target(label, onnx_ratio, torch_ratio))
    seconds = first["job onnx"]
    report.targets.append(
        Target(
            f"{result.name}: job onnx start -> first photo <= {FIRST_PHOTO_TARGET_SECONDS} s",
            seconds <= FIRST_PHOTO_TARGET_SECONDS,
            f"{seconds:.2f} s"
            if seconds <= FIRST_PHOTO_TARGET_SECONDS
            else f"by {seconds - FIRST_PHOTO_TARGET_SECONDS:.2f} s ({seconds:.2f} s)",
        )
    )
    if "job torch" in runs:
        onnx_peak, torch_peak = peak["job onnx"], peak["job torch"]
        report.targets.append(
            Target(
                f"{result.name}: job onnx peak RSS <= job torch's ({torch_peak:.0f} MiB)",
                onnx_peak <= torch_peak,
                f"{onnx_peak:.0f} MiB" if onnx_peak <= torch_peak else f"by {onnx_peak - torch_peak:.0f} MiB",
            )
        )


def accepted_differences(set_name: str, rounds: Mapping[str, Sequence[set[str]]]) -> list[str]:
    """Every round of every program (`rounds`: program -> the photos each round accepted; the plain loop's
    included) whose accepted photos differ from the plain loop's first round, one line each."""
    reference = rounds[PLAIN][0]
    return [
        f"{set_name}, {program} round {index + 1}: accepted {len(accepted)} photos, the plain loop "
        f"{len(reference)}; plain loop only: {sorted(reference - accepted)}, "
        f"{program} only: {sorted(accepted - reference)}"
        for program, accepted_per_round in rounds.items()
        for index, accepted in enumerate(accepted_per_round)
        if accepted != reference
    ]


def conclude(report: Report) -> int:
    """Print one line per target and every difference in the photos accepted; the exit status: 1 when the
    programs accepted different photos, 3 when a target is missed, else 0."""
    for target in report.targets:
        print(f"target {target.label}: {'met' if target.met else 'MISSED'} {target.detail}")
    for difference in report.differences:
        print(f"!!! DIFFERENT PHOTOS ACCEPTED: {difference}")
    if report.differences:
        return 1
    return 0 if all(target.met for target in report.targets) else 3


def warm_up(images: Path, programs: list[str]) -> None:
    """One untimed job per ONNX setting on one photo: the exports it needs are made now, not while timed."""
    one = real_size_set(images, Path(tempfile.mkdtemp(prefix="facetrain-bench-warm-")), limit=1)
    for program in programs:
        if program != PLAIN and JOBS[program]["runtime"] == "onnx":
            started = time.perf_counter()
            run_program(program, one)
            print(f"(warm-up: {program} on 1 photo, {time.perf_counter() - started:.1f} s, not counted)")


def make_set(name: str, images: Path, limit: int | None) -> Path:
    """The photo set `name` in a temporary folder (faces-dev itself when there is no limit)."""
    target = Path(tempfile.mkdtemp(prefix=f"facetrain-bench-{name}-"))
    if name == "faces-dev":
        return images if limit is None else real_size_set(images, target, limit)
    if name == "real-size":
        return real_size_set(DATA, target, limit)
    started = time.perf_counter()
    made = phone_size_copies([images, DATA / "faces-small"], target, limit)
    print(
        f"\n(phone-size copies of {images.name} + faces-small made in {time.perf_counter() - started:.1f} s)"
    )
    return made


def memory_check(images: Path, scale: int) -> None:
    """runtime=onnx on the photos repeated 2 and 2 x scale times: peak memory must not grow with the count."""
    small, big = repeated_photos(images, 2), repeated_photos(images, 2 * scale)
    small_run, big_run = run_program("job onnx", small), run_program("job onnx", big)
    small_peak, big_peak = small_run.process.peak_rss_mib, big_run.process.peak_rss_mib
    print(
        f"\nmemory (job onnx): {len(photos_of(small))} photos -> peak {small_peak:.0f} MiB; "
        f"{len(photos_of(big))} photos -> peak {big_peak:.0f} MiB (x{big_peak / small_peak:.2f} for "
        f"x{scale} photos); photo loop {small_run.loop_rate:.2f} and {big_run.loop_rate:.2f} photos/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", type=Path, nargs="?", default=DEFAULT_IMAGES, help="faces-dev's folder")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each program, order rotated (3)")
    parser.add_argument("--limit", type=int, help="at most this many photos per set (a quick look)")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--scale", type=int, default=4, help="repeat factor for the memory check (4)")
    parser.add_argument("--no-dlib", action="store_true", help="leave out embedder=dlib-resnet")
    args = parser.parse_args()
    if not args.images.is_dir() or not photos_of(args.images):
        sys.exit(f"no photos at {args.images}: pass a folder of <identity>/<photo> files")
    if args.rounds < 1 or (args.limit is not None and args.limit < 1):
        sys.exit("--rounds and --limit must be at least 1")
    programs = [PLAIN, "job onnx", "job torch"]
    if args.no_dlib:
        print("job dlib onnx: left out (--no-dlib)")
    elif importlib.util.find_spec("dlib") is None:
        print("job dlib onnx: left out (dlib is not installed: `pip install -e '.[dlib]'`)")
    else:
        programs.append("job dlib onnx")
    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}  load average: {os.getloadavg()}")
    warm_up(args.images, programs)
    report = Report()
    for name in args.sets:
        images = make_set(name, args.images, args.limit)
        print_set(measure_set(name, images, programs, args.rounds), report)
    faces_dev = make_set("faces-dev", args.images, args.limit)
    memory_check(faces_dev, args.scale)

    print(f"\nload average at the end: {os.getloadavg()}")
    return conclude(report)


if __name__ == "__main__":
    sys.exit(main())
