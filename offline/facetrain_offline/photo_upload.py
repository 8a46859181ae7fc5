"""The photos folder of `facetrain run` (IMAGES_DIR), listed as the training job lists a channel and
mirrored into the local bucket's images prefix.

What the job does with a folder on disk, the upload does too: a symbolic link to a person's folder, to a
folder inside one or to a photo is followed (a link that leads back into a folder it is in is a cycle:
not followed, said); names starting with `.` are skipped. A file known not to be a photo (Thumbs.db,
.DS_Store, desktop.ini, text, videos: contract.photo_files, the rule validate and the job apply too) is not
uploaded, and named with why (its path relative to IMAGES_DIR, as every line here). S3 cannot hold what
the job would reject per photo — a broken link, a FIFO, socket or device — so such an entry is not
uploaded and is named on the screen. A name that is not UTF-8 cannot become an S3 key: the folder is
refused before anything starts. A file that disappears or stops being a file while it is uploaded raises
PhotoFolderError naming it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from facetrain.contract.counting import counted
from facetrain.contract.identity_names import shown_bytes, undecodable
from facetrain.contract.photo_files import not_photo_reason
from facetrain.folder_walk import EntryKind, WalkEntry
from facetrain.folder_walk import walk as folder_walk

from .bucket_state import all_keys

MAX_KEY_BYTES = 1024  # S3's limit on an object key (UTF-8)
MAX_LISTED = 10  # problems named in one refusal; the rest are counted


class PhotoFolderError(Exception):
    """IMAGES_DIR cannot be uploaded as it is. The message names the path(s) and the fix, and is meant to
    be shown as it is: `facetrain run` exits 2 with it before anything starts, or, raised while uploading
    (sync_images), the run ends FAILED with it."""


@dataclass(frozen=True)
class PhotoFolder:
    """What IMAGES_DIR holds for the bucket: S3 key (relative to the images prefix) → the path to read,
    in key order, and one sentence per entry that is not uploaded (a broken link, a FIFO, a link cycle, a
    file that is not a photo), naming it by its path relative to IMAGES_DIR."""

    files: dict[str, Path]
    skipped: list[str] = field(default_factory=list)


def _hidden(entry: WalkEntry) -> bool:
    """The upload's skip rule: names starting with `.` are never uploaded (.DS_Store, .git, …)."""
    return entry.name.startswith(".")


def _not_a_photo(key: str, entry: WalkEntry) -> str | None:
    """The `skipped` line of a file known not to be a photo (a hidden one too: .DS_Store), else None."""
    if entry.kind is not EntryKind.FILE or (reason := not_photo_reason(entry.name)) is None:
        return None
    return f"{key}: {reason}; not uploaded"


def _not_examined(entry: WalkEntry) -> str:
    """Why a BROKEN entry (its stat failed) is not uploaded."""
    error = entry.error.errno if entry.error is not None else None
    if error == errno.ENOENT and not entry.is_link:
        return "removed while IMAGES_DIR was being listed"
    return {
        errno.ENOENT: "a symbolic link to a file that does not exist",
        errno.ELOOP: "a symbolic link that leads back to itself",
    }.get(error or 0, f"cannot be read ({entry.error.strerror if entry.error else 'unknown error'})")


def _first_bad_name(entry: WalkEntry, top: Path) -> Path | None:
    """The entry's path down to its first name that is not UTF-8, or None when every name is."""
    for index, name in enumerate(entry.parts):
        if undecodable(name):
            return top.joinpath(*entry.parts[: index + 1])
    return None


@dataclass
class _Upload:
    """What one walk of IMAGES_DIR (folder_walk, as the job walks its channel) gives the upload."""

    max_key_bytes: int
    files: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    bad_names: dict[str, None] = field(default_factory=dict)  # in the order met, each once

    def hidden(self, entry: WalkEntry) -> bool:
        """The walk's skip rule (`_hidden`); a hidden file known not to be a photo gets its line."""
        if not _hidden(entry):
            return False
        if _first_bad_name(entry, Path()) is None and (line := _not_a_photo("/".join(entry.parts), entry)):
            self.skipped.append(line)
        return True

    def add(self, entry: WalkEntry, top: Path) -> None:
        """Take one entry of the walk: a file to upload, a line for `skipped`, a name S3 cannot hold, or
        PhotoFolderError for a folder that cannot be listed."""
        bad = _first_bad_name(entry, top)
        if bad is not None:  # named once: the folder, not each file under it
            self.bad_names[shown_bytes(str(bad))] = None
            return
        key = "/".join(entry.parts)
        if entry.kind is EntryKind.UNLISTABLE:
            reason = entry.error.strerror if entry.error is not None else "unknown error"
            raise PhotoFolderError(
                f"{shown_bytes(str(entry.path))}: cannot be listed ({reason}); make it a readable folder, "
                "or move it out of IMAGES_DIR"
            )
        if entry.kind is EntryKind.BROKEN:
            self.skipped.append(f"{key}: {_not_examined(entry)}; not uploaded")
        elif entry.kind is EntryKind.CYCLE:
            self.skipped.append(
                f"{key}: a symbolic link to a folder that contains it (a cycle); not followed"
            )
        elif entry.kind is EntryKind.NOT_A_FILE:
            self.skipped.append(
                f"{key}: {entry.what}, not a photo file; not uploaded (never opened: a read could block)"
            )
        elif (line := _not_a_photo(key, entry)) is not None:
            self.skipped.append(line)
        elif entry.kind is EntryKind.FILE:
            if len(key.encode("utf-8")) > self.max_key_bytes:
                too_long = f"{shown_bytes(str(entry.path))} (its S3 key is over {MAX_KEY_BYTES} bytes)"
                self.bad_names[too_long] = None
                return
            self.files[key] = entry.path


def scan_photo_folder(images_dir: Path, prefix: str = "") -> PhotoFolder:
    """List IMAGES_DIR as the job would see it (module docstring). Raises PhotoFolderError when a name
    cannot be an S3 key (not UTF-8, or `prefix` + key over 1024 bytes) or a folder cannot be listed."""
    try:
        images_dir.stat()
    except OSError as exc:
        raise PhotoFolderError(
            f"{shown_bytes(str(images_dir))}: {exc.strerror}; give a folder of <person>/<photo> files"
        ) from None
    upload = _Upload(max_key_bytes=MAX_KEY_BYTES - len(prefix.encode("utf-8")))
    for entry in folder_walk(images_dir, upload.hidden):
        upload.add(entry, images_dir)
    if upload.bad_names:
        where = shown_bytes(str(images_dir))
        listed = "\n".join(f"- {name}" for name in list(upload.bad_names)[:MAX_LISTED])
        more = len(upload.bad_names) - MAX_LISTED
        raise PhotoFolderError(
            f"{counted(len(upload.bad_names), 'name')} in {where} cannot be S3 keys, which must be UTF-8 "
            f"text of at most {MAX_KEY_BYTES} bytes (non-UTF-8 bytes shown as \\xNN):\n{listed}"
            + (f"\n- … and {more} more" if more > 0 else "")
            + "\nRename them to UTF-8 names (convmv renames names written in another encoding), shorten "
            "them, or move them out of IMAGES_DIR; then run again."
        )
    return PhotoFolder(files=dict(sorted(upload.files.items())), skipped=upload.skipped)


def _vanished(key: str, path: Path, problem: str) -> PhotoFolderError:
    return PhotoFolderError(
        f"{shown_bytes(str(path))} (key {key}) could not be uploaded: {problem}. It changed while "
        "`facetrain run` was uploading IMAGES_DIR; leave the folder alone until the run says `start`, and "
        "run again."
    )


@contextlib.contextmanager
def _photo_file(key: str, path: Path) -> Iterator[BinaryIO]:
    """The photo's file, opened without blocking and checked to be a regular file: between the listing
    and the upload it may have been removed, or replaced by a folder or a FIFO."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _vanished(key, path, str(exc.strerror)) from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise _vanished(key, path, "it is no longer a regular file")
    os.set_blocking(descriptor, True)
    with os.fdopen(descriptor, "rb") as handle:
        yield handle


def sync_images(
    s3: Any, bucket: str, prefix: str, images_dir: Path, say: Callable[[str], None] | None = None
) -> tuple[int, int]:
    """Make the images prefix hold exactly what scan_photo_folder lists (uploads all, deletes the keys
    whose file is gone); returns (uploaded, deleted). `say`, when given, is told each entry not uploaded.
    Raises PhotoFolderError (a name S3 cannot hold; a file that vanished or changed while uploading)."""
    folder = scan_photo_folder(images_dir, prefix)
    for line in folder.skipped if say else ():
        say(f"skip   {line}")
    wanted = {f"{prefix}{relative}" for relative in folder.files}
    stale = [key for key in all_keys(s3, bucket, prefix) if key not in wanted]
    for key in stale:
        s3.delete_object(Bucket=bucket, Key=key)
    for relative, path in folder.files.items():
        with _photo_file(relative, path) as handle:
            s3.upload_fileobj(handle, bucket, f"{prefix}{relative}")
    return len(folder.files), len(stale)
