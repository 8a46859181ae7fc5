"""One walk of a folder tree, shared by the job's listing of its photos channel (photos.list_channel) and
`facetrain run`'s upload of IMAGES_DIR (facetrain_offline.photo_upload), so that the upload sees what the
job sees. Each caller keeps its own rule for what to skip and how to report what is not a photo.

`walk` yields every entry under a folder, any depth, depth first in name order, each with what it is:
a folder (yielded before what it holds), a regular file, anything else (a FIFO, a socket, a device), an
entry that cannot be examined (a broken link, a link that leads to itself, one removed while listed), a
link to a folder that contains it (a cycle: not followed, what it leads to is listed already), or a folder
that cannot be listed (its error kept). Symbolic links are followed, to folders and files alike; nothing
is opened, so nothing can block.

Written out rather than taken from the standard library: os.walk(followlinks=True) never notices a link
cycle (it recurses until the path is too long) and yields a folder's files before its sub-folders (not in
name order); Path.rglob (Python 3.11) never enters a linked folder below its start, so a linked person's
photos vanished. The walk keeps its own stack, so a deep tree cannot exhaust Python's recursion limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path


class EntryKind(Enum):
    """What an entry of the walk is (symbolic links followed)."""

    FOLDER = "folder"  # entered next, unless it cannot be listed (then an UNLISTABLE entry follows)
    FILE = "regular file"
    NOT_A_FILE = "not a regular file"  # a FIFO, socket or device: `what` says which
    BROKEN = "cannot be examined"  # stat failed: `error` says why (a broken link, a link loop, gone)
    CYCLE = "link to a folder that contains it"  # not followed
    UNLISTABLE = "folder that cannot be listed"  # `error` says why; the walk's top has parts ()


@dataclass(frozen=True)
class WalkEntry:
    """One entry: its path, its names relative to the walk's top (`parts`), what it is, its mode and
    (st_dev, st_ino) (links followed; 0 and None where unknown), the error of a BROKEN or UNLISTABLE
    entry, and whether the entry itself is a symbolic link."""

    path: Path
    parts: tuple[str, ...]
    kind: EntryKind
    mode: int = 0
    file_id: tuple[int, int] | None = None
    error: OSError | None = None
    is_link: bool = False

    @property
    def name(self) -> str:
        """The entry's own name ('' for the walk's top)."""
        return self.parts[-1] if self.parts else ""

    @property
    def what(self) -> str:
        """What a NOT_A_FILE entry is, in words: `a FIFO (named pipe)`, `a socket`, `a device`."""
        if stat.S_ISFIFO(self.mode):
            return "a FIFO (named pipe)"
        if stat.S_ISSOCK(self.mode):
            return "a socket"
        if stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode):
            return "a device"
        return "not a regular file"


SkipRule = Callable[[WalkEntry], bool]  # True: the entry is not yielded (and a folder not entered)


@dataclass
class _Listed:
    """A folder being walked: its sorted entries, where it is, and the folders it is inside."""

    folder: Path
    parts: tuple[str, ...]
    ancestors: frozenset[tuple[int, int]]  # (st_dev, st_ino) of it and every folder above it
    entries: Iterator[os.DirEntry[str]]


def _listing(folder: Path) -> list[os.DirEntry[str]] | OSError:
    """The folder's entries in name order, or the error that stopped listing it."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as exc:
        return exc


def _examined(entry: os.DirEntry[str], at: _Listed) -> WalkEntry:
    """What one directory entry is, links followed."""
    path, parts = at.folder / entry.name, (*at.parts, entry.name)
    is_link = entry.is_symlink()
    try:
        info = entry.stat()  # follows links
    except OSError as exc:
        return WalkEntry(path, parts, EntryKind.BROKEN, error=exc, is_link=is_link)
    file_id = (info.st_dev, info.st_ino)
    if stat.S_ISDIR(info.st_mode):
        kind = EntryKind.CYCLE if file_id in at.ancestors else EntryKind.FOLDER
    else:
        kind = EntryKind.FILE if stat.S_ISREG(info.st_mode) else EntryKind.NOT_A_FILE
    return WalkEntry(path, parts, kind, mode=info.st_mode, file_id=file_id, is_link=is_link)


def walk(top: Path, skip: SkipRule) -> Iterator[WalkEntry]:
    """Every entry under `top` that `skip` keeps, any depth, depth first in name order (module
    docstring). A folder is yielded before what it holds; `top` itself is not yielded, except as an
    UNLISTABLE entry (parts ()) when it cannot be examined or listed."""
    try:
        info = top.stat()
    except OSError as exc:
        yield WalkEntry(top, (), EntryKind.UNLISTABLE, error=exc)
        return
    listed = _listing(top)
    if isinstance(listed, OSError):
        yield WalkEntry(top, (), EntryKind.UNLISTABLE, mode=info.st_mode, error=listed)
        return
    stack = [_Listed(top, (), frozenset({(info.st_dev, info.st_ino)}), iter(listed))]
    while stack:
        at = stack[-1]
        entry = next(at.entries, None)
        if entry is None:
            stack.pop()
            continue
        found = _examined(entry, at)
        if skip(found):
            continue
        yield found
        if found.kind is not EntryKind.FOLDER:
            continue
        inside = _listing(found.path)
        if isinstance(inside, OSError):
            yield replace(found, kind=EntryKind.UNLISTABLE, error=inside)
        elif found.file_id is not None:
            stack.append(_Listed(found.path, found.parts, at.ancestors | {found.file_id}, iter(inside)))
