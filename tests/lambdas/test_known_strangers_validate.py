"""Known strangers on the Lambdas' side (issue 24, item 3): validate lists `<images prefix>_strangers/`
apart, with a person's photo checks, puts its photos in the manifest and the fingerprint, counts them in
run.json and its pointer, never as an identity; publish checks the strangers' records of the pickle."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
from facetrain.contract.embeddings_file import load_embeddings
from facetrain.contract.names import STRANGERS_FOLDER
from facetrain_lambdas import validate
from facetrain_lambdas.artifact import verify_results
from facetrain_lambdas.dataset import ListedObject, check_photos
from facetrain_lambdas.errors import InvalidInput, ResultsInvalid
from facetrain_lambdas.run_record import parse_run_record
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET
from support.testkit import JPEG, model_files, upload_photos

MB = 1024 * 1024
PEOPLE = ("face_imgs/alice/1.jpg", "face_imgs/alice/2.jpg", "face_imgs/bob/1.jpg")
STRANGERS = (
    "face_imgs/_strangers/visitor.jpg",
    "face_imgs/_strangers/visitors/2024/guest.JPG",
    "face_imgs/_strangers/public/face.png",
)


def _objects(*keys: str, size: int = 1000) -> list[ListedObject]:
    return [ListedObject(key=key, size=size, etag=f"etag-{key}") for key in keys]


def _check(objects: list[ListedObject], min_per_identity: int = 1):
    return check_photos(objects, "b", "face_imgs/", min_per_identity, 20 * MB)


# ---- the listing ---------------------------------------------------------------------------------------


def test_strangers_are_in_the_snapshot_counted_apart_and_never_an_identity() -> None:
    snapshot, problems = _check(_objects(*PEOPLE, *STRANGERS))

    assert problems == [] and snapshot.warnings == [] and snapshot.skipped == 0
    assert snapshot.keys == [key.removeprefix("face_imgs/") for key in (*PEOPLE, *STRANGERS)]
    assert dict(snapshot.identities) == {"alice": 2, "bob": 1}
    assert STRANGERS_FOLDER not in snapshot.identities
    assert snapshot.strangers == 3
    assert snapshot.total_bytes == 6000


def test_min_images_per_identity_does_not_apply_to_the_strangers() -> None:
    snapshot, problems = _check(_objects(*PEOPLE, STRANGERS[0]), min_per_identity=2)
    # behaviour changed (issue 25): bob, below the minimum, is a counted warning (the job excludes him); the
    # one stranger photo counts for no identity; nothing is left out (snapshot.warnings), bob is warned apart
    assert problems == [] and snapshot.warnings == [] and snapshot.too_few is not None
    assert snapshot.all_warnings == [
        "1 identity has fewer than min_images_per_identity=2 photos in the photos folder: the training "
        "job excludes them and enrolls the others (metrics.json identities_excluded and rejected.csv "
        "identity_excluded name them); add photos or lower min_images_per_identity to enroll them"
    ]
    assert snapshot.strangers == 1


def test_names_skipped_inside_the_strangers_folder_and_other_underscore_folders_are_still_skipped() -> None:
    snapshot, problems = _check(
        _objects(
            *PEOPLE,
            "face_imgs/_strangers/.DS_Store",
            "face_imgs/_strangers/_old/x.jpg",
            "face_imgs/_stranger/typo.jpg",
            "face_imgs/_strangers",  # a file, not the folder
        )
    )
    assert problems == [] and snapshot.strangers == 0
    assert snapshot.keys == [key.removeprefix("face_imgs/") for key in PEOPLE]
    # .DS_Store is skipped as a file known not to be a photo (contract.photo_files), with that reason; every
    # warning names the key relative to the images prefix (the person's own path).
    assert [warning.split(" is skipped")[0].split(": not a photo")[0] for warning in snapshot.warnings] == [
        "_strangers/.DS_Store",
        "_strangers/_old/ (1 object)",
        "_stranger/ (1 object)",
        "_strangers",
    ]
    assert snapshot.warnings[0].startswith("_strangers/.DS_Store: not a photo (a macOS folder settings file)")
    assert "(all but _strangers/ at the top: the known strangers)" in snapshot.warnings[2]


def test_a_strangers_photo_gets_the_checks_of_a_persons_photo() -> None:
    objects = [
        *_objects(*PEOPLE, "face_imgs/_strangers/notes.txt", "face_imgs/_strangers//x.jpg"),
        ListedObject("face_imgs/_strangers/empty.jpg", 0, "e"),
        ListedObject("face_imgs/_strangers/huge.jpg", 30 * MB, "e"),
        ListedObject("face_imgs/_strangers/" + "n" * 256 + ".jpg", 10, "e"),
    ]
    snapshot, problems = _check(objects)
    text = "\n".join(problems)
    # A text file is skipped with its reason (issue 27), no longer a problem.
    assert "notes.txt" not in text
    assert snapshot.warnings == [
        "_strangers/notes.txt: not a photo (a text or document file, .txt): skipped; photos are read as "
        "JPEG, PNG, HEIC/HEIF, AVIF, WebP, TIFF, BMP or GIF"
    ]
    assert "_strangers//x.jpg: the key has an empty folder name ('//'); re-upload it as " in text
    assert "as _strangers/<photo>" in text
    assert "_strangers/empty.jpg is empty (0 bytes)" in text
    assert "_strangers/huge.jpg is 30.0 MB, over the 20.0 MB limit" in text
    assert "bytes; file and folder names must be at most 255 bytes" in text
    assert len(problems) == 4 and snapshot.strangers == 0


def test_strangers_alone_are_no_enrollment() -> None:
    snapshot, problems = _check(_objects(*STRANGERS))
    assert problems == [
        "no photos in the photos folder (only 3 known stranger photos, in _strangers/, which are never "
        "enrolled): put them in one folder per person, <name>/<photo>.jpg (on AWS under face_imgs/ in the "
        "data bucket)"
    ]
    assert snapshot.identities == {}


def test_a_change_of_strangers_changes_the_fingerprint() -> None:
    base = _check(_objects(*PEOPLE))[0].fingerprint
    added = _check(_objects(*PEOPLE, *STRANGERS))[0].fingerprint
    edited = _check([*_objects(*PEOPLE, *STRANGERS[:2]), ListedObject(STRANGERS[2], 1000, "new-etag")])[0]
    removed = _check(_objects(*PEOPLE, *STRANGERS[:2]))[0].fingerprint
    assert len({base, added, edited.fingerprint, removed}) == 4


# ---- validate: manifest, run record, pointer -----------------------------------------------------------


def _read(s3, key: str) -> object:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _run(execution: str, payload: dict) -> dict:
    return validate.handler({"execution": execution, "input": payload}, LambdaContext("validate"))


def _put_strangers(s3, *names: str) -> None:
    for name in names:
        s3.put_object(Bucket=BUCKET, Key=f"face_imgs/_strangers/{name}", Body=JPEG + name.encode())


def test_validate_puts_the_strangers_in_the_manifest_and_counts_them(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2, "bob": 1})
    _put_strangers(s3, "visitor.jpg", "visitors/guest.jpg")

    pointer = _run("exec-1", {})

    assert (pointer["identities"], pointer["images"], pointer["strangers"]) == (2, 3, 2)
    assert _read(s3, pointer["manifest_key"])[1:] == [
        "_strangers/visitor.jpg",
        "_strangers/visitors/guest.jpg",
        "alice/000.jpg",
        "alice/001.jpg",
        "bob/000.jpg",
    ]
    record = parse_run_record(_read(s3, pointer["run_record_key"]), "run.json")
    assert (record.dataset.identities, record.dataset.images, record.dataset.strangers) == (2, 3, 2)
    assert record.warnings == [] and record.dataset.skipped == 0


def test_validate_refuses_strangers_without_people(s3, function_env) -> None:
    _put_strangers(s3, "visitor.jpg")
    with pytest.raises(InvalidInput, match="only 1 known stranger photo"):
        _run("exec-1", {})


def test_a_run_record_written_before_known_strangers_reads_as_none(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 1})
    record = _read(s3, _run("exec-1", {})["run_record_key"])
    del record["dataset"]["strangers"]
    assert parse_run_record(record, "run.json").dataset.strangers == 0


def test_the_state_machine_carries_the_strangers_count() -> None:
    from pathlib import Path

    asl = json.loads((Path(__file__).parents[2] / "state_machine" / "retraining.asl.json").read_text())
    selectors = [
        s["ResultSelector"] for s in asl["States"].values() if "images.$" in s.get("ResultSelector", {})
    ]
    assert selectors and all(s["strangers.$"] == "$.Payload.strangers" for s in selectors)


# ---- publish: the strangers' records of saved_embeddings.pkl ---------------------------------------------


def _with_strangers(files: dict[str, bytes], strangers: list[dict]) -> dict[str, bytes]:
    payload = load_embeddings(files["saved_embeddings.pkl"])
    payload["strangers"] = strangers
    return {**files, "saved_embeddings.pkl": pickle.dumps(payload)}


def _stranger(dim: int, **changes) -> dict:
    vector = (np.ones(dim) / np.sqrt(dim)).astype(np.float32)
    return {
        "identity": STRANGERS_FOLDER,
        "key": "_strangers/visitor.jpg",
        "sha256": "ab" * 32,
        "box": [0.0, 0.0, 10.0, 10.0],
        "probability": 0.99,
        "faces_found": 1,
        "embedding": vector,
        **changes,
    }


def test_publish_accepts_sound_stranger_records_and_refuses_others() -> None:
    files = model_files({"alice": 2, "bob": 2})
    dim = len(load_embeddings(files["saved_embeddings.pkl"])["records"][0]["embedding"])
    verified = verify_results(_with_strangers(files, [_stranger(dim)]))
    assert verified.identities == ["alice", "bob"]
    for bad, why in [
        (_stranger(dim, embedding=np.full(dim, 2.0, dtype=np.float32)), "not of unit length"),
        (_stranger(dim, identity="alice"), "must have identity _strangers"),
        (_stranger(dim, key="alice/1.jpg"), "must have identity _strangers"),
    ]:
        with pytest.raises(ResultsInvalid, match=f"stranger record 0 .*{why}"):
            verify_results(_with_strangers(files, [bad]))


def test_the_notification_says_how_many_strangers_were_searched_and_accepted() -> None:
    from facetrain.contract.metrics import ErrorRate, OpenSetEvaluation, StrangerPhotos
    from facetrain_lambdas.publish import JobState, summary_text
    from handler_fixtures import run_record

    verified = verify_results(model_files({"alice": 2, "bob": 2}))
    record = run_record()
    job = JobState(training_job_name="j", model_artifacts="s3://b/m.tar.gz")

    def text(**changes) -> list[str]:
        results = dataclasses.replace(verified, metrics=verified.metrics.model_copy(update=changes))
        return summary_text(record, job, results, record.layout).splitlines()

    assert not [line for line in text() if "strangers" in line]  # metrics.json of before, or none
    none = StrangerPhotos(photos=0, used=0, rejected=0, rejections_by_reason={})
    assert not [line for line in text(strangers=none) if "strangers" in line]
    counted = StrangerPhotos(photos=5, used=4, rejected=1, rejections_by_reason={"no_face": 1})
    lines = text(strangers=counted)
    assert lines[lines.index(next(line for line in lines if line.startswith("Photos: "))) + 1] == (
        "Known strangers: 4 photos searched (1 rejected); never enrolled."
    )
    searched = ErrorRate(errors=1, trials=4, rate=0.25, lower_95=0.0063, upper_95=0.8059)
    open_set = OpenSetEvaluation(
        gallery_size=2,
        target_fpir=0.001,
        fpir=searched,
        fnir=searched,
        known_strangers=searched,
        smallest_supported_fpir=0.5,
        nearest_non_mated_distance=0.4,
    )
    assert verified.metrics.evaluation is not None
    evaluation = verified.metrics.evaluation.model_copy(update={"open_set": open_set})
    assert (
        "Known strangers: 4 photos searched, 1 of them accepted at the threshold (1 rejected); "
        "never enrolled."
    ) in text(strangers=counted, evaluation=evaluation)
