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


# The saved copy, and the two folders a save passes through. A save is crash-safe: whatever moment kills
# it (Ctrl-C held off, a SIGKILL, a power-less disk aside), STATE_DIR holds either the copy from before the
# save or the new one whole, and `recover_state` (run first, under the state lock) finishes or undoes what
# a killed save left.
SAVED = "bucket"
STAGING = ".bucket-new"  # the new copy while it is downloaded; COMPLETE inside it once it is whole
RETIRED = ".bucket-old"  # the old copy between the two renames that swap the new one in
COMPLETE = ".complete"  # hidden: never restored as an object


def recover_state(state_dir: Path) -> str | None:
    """Finish or undo a save that was killed part-way; a sentence saying which, or None when there was
    nothing to do.

    The save's steps: (1) download into STAGING, (2) write STAGING/COMPLETE, (3) rename SAVED → RETIRED,
    (4) rename STAGING → SAVED, (5) delete RETIRED. Killed in (1)-(2): STAGING is incomplete and is
    deleted, SAVED is untouched. Killed in (3)-(4): STAGING is complete and becomes SAVED. Killed in (5):
    RETIRED is deleted. Never is a complete copy deleted before another complete copy is SAVED.
    """
    saved, staging, retired = state_dir / SAVED, state_dir / STAGING, state_dir / RETIRED
    said = None
    if staging.is_dir() and (staging / COMPLETE).is_file():
        if saved.exists():
            shutil.rmtree(retired, ignore_errors=True)
            saved.rename(retired)
        staging.rename(saved)
        said = f"state  finished a save that was interrupted after its copy was complete ({saved})"
    elif staging.exists():
        shutil.rmtree(staging)
        said = (
            f"state  discarded an incomplete copy left by an interrupted save ({staging}); "
            f"{saved} is the state from before it"
        )
    if retired.exists():
        if saved.exists():
            shutil.rmtree(retired)
        else:  # killed between (3) and (4) with no complete new copy: cannot happen in order, but safe
            retired.rename(saved)
            said = f"state  restored the copy from before an interrupted save ({saved})"
    return said


def restore_state(s3: Any, bucket: str, state_dir: Path) -> int:
    """Load the bucket's objects saved by an earlier run (recover_state first)."""
    objects = state_dir / SAVED
    if not objects.is_dir():
        return 0
    files = local_files(objects)
    for key, path in files.items():
        s3.upload_file(str(path), bucket, key)
    return len(files)


def save_state(s3: Any, bucket: str, state_dir: Path) -> int:
    """Write every object of the bucket under STATE_DIR/bucket, replacing what was there, crash-safely
    (recover_state's steps); the number of objects. The bucket must not change meanwhile: the caller
    saves once no Lambda, execution or job can still write to it."""
    saved, staging, retired = state_dir / SAVED, state_dir / STAGING, state_dir / RETIRED
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    keys = all_keys(s3, bucket)
    for key in keys:
        target = staging / key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    (staging / COMPLETE).write_text(f"{len(keys)} objects\n")
    if saved.exists():
        shutil.rmtree(retired, ignore_errors=True)
        saved.rename(retired)
    staging.rename(saved)
    shutil.rmtree(retired, ignore_errors=True)
    return len(keys)


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
