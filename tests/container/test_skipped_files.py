"""Files that are not photos (issue 27) are skipped by the job, not counted as photos: list_channel lists
them apart (`skipped`), the enrollment counts them nowhere but `skipped` (rejected.csv rows `not_a_photo`),
so a folder holding only a Thumbs.db and a notes.txt is no person, never "left out". The pieces, without a
job run; tests/container/test_skipped_files_job.py runs the job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.contract.photo_files import NOT_A_PHOTO, not_photo_reason
from facetrain.distributed import HostShare
from facetrain.enrollment import EnrollmentBuilder
from facetrain.host_share import share_from_json, share_to_json
from facetrain.inference.faces import DetectedFace
from facetrain.photos import PhotoRef, SkippedFile, list_channel
from facetrain.pipeline import Accepted

GHOST = "ghost"  # a folder holding no photo, only what Windows and a person leave there


def _channel(root: Path) -> Path:
    (root / "person_01").mkdir(parents=True)
    (root / "person_01" / "1.jpg").write_bytes(b"listed by name; never decoded here")
    (root / "person_01" / "notes.txt").write_text("who is who")
    (root / GHOST).mkdir()
    (root / GHOST / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / GHOST / "notes.txt").write_text("the new hire's photos come next week")
    (root / "_strangers").mkdir()
    (root / "_strangers" / "desktop.ini").write_text("[.ShellClassInfo]")
    (root / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")  # beside the folders: skipped, no identity
    (root / "group.jpg").write_bytes(b"a photo in no person's folder")  # a stray file, as before
    return root


def test_the_listing_puts_files_that_are_not_photos_apart(tmp_path) -> None:
    listing = list_channel(_channel(tmp_path / "face_imgs"))

    assert [photo.key for photo in listing.photos] == ["person_01/1.jpg"]
    assert listing.misnamed == [] and listing.strangers == []
    assert listing.stray_files == ["group.jpg"]
    assert [(item.photo.identity, item.photo.key) for item in listing.skipped] == [
        ("", "Thumbs.db"),
        ("_strangers", "_strangers/desktop.ini"),
        (GHOST, "ghost/Thumbs.db"),
        (GHOST, "ghost/notes.txt"),
        ("person_01", "person_01/notes.txt"),
    ]
    for item in listing.skipped:
        assert item.reason == NOT_A_PHOTO and item.message == not_photo_reason(Path(item.photo.key).name)


def _ref(key: str) -> PhotoRef:
    return PhotoRef(identity=key.split("/")[0], key=key, path=Path("/nowhere") / key)


def _accepted(key: str) -> Accepted:
    unit = np.zeros(8, dtype=np.float32)
    unit[0] = 1.0
    return Accepted(
        _ref(key), hashlib.sha256(key.encode()).hexdigest(), DetectedFace((1, 2, 30, 40), 0.99, 1), unit
    )


def _skipped(key: str) -> SkippedFile:
    return SkippedFile(_ref(key), not_photo_reason(Path(key).name) or "")


def _enrolled(*skipped: str):
    builder = EnrollmentBuilder()
    for outcome in [_accepted("person_01/1.jpg"), _accepted("person_01/2.jpg"), *map(_skipped, skipped)]:
        builder.add(outcome)
    return builder.finish(min_images_per_identity=1)


def test_a_folder_of_files_that_are_not_photos_is_no_person_and_nothing_counts_them() -> None:
    enrollment = _enrolled("ghost/Thumbs.db", "ghost/notes.txt", "person_01/notes.txt", "_strangers/x.mov")
    without = _enrolled()

    assert [item.identity for item in enrollment.identities] == ["person_01"]
    assert enrollment.left_out == [] and enrollment.excluded == {}
    assert (enrollment.images_total, enrollment.images_accepted) == (2, 2)
    assert enrollment.rejected == [] and enrollment.rejections_by_reason == {}
    assert enrollment.rejections_by_identity() == {}
    assert enrollment.strangers.photos == 0
    assert enrollment.dataset_fingerprint == without.dataset_fingerprint  # as validate: not in the dataset
    # Listed all the same, in rejected.csv: the person finds why each was not used.
    assert [(row.identity, row.photo, row.reason) for row in enrollment.rejected_rows] == [
        ("", "_strangers/x.mov", NOT_A_PHOTO),
        (GHOST, "ghost/Thumbs.db", NOT_A_PHOTO),
        (GHOST, "ghost/notes.txt", NOT_A_PHOTO),
        ("person_01", "person_01/notes.txt", NOT_A_PHOTO),
    ]
    assert all(row.message.startswith("not a photo (") for row in enrollment.skipped)


def test_the_master_counts_every_hosts_skipped_files_and_no_host_makes_them_a_person() -> None:
    """With several hosts each lists its shard: the skipped files travel among its outcomes (as JSON,
    facetrain.host_share) and are counted apart on the master, whichever host had them."""
    from facetrain.job import enroll

    photos = HostShare([_accepted("person_01/1.jpg")], [], 1, 0, 1, 0.1, 1)
    ghost_only = HostShare([_skipped("ghost/Thumbs.db"), _skipped("ghost/notes.txt")], [], 0, 0, 0, 0.0, 0)
    ghost_only = share_from_json(json.loads(json.dumps(share_to_json(ghost_only))))  # as the gather does

    enrolled = enroll([photos, ghost_only], Hyperparameters())

    enrollment = enrolled.enrollment
    assert [item.identity for item in enrollment.identities] == ["person_01"] and enrollment.left_out == []
    assert (enrollment.images_total, enrolled.photos_total, len(enrollment.skipped)) == (1, 1, 2)


def test_a_channel_of_files_that_are_not_photos_fails_saying_so_and_naming_none(sagemaker_tree, run_job):
    sagemaker_tree.add_photo(GHOST, "Thumbs.db", b"\xd0\xcf\x11\xe0")
    sagemaker_tree.add_photo(GHOST, "notes.txt", b"the new hire's photos come next week\n")

    assert run_job(sagemaker_tree).rc == 1
    assert sagemaker_tree.failure() == (
        "The 'face_imgs' channel holds no photo in <identity>/<photo> folders (only 2 files known not to be "
        "photos, such as Thumbs.db, text or videos, which are skipped). Put each person's photos in a folder "
        "named after them."
    )
