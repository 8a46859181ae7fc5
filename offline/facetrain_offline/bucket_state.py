"""The local bucket's contents between runs (--state) and the photos folder mirrored into it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def local_files(root: Path) -> dict[str, Path]:
    """Relative POSIX path → file, for every file under root (hidden files skipped)."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def all_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    paginator = s3.get_paginator("list_objects_v2")
    return [
        o["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]


def restore_state(s3: Any, bucket: str, state_dir: Path) -> int:
    """Load the bucket's objects saved by an earlier run."""
    objects = state_dir / "bucket"
    if not objects.is_dir():
        return 0
    files = local_files(objects)
    for key, path in files.items():
        s3.upload_file(str(path), bucket, key)
    return len(files)


def save_state(s3: Any, bucket: str, state_dir: Path) -> int:
    """Write every object of the bucket under state_dir/bucket (replacing what was there)."""
    objects = state_dir / "bucket"
    staging = state_dir / ".bucket-new"
    shutil.rmtree(staging, ignore_errors=True)
    keys = all_keys(s3, bucket)
    for key in keys:
        target = staging / key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    shutil.rmtree(objects, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)
    staging.rename(objects)
    return len(keys)


def sync_images(s3: Any, bucket: str, prefix: str, images_dir: Path) -> tuple[int, int]:
    """Make the images prefix hold exactly the folder's files (uploads all, deletes what is gone)."""
    files = local_files(images_dir)
    wanted = {f"{prefix}{relative}" for relative in files}
    stale = [key for key in all_keys(s3, bucket, prefix) if key not in wanted]
    for key in stale:
        s3.delete_object(Bucket=bucket, Key=key)
    for relative, path in files.items():
        s3.upload_file(str(path), bucket, f"{prefix}{relative}")
    return len(files), len(stale)


class StateInUse(RuntimeError):
    """Another `facetrain run` holds the --state folder."""


@contextlib.contextmanager
def state_lock(state_dir: Path | None) -> Iterator[None]:
    """Hold the --state folder for this run (an exclusive lock on STATE_DIR/.lock, released when the
    process ends, however it ends); a second run on the same folder is refused, not merged: each run
    restores the bucket at its start and saves it at its end, so two at once would lose one's objects."""
    if state_dir is None:
        yield
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StateInUse(
                f"{state_dir} is in use by another facetrain run ({holder}); wait for it to finish, "
                "or give this run another --state folder"
            ) from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
