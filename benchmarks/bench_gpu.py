"""GPU benchmark: the facetrain job on each runtime (runtime=onnx: ONNX Runtime's CUDA provider;
runtime=torch: facenet-pytorch) vs the plain facenet-pytorch loop, on one CUDA device, same photos.

Two steps. Here, where pip reaches PyPI and ../shared/data is:

    .venv/bin/python benchmarks/bench_gpu.py prepare            # writes .bench/gpu (ignored by git)

writes into .bench/gpu the photo sets (faces-dev; real-size: bench_job's, photo_sets.real_size_set, every
photo under ../shared/data at its own size, copied: 29 photos, 500-2400 px on the longer side; with
--phone-size, phone-size copies made by photo_sets) and the wheels a device's Python may lack, at the
versions the locks hold (facenet-pytorch, pydantic, pillow-heif; with --onnxruntime-gpu, onnxruntime-gpu
and its CUDA 12 / cuDNN 9 nvidia-* wheels, about 1.5 GB: more than this workplace's lent device can be
sent, whose own onnxruntime is the CPU build). Then, on a GPU host:

    python3 benchmarks/bench_gpu.py run .bench/gpu --device cuda

installs the wheels into .bench/gpu/site when packages are missing, checks that each runtime can use the
GPU (`facetrain.inference.devices.choose_device`: the job's own decision, whose reason is printed when one
cannot), makes runtime=onnx's exports once (not timed), then runs the plain loop (baseline_loop.py) and the
job (`python -m facetrain.train`, weights=none) on each runtime alternately `--rounds` times per set, and
prints photos/s (whole process; the photo loop; the job's detect + crop + embed stages), the ratios to the
plain loop and the >= 10x target, and compares the photos every program accepted in every round with the
plain loop's first round (bench_job's check). Exit status: 0; 1 when any accepted different photos
(`!!! DIFFERENT PHOTOS ACCEPTED: ...`, bench_job.conclude); else 2 when a runtime could not use the device
(the others are still measured), 3 when a target is missed. Without a usable GPU it says why and exits 1.
`--device cpu` runs the same path without a GPU (the test does, on one photo).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DEFAULT_DIR = ROOT / ".bench" / "gpu"
# What the job and the plain loop need beyond a GPU image's torch, torchvision, onnx, Pillow, numpy, jinja2
# and matplotlib; each at the version its lock file holds.
WHEELS = {
    "requirements/dev.txt": ("facenet-pytorch",),
    "requirements/job.txt": (
        "pydantic",
        "pydantic-core",
        "annotated-types",
        "typing-inspection",
        "pillow-heif",
    ),
}
ONNX_GPU_WHEELS = {
    "requirements/job-gpu.txt": (
        "onnxruntime-gpu",
        "nvidia-cuda-runtime-cu12",
        "nvidia-cuda-nvrtc-cu12",
        "nvidia-cublas-cu12",
        "nvidia-cudnn-cu12",
        "nvidia-cufft-cu12",
        "nvidia-curand-cu12",
        "nvidia-nvjitlink-cu12",
    )
}
NEEDED_MODULES = (
    "torch",
    "torchvision",
    "PIL",
    "numpy",
    "jinja2",
    "matplotlib",
    "facenet_pytorch",
    "pydantic",
    "pillow_heif",
    "onnxruntime",
    "onnx",
)
RUNTIMES = ("onnx", "torch")
SETS = ("faces-dev", "real-size")
PHONE_SIZE_FROM = ("faces-dev", "faces-small")  # as bench_job's phone-size set
TARGET_RATIO = 10.0
SEED = 0


# ---- prepare (here) -----------------------------------------------------------------------------------


def locked_versions(lock: Path, names: tuple[str, ...]) -> list[str]:
    """'name==version' of each name, as the lock file pins it."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", lock.read_text(encoding="utf-8"), re.M))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    missing = [name for name in names if name not in pins]
    if missing:
        sys.exit(f"{lock} pins no {', '.join(missing)}: run `make lock` first")
    return [f"{name}=={pins[name]}" for name in names]


def prepare(target: Path, python_version: str, wheels: bool, phone_size: bool, onnx_gpu: bool) -> None:
    """Write the photo sets (and, with `wheels`, the wheels for `python_version`) under target."""
    from photo_sets import phone_size_copies, real_size_set  # Pillow: here, not needed before `run` checks

    photos = target / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    shutil.copytree(DATA / "faces-dev", photos / "faces-dev", ignore=shutil.ignore_patterns(".*"))
    # bench_job's real-size set (links into ../shared/data), copied: the folder travels to another host.
    with tempfile.TemporaryDirectory(prefix="facetrain-bench-gpu-") as links:
        shutil.copytree(real_size_set(DATA, Path(links) / "real-size"), photos / "real-size")
    if phone_size:
        phone_size_copies([DATA / folder for folder in PHONE_SIZE_FROM], photos / "phone-size")
    if wheels:
        wheel_dir = target / "wheels"
        shutil.rmtree(wheel_dir, ignore_errors=True)
        groups = {**WHEELS, **(ONNX_GPU_WHEELS if onnx_gpu else {})}
        pinned = [pin for lock, names in groups.items() for pin in locked_versions(ROOT / lock, names)]
        platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)] + [
            "--platform=manylinux2014_x86_64"
        ]
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             f"--python-version={python_version}", "--implementation=cp", *platforms,
             "-d", str(wheel_dir), *pinned],
            check=True,
        )  # fmt: skip
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 2**20
    print(f"prepared {target} ({size:.0f} MiB): carry it to the GPU host and run `run {target}` there")


# ---- run (on the GPU host) ----------------------------------------------------------------------------


def missing_modules() -> list[str]:
    """The modules of NEEDED_MODULES this interpreter cannot import."""
    return [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]


def ensure_packages(target: Path) -> None:
    """Make the job's packages importable: install target/wheels into target/site once (they come first on
    PYTHONPATH: onnxruntime-gpu there shadows a CPU onnxruntime) and re-run this script with PYTHONPATH
    naming it (and container/, where facetrain lives)."""
    site = target / "site"
    paths = [str(ROOT / "container"), str(site), os.environ.get("PYTHONPATH", "")]
    if os.environ.get("FACETRAIN_BENCH_GPU_READY"):
        if missing := missing_modules():
            sys.exit(
                f"missing here: {', '.join(missing)}; run `prepare` where PyPI is reachable and carry "
                f"{target}, or install facetrain[gpu,torch]"
            )
        return
    if (target / "wheels").is_dir() and not site.is_dir():
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
             "--upgrade", "--target", str(site), *map(str, sorted((target / "wheels").glob("*.whl")))],
            check=True,
        )  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "FACETRAIN_BENCH_GPU_READY": "1",
    }
    os.execve(sys.executable, [sys.executable, *sys.argv], env)  # noqa: S606


def usable_runtimes(device: str, runtimes: list[str]) -> tuple[list[str], dict[str, str]]:
    """The runtimes that can run on `device` here (the job's own decision), and each other one's reason.
    Prints each runtime's facts line (GPU, driver, build)."""
    from facetrain.accelerator import DeviceError, describe
    from facetrain.inference.devices import choose_device, gather_facts

    usable, refused = [], {}
    for runtime in runtimes:
        print(f"runtime={runtime}: {describe(gather_facts(runtime))}")
        try:
            choose_device(device, None, runtime)
            usable.append(runtime)
        except DeviceError as exc:
            refused[runtime] = str(exc)
    return usable, refused


def ensure_exports() -> None:
    """runtime=onnx's networks for weights=none (seed SEED) in the job's export cache, found and verified
    against their manifests, or exported where missing, by the job's own code (onnx_files), not timed."""
    from facetrain.contract.hyperparameters import Hyperparameters
    from facetrain.inference.model_files import WeightsError, resolve_model
    from facetrain.inference.onnx_files import onnx_files, onnx_home

    settings = Hyperparameters(runtime="onnx", weights="none", seed=SEED)
    started = time.perf_counter()
    try:
        onnx_files(resolve_model(settings, None), SEED, None)
    except WeightsError as exc:
        sys.exit(f"runtime=onnx's exports: {exc}")
    seconds = time.perf_counter() - started
    print(f"(runtime=onnx's exports ready in {onnx_home()}: {seconds:.1f} s, not counted)")


@dataclass
class Runs:
    """Every round on one photo set: the plain loop's, and the job's per runtime."""

    baselines: list = field(default_factory=list)  # ProcessRun
    loops: list[dict] = field(default_factory=list)  # the plain loop's JSON line per round
    jobs: dict[str, list] = field(default_factory=dict)  # runtime: [(ProcessRun, metrics, accepted)]


@contextmanager
def onnx_cuda_libraries(site: Path) -> Iterator[None]:
    """LD_LIBRARY_PATH naming the CUDA 12 and cuDNN 9 libraries that `prepare --onnxruntime-gpu`'s wheels
    put in `site` (nvidia/*/lib), for runtime=onnx's job processes only: onnxruntime-gpu's CUDA provider
    links them by soname and its wheel sets no RUNPATH, while torch's processes must keep their own CUDA
    libraries (cuDNN 9's soname is the same in both). Nothing changes when `site` holds none."""
    folders = [str(folder) for folder in sorted(site.glob("nvidia/*/lib"))]
    before = os.environ.get("LD_LIBRARY_PATH")
    if folders:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([*folders, *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


def measure(images: Path, device: str, rounds: int, runtimes: list[str], site: Path) -> Runs:
    """The plain loop and the job on each runtime, alternated `rounds` times."""
    from bench_job import run_job, run_measured

    command = [sys.executable, str(ROOT / "benchmarks" / "baseline_loop.py"), str(images), "--device", device]
    runs = Runs(jobs={runtime: [] for runtime in runtimes})
    for _ in range(rounds):
        runs.baselines.append(run_measured(command))
        runs.loops.append(json.loads(runs.baselines[-1].stdout.strip().splitlines()[-1]))
        for runtime in runtimes:
            settings = {"runtime": runtime, "device": device, "weights": "none"}  # seed 0: SEED
            with onnx_cuda_libraries(site) if runtime == "onnx" else nullcontext():
                job = run_job(images, settings)
            ran = (job[1].get("runtime"), job[1].get("device"))
            if ran != (runtime, device):  # what metrics.json says ran, not only what was asked
                sys.exit(f"asked for runtime={runtime} on {device}, the job ran runtime={ran[0]} on {ran[1]}")
            runs.jobs[runtime].append(job)
    return runs


def job_stage_rate(photos: int, metrics: dict) -> float:
    """photos / the job's detect + crop + embed seconds (metrics.json's timings)."""
    timings = metrics["timings"]
    return photos / max(1e-9, timings["detect"] + timings.get("crop", 0.0) + timings["embed"])


def accepted_differences(set_name: str, runs: Runs) -> list[str]:
    """Every round of every program (the plain loop's included) whose accepted photos differ from the plain
    loop's first round (bench_job.accepted_differences)."""
    from bench_job import PLAIN
    from bench_job import accepted_differences as differences

    rounds = {PLAIN: [set(loop["accepted"]) for loop in runs.loops]}
    for runtime, jobs in runs.jobs.items():
        rounds[f"job {runtime}"] = [set(accepted) for _, _, accepted in jobs]
    return differences(set_name, rounds)


def report(set_name: str, device: str, runs: Runs) -> tuple[list[tuple[str, str, float]], list[str]]:
    """Print one set's table; each (runtime, measure, ratio to the plain loop) for the targets, and every
    difference in the photos accepted (accepted_differences)."""
    median = statistics.median
    photos = runs.loops[0]["photos"]
    plain = {
        "whole process": median(photos / b.wall_seconds for b in runs.baselines),
        "photo loop": median(photos / loop["loop_seconds"] for loop in runs.loops),
    }
    rates = {
        runtime: {
            "whole process": median(photos / run.wall_seconds for run, _, _ in jobs),
            "photo loop": median(m["images_per_second"] for _, m, _ in jobs),
            "detect + crop + embed": median(job_stage_rate(photos, m) for _, m, _ in jobs),
        }
        for runtime, jobs in runs.jobs.items()
    }
    print(f"\n== {set_name}: {photos} photos, {device}, {len(runs.loops)} rounds (medians, alternated)")
    header = "".join(f"{'job ' + runtime:>14}{'ratio':>9}" for runtime in runs.jobs)
    print(f"{'photos/s':24}{'plain loop':>12}{header}")
    ratios = []
    for measure_name in ("whole process", "photo loop", "detect + crop + embed"):
        old = plain.get(measure_name)
        row = f"{measure_name:24}{f'{old:.2f}' if old else '-':>12}"
        for runtime in runs.jobs:
            new = rates[runtime][measure_name]
            row += f"{new:14.2f}" + (f"{new / old:8.2f}x" if old else f"{'-':>9}")
            if old:
                ratios.append((runtime, measure_name, new / old))
        print(row)
    accepted = ", ".join(f"job {runtime} {len(jobs[0][2])}" for runtime, jobs in runs.jobs.items())
    print(f"faces accepted (round 1): plain {len(runs.loops[0]['accepted'])}, {accepted}")
    differences = accepted_differences(set_name, runs)
    same = "NO" if differences else "yes"
    print(f"same photos accepted by the plain loop and every job, every round: {same}")
    for runtime, measure_name, ratio in sorted(ratios, key=lambda item: RUNTIMES.index(item[0])):
        verdict = "met" if ratio >= TARGET_RATIO else "missed"
        print(
            f"target: runtime={runtime} {measure_name} >= {TARGET_RATIO:.0f}x the plain loop: "
            f"{verdict} ({ratio:.2f}x)"
        )
    return ratios, differences


def run(target: Path, device: str, rounds: int, sets: list[str], runtimes: list[str]) -> int:
    """Measure each usable runtime against the plain loop on each set; the exit status (see the docstring)."""
    print(f"device: {device}  python {sys.version.split()[0]}  cores: {os.cpu_count()}  rounds: {rounds}")
    usable, refused = usable_runtimes(device, runtimes)
    for runtime, reason in refused.items():
        print(f"runtime={runtime} cannot use {device} here, not measured: {reason}")
    if not usable:
        sys.exit(f"--device {device}: no runtime can use it on this machine (the reasons are above)")
    if "onnx" in usable:
        ensure_exports()
    missed, differences = False, []
    for set_name in sets:
        runs = measure(target / "photos" / set_name, device, rounds, usable, target / "site")
        ratios, set_differences = report(set_name, device, runs)
        missed = missed or any(ratio < TARGET_RATIO for *_, ratio in ratios)
        differences += set_differences
    return exit_status(differences, bool(refused), missed, device)


def exit_status(differences: list[str], refused: bool, missed: bool, device: str) -> int:
    """1 when any program accepted different photos (bench_job.conclude prints each `!!! DIFFERENT PHOTOS
    ACCEPTED: ...` line), else 2 when a runtime could not use the device, else 3 when a target is missed
    on cuda, else 0."""
    from bench_job import Report, conclude

    if differences:
        return conclude(Report(differences=differences))
    if refused:
        return 2
    return 3 if missed and device == "cuda" else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser(
        "prepare", help="write photo sets and wheels (here, with PyPI and ../shared/data)"
    )
    prep.add_argument("target", type=Path, nargs="?", default=DEFAULT_DIR)
    prep.add_argument("--python-version", default="3.12", help="the GPU host's Python (3.12)")
    prep.add_argument("--no-wheels", action="store_true", help="photo sets only")
    prep.add_argument("--phone-size", action="store_true", help="also phone-size copies (3000-4500 px)")
    prep.add_argument(
        "--onnxruntime-gpu", action="store_true", help="also onnxruntime-gpu and its CUDA 12 wheels (~1.5 GB)"
    )
    bench = commands.add_parser("run", help="run the benchmark (on the GPU host)")
    bench.add_argument("target", type=Path, nargs="?", default=DEFAULT_DIR)
    bench.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--sets", nargs="+", default=list(SETS))
    bench.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.target, args.python_version, not args.no_wheels, args.phone_size, args.onnxruntime_gpu)
        return 0
    if not all((args.target / "photos" / s).is_dir() for s in args.sets):
        sys.exit(f"no photo sets {args.sets} under {args.target / 'photos'}: run `prepare` first")
    ensure_packages(args.target)
    return run(args.target, args.device, args.rounds, args.sets, args.runtimes)


if __name__ == "__main__":
    sys.exit(main())
