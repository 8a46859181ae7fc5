"""Photo listing checks and the manifest: pure functions, no AWS."""

from __future__ import annotations

import time

from facetrain_lambdas.dataset import ListedObject, check_photos, list_objects, manifest

MB = 1024 * 1024


def _objects(*keys: str, size: int = 1000) -> list[ListedObject]:
    return [ListedObject(key=key, size=size, etag=f"etag-{key}") for key in keys]


def _check(objects: list[ListedObject], min_per_identity: int = 1, max_bytes: int = 20 * MB):
    return check_photos(objects, "b", "face_imgs/", min_per_identity, max_bytes)


def test_good_layout_is_snapshotted() -> None:
    snapshot, problems = _check(
        _objects("face_imgs/alice/1.jpg", "face_imgs/alice/sub/2.PNG", "face_imgs/bob/1.jpeg", "face_imgs/")
    )
    assert problems == []
    assert snapshot.keys == ["alice/1.jpg", "alice/sub/2.PNG", "bob/1.jpeg"]
    assert dict(snapshot.identities) == {"alice": 2, "bob": 1}
    assert snapshot.total_bytes == 3000
    assert len(snapshot.fingerprint) == 64


def test_skipped_names_follow_the_container() -> None:
    snapshot, problems = _check(
        _objects(
            "face_imgs/alice/1.jpg",
            "face_imgs/alice/.DS_Store",
            "face_imgs/_drafts/x.jpg",
            "face_imgs/.hidden",
        )
    )
    assert problems == []
    assert snapshot.keys == ["alice/1.jpg"] and snapshot.skipped == 3
    why = (
        " is skipped: names starting with '_' or '.' are ignored, as the training job ignores them "
        "(all but _strangers/ at the top: the known strangers)"
    )
    # .DS_Store is skipped as a file known not to be a photo (contract.photo_files), with that reason.
    assert snapshot.warnings == [
        "alice/.DS_Store: not a photo (a macOS folder settings file): skipped; photos are read as JPEG, PNG, "
        "HEIC/HEIF, AVIF, WebP, TIFF, BMP or GIF",
        *(f"{name}{why}" for name in ("_drafts/ (1 object)", ".hidden")),
    ]


def test_skipped_folders_give_one_warning_each() -> None:
    snapshot, problems = _check(
        _objects(
            "face_imgs/alice/1.jpg", *(f"face_imgs/_old/{i}.jpg" for i in range(5)), "face_imgs/bob/.x/1.jpg"
        )
    )
    assert problems == [] and snapshot.skipped == 6
    assert [warning.split(" is skipped")[0] for warning in snapshot.warnings] == [
        "_old/ (5 objects)",
        "bob/.x/ (1 object)",
    ]


def test_files_directly_under_the_prefix_are_left_out_with_a_warning() -> None:
    snapshot, problems = _check(
        _objects("face_imgs/README.md", "face_imgs/alice/1.jpg", "face_imgs/stray.jpg")
    )
    assert problems == []
    assert snapshot.keys == ["alice/1.jpg"] and snapshot.skipped == 2
    # Named by the key relative to the prefix (the person's own path); README.md is no photo: skipped as one.
    assert snapshot.warnings == [
        "stray.jpg lies at the top of the photos folder, in no person's folder: move it into a folder named "
        "after the person (<name>/stray.jpg) to use it; it is left out of this run",
        "README.md: not a photo (a text or document file, .md): skipped; photos are read as JPEG, PNG, "
        "HEIC/HEIF, AVIF, WebP, TIFF, BMP or GIF",
    ]


def test_only_stray_files_and_no_identity_folder_is_a_problem() -> None:
    snapshot, problems = _check(_objects("face_imgs/README.md", "face_imgs/1.jpg", "face_imgs/_x/2.jpg"))
    (problem,) = problems
    assert problem.startswith(
        "no photos in the photos folder: put them in one folder per person, <name>/<photo>.jpg"
    )
    assert len(snapshot.warnings) == 3 and snapshot.keys == []


def test_folder_markers_are_ignored() -> None:
    objects = [*_objects("face_imgs/alice/1.jpg"), ListedObject("face_imgs/alice/", 0, "")]
    snapshot, problems = _check(objects)
    assert problems == [] and snapshot.keys == ["alice/1.jpg"]


def test_each_problem_names_the_photo_and_the_fix() -> None:
    objects = [
        *_objects(
            "face_imgs/stray.jpg", "face_imgs/alice/notes.txt", "face_imgs/alice//x.jpg", "face_imgs/bob/1"
        ),
        ListedObject("face_imgs/alice/empty.jpg", 0, "e"),
        ListedObject("face_imgs/alice/huge.jpg", 30 * MB, "e"),
        *_objects("face_imgs/carol/1.jpg"),
    ]
    snapshot, problems = _check(objects, min_per_identity=2)
    text = "\n".join(problems)
    # A file directly under the prefix is not a problem (the job would report it in rejected.csv): a warning.
    assert "stray.jpg" not in text
    stray, notes, no_extension = snapshot.warnings
    assert stray.startswith("stray.jpg lies at the top of the photos folder, in no person's folder: move it")
    # A text file is skipped with its reason, no longer a problem (issue 27); so is a video.
    assert "notes.txt" not in text
    assert notes.startswith("alice/notes.txt: not a photo (a text or document file, .txt): skipped")
    assert "alice//x.jpg: the key has an empty folder name" in text
    # A file without a photo extension is kept (the job reads by content; rejected.csv names it if no image).
    assert no_extension.startswith("bob/1: no extension is not a photo format's: the training job reads it")
    assert "alice/empty.jpg is empty (0 bytes): upload the photo again" in text
    assert "alice/huge.jpg is 30.0 MB, over the 20.0 MB limit" in text
    assert "s3://" not in "\n".join([*problems, *snapshot.warnings])  # the person's own paths
    # bob (its file without extension) and carol have a photo each, fewer than 2: none could be enrolled
    # (issue 25: with others enrolled, they would be a counted warning; test_validate's too-few tests)
    assert "every identity (2) has fewer than min_images_per_identity=2 photos in the photos folder" in text
    assert snapshot.keys == ["bob/1", "carol/1.jpg"] and snapshot.skipped == 2
    assert len(problems) == 4


def test_too_few_photos_is_a_warning_apart_from_what_was_left_out() -> None:
    """People with fewer than min_images_per_identity photos are listed (the job excludes them): counted in
    `too_few`, never in `warnings` or `skipped`, which are about objects left out."""
    for keys, minimum, few in [
        (["alice/1.jpg", "alice/2.jpg", "bob/1.jpg"], 2, 1),
        (["alice/1.jpg", "alice/2.jpg", "alice/3.jpg", "bob/1.jpg", "carol/1.jpg", "carol/2.jpg"], 3, 2),
        (["alice/1.jpg", "bob/1.jpg"], 1, 0),
    ]:
        snapshot, problems = _check(_objects(*(f"face_imgs/{key}" for key in keys)), min_per_identity=minimum)
        assert problems == [] and snapshot.warnings == [] and snapshot.skipped == 0
        assert (snapshot.too_few.count if snapshot.too_few else 0) == few
        assert snapshot.all_warnings == ([snapshot.too_few.warning] if few else [])


def test_an_empty_prefix_is_a_problem() -> None:
    _, problems = _check([])
    assert problems == [
        "no photos in the photos folder: put them in one folder per person, <name>/<photo>.jpg (on AWS "
        "under face_imgs/ in the data bucket)"
    ]


def test_fingerprint_follows_the_listing() -> None:
    base = _objects("face_imgs/alice/1.jpg", "face_imgs/bob/1.jpg")
    same, _ = _check(base)
    again, _ = _check(list(base))
    changed, _ = _check([*base[:1], ListedObject("face_imgs/bob/1.jpg", 1000, "other-etag")])
    assert same.fingerprint == again.fingerprint != changed.fingerprint


def test_manifest_format() -> None:
    assert manifest("b", "face_imgs/", ["alice/1.jpg"]) == [{"prefix": "s3://b/face_imgs/"}, "alice/1.jpg"]


def test_hundred_thousand_objects_are_checked_quickly() -> None:
    objects = (
        ListedObject(f"face_imgs/person{i // 10:05d}/{i % 10}.jpg", 50_000, f"{i:032x}")
        for i in range(100_000)
    )
    started = time.perf_counter()
    snapshot, problems = _check(objects, min_per_identity=10)
    assert problems == []
    assert len(snapshot.keys) == 100_000 and len(snapshot.identities) == 10_000
    assert time.perf_counter() - started < 10


def test_listing_follows_every_page(s3) -> None:
    for i in range(25):
        s3.put_object(Bucket="facetrain-data-test", Key=f"face_imgs/p{i % 5}/{i}.jpg", Body=b"x")
    s3.put_object(Bucket="facetrain-data-test", Key="elsewhere/x.jpg", Body=b"x")
    pages = []
    real = s3.get_paginator

    def counting_paginator(name: str):
        paginator = real(name)
        original = paginator.paginate

        def paginate(**kwargs):
            for page in original(**kwargs):
                pages.append(page)
                yield page

        paginator.paginate = paginate
        return paginator

    s3.get_paginator = counting_paginator
    listed = list(list_objects(s3, "facetrain-data-test", "face_imgs/", page_size=4))
    assert len(listed) == 25 and len(pages) == 7
    assert all(obj.key.startswith("face_imgs/") and obj.etag and obj.size == 1 for obj in listed)


def test_a_video_over_the_photo_size_limit_is_skipped_not_refused() -> None:
    """A Live Photo's .MOV or a clip beside the photos is no photo: skipped with its reason before any size
    check (issue 27), never "over the 20.0 MB limit: downscale"; a photo that large is still refused."""
    objects = [
        *_objects("face_imgs/alice/1.jpg"),
        ListedObject("face_imgs/alice/IMG_0001.MOV", 300 * MB, "e"),
        ListedObject("face_imgs/alice/big.HEIC", 30 * MB, "e"),
    ]
    snapshot, problems = _check(objects)
    assert problems == ["alice/big.HEIC is 30.0 MB, over the 20.0 MB limit: downscale or re-encode it"]
    assert snapshot.warnings == [
        "alice/IMG_0001.MOV: not a photo (a video, .mov): skipped; photos are read as JPEG, PNG, HEIC/HEIF, "
        "AVIF, WebP, TIFF, BMP or GIF"
    ]
    assert snapshot.keys == ["alice/1.jpg"] and snapshot.skipped == 1
