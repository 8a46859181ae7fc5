"""The local bucket kept between runs (--state), every version of every object with its delete markers,
and the photos folder mirrored into it.

STATE_DIR/bucket/<key> holds each key's current object, for people to browse; the history (noncurrent
versions, stored by index, and a manifest listing each key's versions and delete markers oldest first)
lives in the hidden STATE_DIR/bucket/.versions/. A restore replays each key's history into the fresh
local bucket, so a later run sees what the versioned bucket on AWS would hold: the noncurrent versions an
erasure must delete included. A state saved before versions were kept (no manifest) restores its current
objects only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any


def local_files(root: Path) -> dict[str, Path]:
    """Relative POSIX path → file, for every file under root (hidden files skipped)."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def all_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every current object's key under prefix (delete markers and noncurrent versions left out)."""
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
HISTORY = ".versions"  # inside the copy: version files named by index, and MANIFEST
MANIFEST = f"{HISTORY}/manifest.json"
MANIFEST_FORMAT = 1


class StateUnreadable(RuntimeError):
    """The saved copy's manifest cannot be used: not JSON, not this module's format, or naming a file the
    copy lacks. Raised before anything is loaded; the message names the file and the fix."""


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of a key's history: a version, or a delete marker (is_delete_marker)."""

    key: str
    version_id: str
    last_modified: datetime  # as S3 lists it: whole seconds
    is_delete_marker: bool
    is_latest: bool


def object_histories(s3: Any, bucket: str) -> dict[str, list[ObjectVersion]]:
    """Every key of the bucket → its versions and delete markers, newest first, as S3 orders them."""
    versions: dict[str, list[ObjectVersion]] = {}
    markers: dict[str, list[ObjectVersion]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for kind, is_marker, entries in (("Versions", False, versions), ("DeleteMarkers", True, markers)):
            for item in page.get(kind, []):
                entries.setdefault(item["Key"], []).append(_version(item, is_marker))
    return {
        key: _newest_first(s3, bucket, key, versions.get(key, []), markers.get(key, []))
        for key in sorted(versions.keys() | markers.keys())
    }


def _version(item: dict[str, Any], is_delete_marker: bool) -> ObjectVersion:
    return ObjectVersion(
        key=item["Key"],
        version_id=item["VersionId"],
        last_modified=item["LastModified"],
        is_delete_marker=is_delete_marker,
        is_latest=item["IsLatest"],
    )


def _newest_first(
    s3: Any, bucket: str, key: str, versions: list[ObjectVersion], markers: list[ObjectVersion]
) -> list[ObjectVersion]:
    """One key's versions and delete markers (each list newest first) in one list, newest first.

    A page of ListObjectVersions reaches boto3 as two lists, and LastModified has whole seconds: the
    latest entry (IsLatest) goes first, the others by LastModified. Where a noncurrent version and a
    noncurrent delete marker share a second, the order restore_state replayed them in settles it (a
    restore writes a key's whole history within a second), else a listing of that key alone.
    """
    if not versions or not markers:
        return versions or markers
    latest = [e for e in versions + markers if e.is_latest]
    rest = [e for e in versions + markers if not e.is_latest]
    seconds = [{e.last_modified for e in rest if e.is_delete_marker == kind} for kind in (False, True)]
    tied = seconds[0] & seconds[1]
    if any(e.version_id not in _REPLAYED for e in rest if e.last_modified in tied):
        return _in_listing_order(s3, bucket, key, versions + markers)

    def newest_first(e: ObjectVersion) -> tuple[datetime, int]:  # stable: other ties keep the list's order
        return e.last_modified, _REPLAYED[e.version_id] if e.last_modified in tied else 0

    return latest + sorted(rest, key=newest_first, reverse=True)


# Version id → the order in which restore_state created it, in this process: version ids are unique, so
# an id found here is one of those writes; it orders a restored key's entries that share a second.
_REPLAYED: dict[str, int] = {}


def _in_listing_order(s3: Any, bucket: str, key: str, entries: list[ObjectVersion]) -> list[ObjectVersion]:
    """The key's entries in the bucket's own order, one entry a page (so one request per entry; moto
    copies the whole bucket for each, hence only where the timestamps cannot say)."""
    by_id = {e.version_id: e for e in entries}
    ordered: list[ObjectVersion] = []
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=key, PaginationConfig={"PageSize": 1}
    )
    for page in pages:  # the key's own entries come first: a longer key sorts after it
        items = page.get("Versions", []) + page.get("DeleteMarkers", [])
        if any(item["Key"] != key for item in items):
            break
        ordered += [by_id[item["VersionId"]] for item in items if item["VersionId"] in by_id]
        if len(ordered) == len(entries):
            break
    if len(ordered) != len(entries):
        raise RuntimeError(f"the bucket changed while the versions of {key!r} were listed")
    return ordered


def recover_state(state_dir: Path) -> str | None:
    """Finish or undo a save that was killed part-way; a sentence saying which, or None when there was
    nothing to do.

    The save's steps: (1) download every version into STAGING and write its MANIFEST, (2) write
    STAGING/COMPLETE, (3) rename SAVED → RETIRED, (4) rename STAGING → SAVED, (5) delete RETIRED. Killed
    in (1)-(2): STAGING is incomplete and is deleted, SAVED is untouched. Killed in (3)-(4): STAGING is
    complete and becomes SAVED. Killed in (5): RETIRED is deleted. Never is a complete copy deleted before
    another complete copy is SAVED.
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
    """Load the bucket saved by an earlier run (recover_state first): each key's versions and delete
    markers put and deleted oldest first, so that the bucket lists the same history (new version ids) and
    the same current objects; the number of current objects. A copy without a manifest (saved by an
    earlier facetrain) loads its current objects only. Raises StateUnreadable, before anything is loaded,
    when the manifest is damaged."""
    saved = state_dir / SAVED
    if not saved.is_dir():
        return 0
    if not (saved / MANIFEST).exists():
        files = local_files(saved)
        for key, path in files.items():
            s3.upload_file(str(path), bucket, key)
        return len(files)
    histories = _read_manifest(saved)
    for key, history in histories.items():
        for position, stored in enumerate(history):
            if stored is None and position == 0:
                written = _first_delete_marker(s3, bucket, key)
            elif stored is None:
                written = s3.delete_object(Bucket=bucket, Key=key)
            else:
                with stored.open("rb") as body:
                    written = s3.put_object(Bucket=bucket, Key=key, Body=body)
            if "VersionId" in written:  # absent where the bucket is not versioned
                _REPLAYED[written["VersionId"]] = len(_REPLAYED)
    return sum(1 for history in histories.values() if history[-1] is not None)


def _first_delete_marker(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """A delete marker as the first entry of key's history (its versions before it were deleted by id):
    moto adds no marker for a key it has never held, as S3 does, so an empty version is put under it
    and deleted by id once the marker is on top."""
    placeholder = s3.put_object(Bucket=bucket, Key=key, Body=b"")
    written = s3.delete_object(Bucket=bucket, Key=key)
    if "VersionId" in placeholder:  # absent where the bucket is not versioned: nothing left to remove
        s3.delete_object(Bucket=bucket, Key=key, VersionId=placeholder["VersionId"])
    return written


def _read_manifest(saved: Path) -> dict[str, list[Path | None]]:
    """Key → its history oldest first: a version's file, or None for a delete marker; every file checked."""
    manifest = saved / MANIFEST
    fix = (
        f"delete {saved / HISTORY} to restore the current objects only (the history is lost), "
        f"or put back a copy of {saved} from a backup"
    )
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateUnreadable(f"{manifest} cannot be read ({exc}); {fix}") from None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise StateUnreadable(f"{manifest} is not a format-{MANIFEST_FORMAT} manifest of versions; {fix}")
    keys = document.get("keys")
    if not isinstance(keys, dict):
        raise StateUnreadable(f'{manifest} has no "keys" object; {fix}')
    histories: dict[str, list[Path | None]] = {}
    root = saved.resolve()
    for key, entries in keys.items():
        if not isinstance(entries, list) or not entries:
            raise StateUnreadable(f"{manifest}: {key!r} has no list of versions; {fix}")
        history: list[Path | None] = []
        for entry in entries:
            if isinstance(entry, dict) and entry.get("delete_marker") is True:
                history.append(None)
                continue
            name = entry.get("file") if isinstance(entry, dict) else None
            path = (saved / name).resolve() if isinstance(name, str) else None
            if path is None or not path.is_relative_to(root) or not path.is_file():
                raise StateUnreadable(
                    f"{manifest}: a version of {key!r} names {name!r}, which is not a file of {saved}; {fix}"
                )
            history.append(path)
        histories[key] = history
    return histories


def save_state(s3: Any, bucket: str, state_dir: Path) -> int:
    """Write every version and delete marker of the bucket under STATE_DIR/bucket (the current objects at
    their keys, the rest and the manifest in HISTORY), replacing what was there, crash-safely
    (recover_state's steps); the number of current objects. The bucket must not change meanwhile: the
    caller saves once no Lambda, execution or job can still write to it."""
    saved, staging, retired = state_dir / SAVED, state_dir / STAGING, state_dir / RETIRED
    shutil.rmtree(staging, ignore_errors=True)
    (staging / HISTORY).mkdir(parents=True)
    histories = object_histories(s3, bucket)
    current = {key for key, history in histories.items() if not history[0].is_delete_marker}
    folders = {parent.as_posix() for key in current for parent in PurePosixPath(key).parents}
    manifest: dict[str, list[dict[str, Any]]] = {}
    next_index = 0
    for key, history in histories.items():
        entries = []
        for version in reversed(history):  # oldest first
            entry: dict[str, Any] = {"last_modified": version.last_modified.isoformat()}
            if version.is_delete_marker:
                entry["delete_marker"] = True
            else:
                if version.is_latest and _browsable(key, folders):
                    name = key
                else:
                    name, next_index = f"{HISTORY}/{next_index}", next_index + 1
                _download(s3, bucket, version, staging / name)
                entry["file"] = name
            entries.append(entry)
        manifest[key] = entries
    document = {"format": MANIFEST_FORMAT, "keys": manifest}
    (staging / MANIFEST).write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    (staging / COMPLETE).write_text(f"{len(current)} objects, {len(histories)} keys\n")
    if saved.exists():
        shutil.rmtree(retired, ignore_errors=True)
        saved.rename(retired)
    staging.rename(saved)
    shutil.rmtree(retired, ignore_errors=True)
    return len(current)


def _browsable(key: str, folders: set[str]) -> bool:
    """Whether the current object of key may be written at its own path: a key with a hidden, empty, `.`
    or `..` part (unsafe, or skipped by local_files), or that is a folder of another current key (a file
    cannot also be a folder), is kept in HISTORY by index instead."""
    parts = PurePosixPath(key).parts
    plain = bool(parts) and "/".join(parts) == key and not any(part.startswith(".") for part in parts)
    return plain and key not in folders


def _download(s3: Any, bucket: str, version: ObjectVersion, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # moto refuses VersionId "null" (an object put before versioning was on), which S3 accepts; the
    # latest version is also what a plain GET returns.
    plain_get = version.version_id == "null" and version.is_latest
    extra = {} if plain_get else {"VersionId": version.version_id}
    s3.download_file(bucket, version.key, str(target), ExtraArgs=extra)


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
