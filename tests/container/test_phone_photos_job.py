"""Photos as people have them (issue 27), through the whole job (weights=none: a cheap run): faces-dev (2
photos a person) with an iPhone HEIC (orientation 6) and an AVIF (orientation 8) made from two of its
JPEGs, and Thumbs.db, .DS_Store, desktop.ini, notes.txt and a .MOV in person_02's folder. The run
succeeds; the HEIC and AVIF are enrolled with their face where it is on the upright JPEG they were made
from (rotated right); each stray file is a rejected.csv row `not_a_photo` with its reason (.DS_Store, a
`.` name, ignored), never a refusal."""

from __future__ import annotations

import pytest
from support.phone_photos import STRAY_REASONS, phone_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    base = tmp_path_factory.mktemp("phone_photos")
    tree = sagemaker_tree_class(base / "opt_ml")
    folder = phone_folder(shared_data / "faces-dev", tree.images)
    result = module_job(tree)
    return tree, folder, result


def test_the_run_succeeds_and_enrolls_the_heic_and_avif_photos_upright(run) -> None:
    tree, folder, result = run
    assert result.rc == 0, tree.failure()
    records = tree.records()
    for phone, source in folder.phone_photos.items():
        assert phone in records, (phone, sorted(records))
        # The face is found where it is on the upright JPEG: the photo was turned back (a quarter turn
        # missed or made twice puts the box elsewhere, or finds no face).
        phone_box, jpeg_box = records[phone]["box"], records[source]["box"]
        assert all(abs(a - b) <= 6 for a, b in zip(phone_box, jpeg_box, strict=True)), (phone_box, jpeg_box)
    assert tree.metrics()["images_accepted"] == len(folder.photos)


def test_the_stray_files_are_rejected_unread_with_their_reason(run) -> None:
    tree, folder, _ = run
    rows = {key: row for key, row in tree.rejected_by_photo().items() if row["reason"] == "not_a_photo"}
    expected = [key for key in folder.stray if not key.endswith("/.DS_Store")]
    assert sorted(rows) == expected
    for key, row in rows.items():
        assert row["identity"] == "person_02"
        assert row["message"].startswith(STRAY_REASONS[key.split("/")[-1]] + ": skipped")
