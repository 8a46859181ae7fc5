"""Benchmark: incremental retraining and scale-out, each run as whole `train` processes on this machine.

1. Incremental: a full retrain of the photos (../shared/data/faces-dev repeated `--repeat` times), then a
   retrain after adding 1% new photos (new content, derived by mirroring some photos) with the first
   run's saved_embeddings.pkl as the `previous` channel. Prints both times and their ratio.
2. Scale-out: the same photos on 1 host, then on 2 local hosts (two `train` processes, each with its
   ShardedByS3Key share, gathering over loopback). Prints wall times and the largest difference between
   the two enrollments.

    make bench-scale      # or: .venv/bin/python benchmarks/bench_scale.py [IMAGES_DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_job import DEFAULT_IMAGES, job_tree, repeated_photos, run_measured
from facetrain.contract.enrollment_csv import parse_csv
from PIL import Image, ImageOps

TRAIN = str(Path(sys.executable).with_name("train"))
HYPERPARAMETERS = {"weights": "none", "device": "cpu"}


def run_train(base: Path) -> tuple[float, dict]:
    run = run_measured([TRAIN], {**os.environ, "SAGEMAKER_BASE_DIR": str(base)})
    return run.wall_seconds, json.loads((base / "model" / "metrics.json").read_text())


def add_new_photos(images: Path, count: int) -> Path:
    """A copy (links) of the photos plus `count` new ones: mirrored photos, so new bytes and sha256."""
    grown = Path(tempfile.mkdtemp(prefix="facetrain-bench-grown-"))
    for photo in sorted(p for p in images.rglob("*") if p.is_file()):
        target = grown / photo.relative_to(images)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(photo.resolve())
    sources = sorted(p for p in images.rglob("*") if p.is_file())
    for index in range(count):
        source = sources[index * len(sources) // max(count, 1)]
        target = grown / source.parent.relative_to(images) / f"new-{index}.jpg"
        with Image.open(source) as image:
            ImageOps.mirror(image.convert("RGB")).save(target, quality=92)
    return grown


def incremental(images: Path) -> None:
    photos = sum(1 for p in images.rglob("*") if p.is_file())
    new = max(1, round(photos / 100))
    full_base = job_tree(images, HYPERPARAMETERS)
    full_wall, full = run_train(full_base)
    grown = add_new_photos(images, new)
    again = job_tree(grown, HYPERPARAMETERS)
    channel = again / "input" / "data" / "previous"
    channel.mkdir(parents=True)
    shutil.copy(full_base / "model" / "saved_embeddings.pkl", channel / "saved_embeddings.pkl")
    inc_wall, inc = run_train(again)
    full_job, inc_job = full["timings"]["total"], inc["timings"]["total"]
    print(f"incremental: {photos} photos, then +{new} new ({100 * new / photos:.1f}%)")
    print(
        f"  full retrain        {full_wall:8.2f} s process  {full_job:8.2f} s job   "
        f"computed {full['embeddings_computed']}, {full['images_per_second']:.2f} photos/s"
    )
    print(
        f"  after +{new} photos  {inc_wall:8.2f} s process  {inc_job:8.2f} s job   "
        f"computed {inc['embeddings_computed']}, reused {inc['embeddings_reused']}"
    )
    print(f"  ratio (incremental / full): process {inc_wall / full_wall:.1%}, job {inc_job / full_job:.1%}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def two_hosts(images: Path) -> tuple[float, Path]:
    """Two `train` processes, each with every second photo (ShardedByS3Key), gathering on loopback."""
    photos = sorted(p for p in images.rglob("*") if p.is_file())
    hosts = ["algo-1", "algo-2"]
    bases = []
    for rank, host in enumerate(hosts):
        shard = Path(tempfile.mkdtemp(prefix=f"facetrain-bench-{host}-"))
        for photo in photos[rank::2]:
            target = shard / photo.relative_to(images)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(photo.resolve())
        base = job_tree(shard, HYPERPARAMETERS)
        (base / "input" / "config" / "resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": hosts, "network_interface_name": "eth0"})
        )
        bases.append(base)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    started = time.perf_counter()
    processes = [
        subprocess.Popen([TRAIN], env={**env, "SAGEMAKER_BASE_DIR": str(base)}, stdout=subprocess.DEVNULL)  # noqa: S603
        for base in bases
    ]
    codes = [process.wait() for process in processes]
    wall = time.perf_counter() - started
    if any(codes):
        sys.exit(f"2-host run failed: exit codes {codes}; see {bases}")
    return wall, bases[0]


def scale_out(images: Path) -> None:
    one_base = job_tree(images, HYPERPARAMETERS)
    one_wall, one = run_train(one_base)
    two_wall, two_base = two_hosts(images)
    first = parse_csv((one_base / "model" / "final_mean_embeddings.csv").read_text())
    second = parse_csv((two_base / "model" / "final_mean_embeddings.csv").read_text())
    same_rows = [(i, n) for i, n, _ in first] == [(i, n) for i, n, _ in second]
    difference = max(float(np.abs(a - b).max()) for (_, _, a), (_, _, b) in zip(first, second, strict=True))
    print(f"scale-out: {one['images_total']} photos on {os.cpu_count()} cores")
    print(f"  1 host   {one_wall:8.2f} s   ({one['images_per_second']:.2f} photos/s in the loop)")
    print(f"  2 hosts  {two_wall:8.2f} s   (both on this machine's cores)")
    print(f"  same identities and counts: {same_rows}; largest value difference: {difference:.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", type=Path, nargs="?", default=DEFAULT_IMAGES)
    parser.add_argument("--repeat", type=int, default=8, help="repeat the photos this many times (8)")
    args = parser.parse_args()
    if not args.images.is_dir():
        sys.exit(f"no photos at {args.images}: pass a folder of <identity>/<photo> files")
    images = repeated_photos(args.images, args.repeat) if args.repeat > 1 else args.images
    incremental(images)
    scale_out(images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
