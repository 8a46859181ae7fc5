"""Photos as people have them (issue 27), at validation: a folder derived from faces-dev with a HEIC and an
AVIF photo and Thumbs.db, .DS_Store, desktop.ini, notes.txt and a .MOV in a person's folder, uploaded to
(moto) S3 as `facetrain run` uploads IMAGES_DIR. validate runs: the HEIC/AVIF are in the manifest, each
stray file is skipped with its reason, named by its key relative to the images prefix (the person's own
path, never s3://…). validate, the upload (scan_photo_folder) and the job (list_channel) agree on which
files are skipped, and why."""

from __future__ import annotations

import json

from facetrain.contract.photo_files import NOT_A_PHOTO
from facetrain.photos import list_channel
from facetrain_lambdas import validate
from facetrain_lambdas.dataset import ListedObject, check_photos
from facetrain_offline.lambda_runtime import LambdaContext
from facetrain_offline.photo_upload import scan_photo_folder
from handler_fixtures import BUCKET
from support.phone_photos import STRAY_REASONS, phone_folder


def _read(s3, key: str) -> object:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_validate_keeps_the_phone_photos_and_skips_the_stray_files(
    s3, function_env, shared_data, tmp_path
) -> None:
    folder = phone_folder(shared_data / "faces-dev", tmp_path / "photos")
    for relative in [*folder.photos, *folder.stray]:
        s3.put_object(Bucket=BUCKET, Key=f"face_imgs/{relative}", Body=(folder.root / relative).read_bytes())

    pointer = validate.handler({"execution": "exec-1", "input": {}}, LambdaContext("validate"))

    manifest = _read(s3, pointer["manifest_key"])
    assert manifest[1:] == folder.photos  # person_02/IMG_0001.HEIC and person_04/IMG_0002.avif among them
    assert {"person_02/IMG_0001.HEIC", "person_04/IMG_0002.avif"} <= set(manifest[1:])
    record = _read(s3, pointer["run_record_key"])
    assert record["dataset"]["skipped"] == len(folder.stray) == 5
    assert sorted(record["warnings"]) == sorted(
        f"{relative}: {STRAY_REASONS[relative.split('/')[-1]]}: skipped; photos are read as JPEG, PNG, "
        "HEIC/HEIF, AVIF, WebP, TIFF, BMP or GIF"
        for relative in folder.stray
    )
    assert not any("s3://" in warning for warning in record["warnings"])


def test_validate_the_upload_and_the_job_skip_the_same_files_for_the_same_reason(
    shared_data, tmp_path
) -> None:
    folder = phone_folder(shared_data / "faces-dev", tmp_path / "photos")

    uploaded = scan_photo_folder(folder.root)
    listing = list_channel(folder.root)
    objects = [  # the upload's keys, as S3 lists them
        ListedObject(f"face_imgs/{relative}", (folder.root / relative).stat().st_size, relative)
        for relative in sorted([*folder.photos, *folder.stray])
    ]
    snapshot, problems = check_photos(objects, "b", "face_imgs/", 1, 20 * 1024 * 1024)

    assert problems == []
    # What is read: the same files everywhere.
    assert sorted(uploaded.files) == folder.photos
    assert sorted(photo.key for photo in listing.photos) == folder.photos
    assert snapshot.keys == folder.photos
    # What is skipped, and why: one line per stray file, its path relative to the photos folder first.
    skipped_by_upload = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in uploaded.skipped}
    skipped_by_validate = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in snapshot.warnings}
    skipped_by_job = {item.photo.key: item for item in listing.skipped}
    assert sorted(skipped_by_upload) == sorted(skipped_by_validate) == folder.stray
    # The job skips them unread (rejected.csv rows), but for .DS_Store: a `.` name, which it ignores.
    assert sorted(skipped_by_job) == [key for key in folder.stray if not key.endswith("/.DS_Store")]
    for relative in folder.stray:
        reason = STRAY_REASONS[relative.split("/")[-1]]
        if relative in skipped_by_job:
            assert skipped_by_job[relative].reason == NOT_A_PHOTO
            assert skipped_by_job[relative].message == skipped_by_validate[relative]
        assert skipped_by_upload[relative] == f"{skipped_by_validate[relative]}; not uploaded"
        assert skipped_by_validate[relative].startswith(reason)
