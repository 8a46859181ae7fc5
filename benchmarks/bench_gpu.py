"""GPU benchmark: the facetrain job vs the plain facenet-pytorch loop on one CUDA device, same photos.

Two steps. Here, where pip reaches PyPI and ../shared/data is:

    .venv/bin/python benchmarks/bench_gpu.py prepare            # writes .bench/gpu (ignored by git)

writes into .bench/gpu the photo sets (faces-dev, and its phone-size copies at 3000-4500 px with
faces-small's, made by photo_sets) and the wheels the device's Python lacks (facenet-pytorch and pydantic:
the device image has torch, torchvision, Pillow, numpy, jinja2 and matplotlib). Then, on the device
(nothing can be fetched there; .bench/gpu travels with `carry`):

    python3 benchmarks/bench_gpu.py run .bench/gpu --device cuda

installs the wheels into .bench/gpu/site when the packages are missing, runs the plain loop
(baseline_loop.py) and the job (`python -m facetrain.train`, weights=none) alternately `--rounds` times on
each set, and prints photos/s (whole process and photo loop), the ratios and the >= 10x target per set.
`--device cpu` runs the same path without a GPU (the test does, on one small set).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DEFAULT_DIR = ROOT / ".bench" / "gpu"
# What the job needs beyond the device image's packages, at the versions requirements/job.txt locks.
WHEELS = (
    "facenet-pytorch==2.5.3",
    "pydantic==2.13.5",
    "pydantic-core==2.46.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
)
NEEDED_MODULES = (
    "torch",
    "torchvision",
    "PIL",
    "numpy",
    "jinja2",
    "matplotlib",
    "facenet_pytorch",
    "pydantic",
)
TARGET_RATIO = 10.0


def prepare(target: Path, python_version: str, wheels: bool) -> None:
    """Write the photo sets (and, with `wheels`, the wheels for `python_version`) under target."""
    from photo_sets import phone_size_copies

    photos = target / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    shutil.copytree(DATA / "faces-dev", photos / "faces-dev", ignore=shutil.ignore_patterns(".*"))
    phone_size_copies([DATA / "faces-dev", DATA / "faces-small"], photos / "large")
    if wheels:
        wheel_dir = target / "wheels"
        shutil.rmtree(wheel_dir, ignore_errors=True)
        platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34)] + [
            "--platform=manylinux2014_x86_64"
        ]
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             f"--python-version={python_version}", "--implementation=cp", *platforms,
             "-d", str(wheel_dir), *WHEELS],
            check=True,
        )  # fmt: skip
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 2**20
    print(f"prepared {target} ({size:.0f} MiB): carry it to the device and run `run {target}` there")


def missing_modules() -> list[str]:
    """The modules of NEEDED_MODULES this interpreter cannot import."""
    return [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]


def ensure_packages(target: Path) -> None:
    """Make the job's packages importable: install target/wheels into target/site when some are missing
    and re-run this script with PYTHONPATH naming it (and container/, where facetrain lives)."""
    site = target / "site"
    paths = [str(ROOT / "container"), str(site), os.environ.get("PYTHONPATH", "")]
    if os.environ.get("FACETRAIN_BENCH_GPU_READY"):
        if missing := missing_modules():
            sys.exit(f"still missing after installing {target / 'wheels'}: {', '.join(missing)}")
        return
    if missing_modules() and (target / "wheels").is_dir():
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


def run(target: Path, device: str, rounds: int, sets: list[str]) -> int:
    """Alternate the plain loop and the job on each set; print the rates, ratios and the target."""
    from bench_job import run_job, run_measured

    if device == "cuda":
        import torch  # the parent needs it only to name the GPU; the measured processes import their own

        if not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA device is visible to torch here")
        name = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    else:
        name = f"cpu ({os.cpu_count()} cores)"
    print(f"device: {name}  python {sys.version.split()[0]}  rounds: {rounds}")
    met = True
    for set_name in sets:
        images = target / "photos" / set_name
        command = [
            sys.executable,
            str(ROOT / "benchmarks" / "baseline_loop.py"),
            str(images),
            "--device",
            device,
        ]
        loops, baselines, jobs = [], [], []
        for _ in range(rounds):
            baselines.append(run_measured(command))
            loops.append(json.loads(baselines[-1].stdout.strip().splitlines()[-1]))
            jobs.append(run_job(images, {"weights": "none", "device": device}))
        photos = loops[0]["photos"]
        median = statistics.median
        whole = (
            median(photos / b.wall_seconds for b in baselines),
            median(photos / j.wall_seconds for j, _, _ in jobs),
        )
        loop = (
            median(photos / b["loop_seconds"] for b in loops),
            median(m["images_per_second"] for _, m, _ in jobs),
        )
        same = set(loops[0]["accepted"]) == jobs[0][2]
        print(f"\n== {set_name}: {photos} photos, {device}")
        print(f"{'photos/s':26}{'plain loop':>12}{'job':>12}{'ratio':>9}")
        print(f"{'whole process':26}{whole[0]:12.2f}{whole[1]:12.2f}{whole[1] / whole[0]:8.2f}x")
        print(f"{'photo loop':26}{loop[0]:12.2f}{loop[1]:12.2f}{loop[1] / loop[0]:8.2f}x")
        print(f"faces accepted: plain {len(loops[0]['accepted'])}, job {len(jobs[0][2])}, same: {same}")
        for label, (old, new) in (("photo loop", loop), ("whole process", whole)):
            verdict = "met" if new / old >= TARGET_RATIO else "missed"
            print(f"target: {label} >= {TARGET_RATIO:.0f}x the plain loop: {verdict} ({new / old:.2f}x)")
        met = met and loop[1] / loop[0] >= TARGET_RATIO
    return 0 if met or device != "cuda" else 3


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser(
        "prepare", help="write photo sets and wheels (here, with PyPI and ../shared/data)"
    )
    prep.add_argument("target", type=Path, nargs="?", default=DEFAULT_DIR)
    prep.add_argument("--python-version", default="3.12", help="the device's Python (3.12)")
    prep.add_argument("--no-wheels", action="store_true", help="photo sets only")
    bench = commands.add_parser("run", help="run the benchmark (on the device)")
    bench.add_argument("target", type=Path, nargs="?", default=DEFAULT_DIR)
    bench.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--sets", nargs="+", default=["faces-dev", "large"])
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.target, args.python_version, not args.no_wheels)
        return 0
    if not all((args.target / "photos" / s).is_dir() for s in args.sets):
        sys.exit(f"no photo sets {args.sets} under {args.target / 'photos'}: run `prepare` first")
    ensure_packages(args.target)
    return run(args.target, args.device, args.rounds, args.sets)


if __name__ == "__main__":
    sys.exit(main())
