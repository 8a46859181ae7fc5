"""folder_walk: the one walk the job's listing and `facetrain run`'s upload share. Each entry's kind is
derived from real trees made at test time (links, cycles, FIFOs, sockets, folders that cannot be listed,
a tree deeper than Python's recursion limit)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from facetrain.folder_walk import EntryKind, WalkEntry, walk
from support.special_files import make_socket as _socket
from support.unlistable import listing_refused


def _everything(entry: WalkEntry) -> bool:
    return False


def _kinds(top: Path, skip: Callable[[WalkEntry], bool] = _everything) -> dict[str, EntryKind]:
    return {"/".join(entry.parts): entry.kind for entry in walk(top, skip)}


# name → (make(top) adds the entry at `top/a/x`; its kind; what NOT_A_FILE says)
ENTRIES: dict[str, tuple[Callable[[Path], None], EntryKind, str | None]] = {
    "regular file": (lambda x: x.write_bytes(b"1"), EntryKind.FILE, None),
    "link to a file": (lambda x: x.symlink_to(x.parent.parent / "file"), EntryKind.FILE, None),
    "link to a link to a file": (lambda x: x.symlink_to("../link-to-file"), EntryKind.FILE, None),
    "FIFO": (os.mkfifo, EntryKind.NOT_A_FILE, "a FIFO (named pipe)"),
    "socket": (_socket, EntryKind.NOT_A_FILE, "a socket"),
    "broken relative link": (lambda x: x.symlink_to("nowhere"), EntryKind.BROKEN, None),
    "broken absolute link": (lambda x: x.symlink_to("/nonexistent/x.jpg"), EntryKind.BROKEN, None),
    "link to itself": (lambda x: x.symlink_to("x"), EntryKind.BROKEN, None),
    "link to its own folder": (lambda x: x.symlink_to("."), EntryKind.CYCLE, None),
    "link to the top": (lambda x: x.symlink_to(".."), EntryKind.CYCLE, None),
    "link to a folder elsewhere": (lambda x: x.symlink_to(x.parent.parent / "b"), EntryKind.FOLDER, None),
}


@pytest.mark.parametrize("variant", ENTRIES)
def test_each_entry_is_told_what_it_is(tmp_path, variant):
    make, kind, what = ENTRIES[variant]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "file").write_bytes(b"1")
    (tmp_path / "link-to-file").symlink_to("file")
    make(tmp_path / "a" / "x")

    (entry,) = [entry for entry in walk(tmp_path, _everything) if entry.parts == ("a", "x")]

    assert entry.kind is kind and entry.path == tmp_path / "a" / "x"
    if what is not None:
        assert entry.what == what
    if kind is EntryKind.BROKEN:
        assert entry.error is not None and entry.is_link


def test_depth_first_in_name_order_each_folder_before_what_it_holds(tmp_path):
    for relative in ["b/2.jpg", "a/c.jpg", "a/b/x.jpg", "a/a.jpg", "c.jpg"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"1")
    assert list(_kinds(tmp_path)) == ["a", "a/a.jpg", "a/b", "a/b/x.jpg", "a/c.jpg", "b", "b/2.jpg", "c.jpg"]


def test_the_skip_rule_leaves_out_an_entry_and_all_under_a_folder(tmp_path):
    for relative in [".git/HEAD", "_old/1.jpg", "a/.h.jpg", "a/1.jpg"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"1")
    kinds = _kinds(tmp_path, lambda entry: entry.name.startswith("."))
    assert list(kinds) == ["_old", "_old/1.jpg", "a", "a/1.jpg"]


def test_two_folders_linking_to_each_other_end(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "bob").mkdir()
    (tmp_path / "ann" / "b").symlink_to("../bob")
    (tmp_path / "bob" / "a").symlink_to("../ann")
    kinds = _kinds(tmp_path)
    assert kinds["ann/b/a"] is EntryKind.CYCLE and kinds["bob/a/b"] is EntryKind.CYCLE
    assert kinds["ann/b"] is EntryKind.FOLDER and kinds["bob/a"] is EntryKind.FOLDER


@pytest.mark.parametrize("where", ["a", "a/deeper", "linked"])
def test_a_folder_that_cannot_be_listed_is_said_and_the_walk_goes_on(tmp_path, where):
    top = tmp_path / "top"
    (top / "a" / "deeper").mkdir(parents=True)
    (top / "a" / "deeper" / "1.jpg").write_bytes(b"1")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "2.jpg").write_bytes(b"1")
    (top / "linked").symlink_to(tmp_path / "elsewhere")
    (top / "z.jpg").write_bytes(b"1")

    with listing_refused((top / where).resolve()):
        entries = [entry for entry in walk(top, _everything) if entry.kind is EntryKind.UNLISTABLE]
        kinds = _kinds(top)

    (entry,) = entries
    assert entry.parts == tuple(where.split("/")) and isinstance(entry.error, PermissionError)
    assert kinds["z.jpg"] is EntryKind.FILE  # the walk went on past it
    assert not [relative for relative in kinds if relative.startswith(f"{where}/")]


def test_a_top_that_cannot_be_listed_or_does_not_exist_is_one_unlistable_entry(tmp_path):
    (tmp_path / "top").mkdir()
    with listing_refused(tmp_path / "top"):
        (entry,) = walk(tmp_path / "top", _everything)
    assert entry.kind is EntryKind.UNLISTABLE and entry.parts == ()
    (gone,) = walk(tmp_path / "gone", _everything)
    assert gone.kind is EntryKind.UNLISTABLE and isinstance(gone.error, FileNotFoundError)


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path):
    depth = sys.getrecursionlimit() + 100
    deepest = tmp_path
    try:
        for _ in range(depth):  # about 2 bytes a level: within PATH_MAX (mkdir(parents=True) recurses)
            deepest = deepest / "d"
            deepest.mkdir()
        (deepest / "1.jpg").write_bytes(b"1")
        files = [entry for entry in walk(tmp_path, _everything) if entry.kind is EntryKind.FILE]
        assert [len(entry.parts) for entry in files] == [depth + 1]
    finally:  # bottom up: shutil.rmtree (pytest's clean-up of old tmp_paths) recurses too deep for it
        (deepest / "1.jpg").unlink(missing_ok=True)
        while deepest != tmp_path:
            if deepest.exists():
                deepest.rmdir()
            deepest = deepest.parent
