"""The offline upload sees what the job sees (photo_upload.py): links followed (cycles named), what S3
cannot hold named and not uploaded, names that cannot be S3 keys refused before anything is uploaded,
a file that changes during the upload named. Each class is derived at test time, several variants each,
against a moto bucket."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from facetrain.contract.names import is_skipped
from facetrain.photos import list_channel
from facetrain_offline.photo_upload import PhotoFolderError, scan_photo_folder, sync_images
from moto import mock_aws
from support.special_files import make_socket as _socket
from support.unlistable import listing_refused

BUCKET = "photos-bucket"
PREFIX = "face_imgs/"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def photos(shared_data: Path) -> list[Path]:
    """The real photos of faces-small, one per person."""
    return sorted((shared_data / "faces-small").glob("*/*.jpg"))


@pytest.fixture
def images(tmp_path: Path, photos: list[Path]) -> Path:
    """IMAGES_DIR with two people of one photo each (copies of real photos)."""
    root = tmp_path / "images"
    for person, photo in zip(("ann", "bob"), photos, strict=False):
        (root / person).mkdir(parents=True)
        shutil.copy(photo, root / person / "1.jpg")
    return root


def _uploaded(s3: Any) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {
        o["Key"].removeprefix(PREFIX): s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        for o in listed
    }


# ---- symbolic links are followed, as the job follows them ------------------------------------------------

# name → make(images, elsewhere, photo) adds links; the keys that must then hold photo's bytes.
LINKS: dict[str, tuple[Callable[[Path, Path, Path], None], list[str]]] = {
    "person folder, relative link": (
        lambda images, elsewhere, photo: (images / "cy").symlink_to(os.path.relpath(elsewhere, images)),
        ["cy/a.jpg", "cy/deeper/b.jpg"],
    ),
    "person folder, absolute link": (
        lambda images, elsewhere, photo: (images / "cy").symlink_to(elsewhere),
        ["cy/a.jpg", "cy/deeper/b.jpg"],
    ),
    "folder inside a person's folder": (
        lambda images, elsewhere, photo: (images / "ann" / "trip").symlink_to(elsewhere / "deeper"),
        ["ann/trip/b.jpg"],
    ),
    "photo, relative link": (
        lambda images, elsewhere, photo: (images / "ann" / "2.jpg").symlink_to(
            os.path.relpath(photo, images / "ann")
        ),
        ["ann/2.jpg"],
    ),
    "photo, absolute link to a link": (
        lambda images, elsewhere, photo: (images / "bob" / "2.jpg").symlink_to(elsewhere / "a.jpg"),
        ["bob/2.jpg"],
    ),
}


@pytest.mark.parametrize("variant", LINKS)
def test_symbolic_links_are_followed(s3, images, photos, tmp_path, variant):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deeper").mkdir(parents=True)
    (elsewhere / "a.jpg").symlink_to(photos[2])
    (elsewhere / "deeper" / "b.jpg").symlink_to(photos[2])
    make, keys = LINKS[variant]
    make(images, elsewhere, photos[2])

    uploaded, deleted = sync_images(s3, BUCKET, PREFIX, images)

    objects = _uploaded(s3)
    assert set(keys) | {"ann/1.jpg", "bob/1.jpg"} == set(objects)
    assert uploaded == len(objects) and deleted == 0
    for key in keys:
        assert objects[key] == photos[2].read_bytes(), key


def test_images_dir_itself_may_be_a_link(s3, images, tmp_path):
    link = tmp_path / "linked-images"
    link.symlink_to(images)
    assert sync_images(s3, BUCKET, PREFIX, link) == (2, 0)
    assert set(_uploaded(s3)) == {"ann/1.jpg", "bob/1.jpg"}


# name → make(images) adds links that lead back into a folder they are in; the cycles to be named.
CYCLES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "to its own folder": (lambda images: (images / "ann" / "again").symlink_to("."), ["ann/again"]),
    "to the parent": (lambda images: (images / "ann" / "up").symlink_to(".."), ["ann/up"]),
    "to IMAGES_DIR, absolute": (lambda images: (images / "bob" / "all").symlink_to(images), ["bob/all"]),
    "a person folder linking to IMAGES_DIR": (lambda images: (images / "cy").symlink_to("."), ["cy"]),
    "two folders linking to each other": (
        lambda images: (
            (images / "ann" / "b").symlink_to("../bob"),
            (images / "bob" / "a").symlink_to("../ann"),
        ),
        ["ann/b/a", "bob/a/b"],
    ),
}


@pytest.mark.parametrize("variant", CYCLES)
def test_link_cycles_end_and_are_named(s3, images, variant):
    make, cycles = CYCLES[variant]
    make(images)

    listing = scan_photo_folder(images)
    sync_images(s3, BUCKET, PREFIX, images)

    for cycle in cycles:
        assert any(line.startswith(f"{cycle}: ") and "(a cycle)" in line for line in listing.skipped), (
            listing.skipped
        )
    assert {"ann/1.jpg", "bob/1.jpg"} <= set(_uploaded(s3))


def _read_by_job(key: str) -> bool:
    """Whether the job reads a key of the channel (it skips `_*`/`.*` names, but `_strangers/` at the top)."""
    parts = key.split("/")
    return not any(is_skipped(part) for part in parts[1 if parts[0] == "_strangers" else 0 :])


def test_the_upload_sees_what_the_job_sees(images, photos, tmp_path):
    """One walk (facetrain.folder_walk) for both: every key the job lists from the folder is uploaded, or
    named as not uploaded (a broken link, a FIFO: rejected by the job per photo), and nothing else."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deeper").mkdir(parents=True)
    (elsewhere / "a.jpg").symlink_to(photos[2])
    (elsewhere / "deeper" / "b.jpg").symlink_to(photos[2])
    for link in ("person folder, relative link", "folder inside a person's folder", "photo, relative link"):
        LINKS[link][0](images, elsewhere, photos[2])
    for cycle in ("to the parent", "to IMAGES_DIR, absolute", "two folders linking to each other"):
        CYCLES[cycle][0](images)
    (images / "ann" / "_draft.jpg").symlink_to(photos[0])
    (images / "_strangers" / "night").mkdir(parents=True)
    (images / "_strangers" / "night" / "1.jpg").symlink_to(photos[1])
    (images / "bob" / "gone.jpg").symlink_to("nowhere.jpg")
    os.mkfifo(images / "ann" / "pipe.jpg")

    listing = list_channel(images)
    folder = scan_photo_folder(images)

    job = {p.key for p in (*listing.photos, *listing.strangers)}
    not_uploaded = {line.split(": ")[0] for line in folder.skipped if "(a cycle)" not in line}
    assert job == {key for key in (*folder.files, *not_uploaded) if _read_by_job(key)}
    assert {"cy/a.jpg", "ann/trip/b.jpg", "_strangers/night/1.jpg", "bob/gone.jpg", "ann/pipe.jpg"} <= job


# (folder made unlistable, relative to IMAGES_DIR; "..": IMAGES_DIR's parent, elsewhere: a linked folder)
UNLISTABLE = ["ann", "bob/trip", "../elsewhere", "."]


@pytest.mark.parametrize("folder", UNLISTABLE)
def test_a_folder_that_cannot_be_listed_is_refused_by_name(s3, images, photos, tmp_path, folder):
    (images / "bob" / "trip").mkdir()
    (images / "bob" / "trip" / "2.jpg").symlink_to(photos[1])
    (tmp_path / "elsewhere").mkdir()
    (images / "cy").symlink_to(tmp_path / "elsewhere")
    refused = (images / folder).resolve()
    shown = images / "cy" if folder == "../elsewhere" else images / folder if folder != "." else images

    with listing_refused(refused), pytest.raises(PhotoFolderError) as error:
        sync_images(s3, BUCKET, PREFIX, images)

    assert str(error.value).startswith(f"{os.path.normpath(shown)}: cannot be listed (Permission denied)")
    assert "make it a readable folder, or move it out of IMAGES_DIR" in str(error.value)
    assert _uploaded(s3) == {}


# ---- what S3 cannot hold: named, not uploaded, never opened -----------------------------------------------


NOT_FILES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "broken relative link": ("ann/gone.jpg", lambda p: p.symlink_to("nowhere.jpg"), "does not exist"),
    "broken absolute link": ("bob/gone.jpg", lambda p: p.symlink_to("/nonexistent/x.jpg"), "does not exist"),
    "broken link at the top": ("stray.jpg", lambda p: p.symlink_to("nowhere.jpg"), "does not exist"),
    "link to itself": ("ann/self.jpg", lambda p: p.symlink_to(p.name), "leads back to itself"),
    "FIFO in a person's folder": ("ann/pipe.jpg", os.mkfifo, "a FIFO"),
    "FIFO at the top": ("pipe", os.mkfifo, "a FIFO"),
    "socket": ("bob/s.jpg", _socket, "a socket"),
}


@pytest.mark.parametrize("variant", NOT_FILES)
def test_entries_s3_cannot_hold_are_named_and_not_uploaded(s3, images, variant):
    key, make, words = NOT_FILES[variant]
    make(images / key)
    said: list[str] = []

    uploaded, _ = sync_images(s3, BUCKET, PREFIX, images, say=said.append)

    assert set(_uploaded(s3)) == {"ann/1.jpg", "bob/1.jpg"} and uploaded == 2
    (line,) = said
    assert line.startswith(f"skip   {key}: ") and words in line and "not uploaded" in line


def test_hidden_names_are_skipped_and_stale_keys_deleted(s3, images):
    (images / ".DS_Store").write_bytes(b"finder")
    (images / "ann" / ".hidden.jpg").write_bytes(b"x")
    (images / ".git").mkdir()
    (images / ".git" / "HEAD").write_bytes(b"ref")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}gone/1.jpg", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key="config/keep.json", Body=b"{}")

    assert sync_images(s3, BUCKET, PREFIX, images) == (2, 1)
    assert set(_uploaded(s3)) == {"ann/1.jpg", "bob/1.jpg", "config/keep.json"}


# ---- names that cannot be S3 keys: refused before anything is uploaded ------------------------------------

NOT_UTF8 = b"caf\xe9"  # Latin-1 "café"

# name → (path made, relative to IMAGES_DIR; a folder (holding a photo)?; the name to be refused)
BAD_NAMES: dict[str, tuple[bytes, bool, str]] = {
    "file name": (b"ann/" + NOT_UTF8 + b".jpg", False, "ann/caf\\xe9.jpg"),
    "person folder name": (NOT_UTF8, True, "caf\\xe9"),
    "folder inside a person's folder": (b"bob/" + NOT_UTF8 + b"/x", True, "bob/caf\\xe9"),
    "UTF-8-encoded surrogate": (b"ann/\xed\xa0\x80.jpg", False, "ann/\\xed\\xa0\\x80.jpg"),
    "a link with such a name": (b"ann/\xff-link.jpg", False, "ann/\\xff-link.jpg"),
}


def _make_bad(images: Path, relative: bytes, folder: bool, photo: Path) -> None:
    path = os.path.join(os.fsencode(images), relative)
    if folder:
        os.makedirs(path)
        shutil.copy(photo, os.path.join(path, b"1.jpg"))
    elif relative.endswith(b"-link.jpg"):
        os.symlink(os.fsencode(photo), path)
    else:
        shutil.copy(photo, path)


@pytest.mark.parametrize("variant", BAD_NAMES)
def test_names_that_are_not_utf8_are_refused_before_any_upload(s3, images, photos, variant):
    relative, folder, shown = BAD_NAMES[variant]
    _make_bad(images, relative, folder, photos[0])

    with pytest.raises(PhotoFolderError) as refused:
        sync_images(s3, BUCKET, PREFIX, images)

    message = str(refused.value)
    message.encode("utf-8")  # printable as it is: no surrogates
    assert f"1 name in {images} cannot be S3 keys" in message and f"- {images}/{shown}\n" in message
    assert "must be UTF-8" in message and "Rename them" in message
    assert _uploaded(s3) == {}


def test_every_bad_name_is_listed_once_and_hidden_ones_are_ignored(s3, images, photos):
    for i in range(12):
        _make_bad(images, b"ann/" + NOT_UTF8 + str(i).encode() + b".jpg", False, photos[0])
    _make_bad(images, b"bob/." + NOT_UTF8, False, photos[0])  # hidden: never uploaded, never refused

    with pytest.raises(PhotoFolderError) as refused:
        scan_photo_folder(images)

    message = str(refused.value)
    assert message.startswith(f"12 names in {images}") and "… and 2 more" in message
    assert message.count("\\xe9") == 10


def test_a_key_too_long_for_s3_is_refused(s3, images, photos):
    deep = images / "ann" / "/".join(["d" * 200] * 6)
    deep.mkdir(parents=True)
    shutil.copy(photos[0], deep / "1.jpg")

    with pytest.raises(PhotoFolderError, match="over 1024 bytes"):
        sync_images(s3, BUCKET, PREFIX, images)
    assert _uploaded(s3) == {}


# ---- a file that changes while the folder is uploaded: named, not a traceback ------------------------------


def _replace_with_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _replace_with_broken_link(path: Path) -> None:
    path.unlink()
    path.symlink_to("nowhere.jpg")


def _replace_with_looping_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


CHANGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "removed": (Path.unlink, "No such file or directory"),
    "replaced by a folder": (_replace_with_folder, "it is no longer a regular file"),
    "replaced by a FIFO": (_replace_with_fifo, "it is no longer a regular file"),
    "replaced by a broken link": (_replace_with_broken_link, "No such file or directory"),
    "replaced by a looping link": (_replace_with_looping_link, "Too many levels of symbolic links"),
}


class _ChangesFolderOnFirstUpload:
    """The moto client, except that its first upload first changes another photo of the folder (as a
    person editing IMAGES_DIR while `facetrain run` uploads it)."""

    def __init__(self, s3: Any, change: Callable[[], None]) -> None:
        self._s3, self._change = s3, change

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def upload_fileobj(self, *args: Any, **kwargs: Any) -> Any:
        change, self._change = self._change, lambda: None
        change()
        return self._s3.upload_fileobj(*args, **kwargs)


@pytest.mark.parametrize("variant", CHANGES)
def test_a_photo_that_changes_during_the_upload_is_named(s3, images, variant):
    change, words = CHANGES[variant]
    victim = images / "bob" / "1.jpg"  # uploaded after ann/1.jpg
    uploader = _ChangesFolderOnFirstUpload(s3, lambda: change(victim))

    with pytest.raises(PhotoFolderError) as refused:
        sync_images(uploader, BUCKET, PREFIX, images)

    message = str(refused.value)
    assert message.startswith(f"{victim} (key bob/1.jpg) could not be uploaded: {words}"), message
    assert "run again" in message
    assert set(_uploaded(s3)) == {"ann/1.jpg"}
