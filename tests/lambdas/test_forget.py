"""BeginForget (facetrain_lambdas.forget.begin_forget), the receipt (erasure_record) and publish's refusal
of a person being forgotten, against moto with a versioned bucket. The whole forget through the state
machine, and the scan of every version afterwards, is tests/offline/test_forget_scan.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from facetrain.contract.enrollment_csv import render_csv
from facetrain_lambdas import forget
from facetrain_lambdas.erasure_record import (
    ErasureRecord,
    erasure_subject_hash,
    read_records,
    subjects_in,
    write_record,
)
from facetrain_lambdas.errors import InvalidInput
from facetrain_lambdas.object_versions import VersionsNotDeleted
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from handler_fixtures import BUCKET, latest_document

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:facetrain-retraining"
SETTINGS = forget.ForgetSettings(bucket=BUCKET)
DIMENSION = 4


@pytest.fixture
def bucket(s3):
    """BUCKET versioned, with photos of alice, bob and anna (two versions of one of alice's), and a
    published enrollment of alice and bob."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for key in ("face_imgs/alice/1.jpg", "face_imgs/alice/1.jpg", "face_imgs/alice/2.jpg"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"jpeg")
    s3.put_object(Bucket=BUCKET, Key="face_imgs/bob/1.jpg", Body=b"jpeg")
    s3.put_object(Bucket=BUCKET, Key="face_imgs/anna/1.jpg", Body=b"jpeg")
    s3.delete_object(Bucket=BUCKET, Key="face_imgs/alice/2.jpg")  # a delete marker
    csv = render_csv([("alice", 2, [1, 0, 0, 0]), ("bob", 1, [0, 1, 0, 0])], DIMENSION)
    for key in ("results/final_mean_embeddings.csv", "results/runs/r1/final_mean_embeddings.csv"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=csv.encode())
    s3.put_object(Bucket=BUCKET, Key="results/latest.json", Body=json.dumps(latest_document()).encode())
    return s3


@pytest.fixture
def sfn(aws: None):
    client = boto3.client("stepfunctions", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/sfn"
    definition = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}})
    client.create_state_machine(name="facetrain-retraining", definition=definition, roleArn=role)
    return client


def begin(s3, sfn, names: list[str], execution: str = "forget-1") -> forget.ErasurePointer:
    event = forget.BeginEvent(
        action="begin",
        execution=execution,
        execution_arn=f"{MACHINE.replace(':stateMachine:', ':execution:')}:{execution}",
        state_machine_arn=MACHINE,
        input={"forget": names},
    )
    return forget.begin_forget(s3, sfn, event, SETTINGS)


def purge(
    s3,
    pointer: forget.ErasurePointer,
    names: list[str],
    execution: str = "forget-1",
    state: dict | None = None,
) -> forget.PurgeResult:
    event = forget.PurgeEvent(
        action="purge", execution=execution, input={"forget": names}, erasure=pointer, state=state or {}
    )
    return forget.purge_forgotten(s3, event, SETTINGS)


def versions(s3, prefix: str) -> list[tuple[str, bool]]:
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return [(v["Key"], False) for v in listing.get("Versions", [])] + [
        (m["Key"], True) for m in listing.get("DeleteMarkers", [])
    ]


def test_begin_deletes_every_version_of_their_photos_and_writes_a_receipt_without_the_name(bucket, sfn):
    pointer = begin(bucket, sfn, ["alice"])
    assert versions(bucket, "face_imgs/alice/") == []
    assert len(versions(bucket, "face_imgs/bob/")) == 1 and len(versions(bucket, "face_imgs/anna/")) == 1
    assert pointer.subjects == 1 and pointer.retrain  # alice is in the published enrollment
    body = bucket.get_object(Bucket=BUCKET, Key=pointer.record_key)["Body"].read()
    assert b"alice" not in body
    [(_, record)] = read_records(bucket, BUCKET, SETTINGS.erasure_prefix)
    assert record.status == "photos-deleted" and record.names("alice") and not record.names("anna")
    assert len(record.photo_versions) == 4  # two versions of 1.jpg, 2.jpg and its delete marker
    assert sum(p.delete_marker for p in record.photo_versions) == 1
    assert record.photo_versions[0].key_sha256 in {
        erasure_subject_hash(record.salt, k) for k in ("face_imgs/alice/1.jpg", "face_imgs/alice/2.jpg")
    }


def test_a_name_with_photos_only_is_forgotten_without_a_retrain(bucket, sfn):
    pointer = begin(bucket, sfn, ["anna"])  # not in any enrollment yet
    assert pointer.subjects == 1 and not pointer.retrain
    assert versions(bucket, "face_imgs/anna/") == []


def test_a_name_forgotten_before_is_purged_again_not_refused(bucket, sfn):
    first = begin(bucket, sfn, ["alice"], execution="forget-1")
    purge(bucket, first, ["alice"], execution="forget-1")
    bucket.put_object(Bucket=BUCKET, Key="results/runs/r0/notes.txt", Body=b"alice was here")  # left over
    again = begin(bucket, sfn, ["alice"], execution="forget-2")
    assert again.subjects == 1 and not again.retrain
    result = purge(bucket, again, ["alice"], execution="forget-2")
    assert versions(bucket, "results/runs/r0/") == []
    assert result.subject == forget.SUBJECT_DONE and "1 rewritten" not in result.summary


def test_a_purge_completes_the_receipt_and_an_earlier_one_stopped_half_way(bucket, sfn):
    stopped = begin(bucket, sfn, ["alice"], execution="forget-1")  # its retrain failed: no purge ran
    pointer = begin(bucket, sfn, ["alice"], execution="forget-2")
    result = purge(bucket, pointer, ["alice"], execution="forget-2")
    records = dict(read_records(bucket, BUCKET, SETTINGS.erasure_prefix))
    assert records[stopped.record_key].status == "completed"
    assert records[stopped.record_key].finished_by == "forget-2"
    mine = records[pointer.record_key]
    assert mine.status == "completed" and mine.completed_at and mine.republished_run_id == "r1"
    assert mine.counts()["results_versions_rewritten"] >= 2  # the current CSV and run r1's
    assert "Also completed: 1 earlier forget of the same people" in result.summary
    assert "alice" not in result.summary + result.subject
    rows = bucket.get_object(Bucket=BUCKET, Key="results/final_mean_embeddings.csv")["Body"].read()
    assert b"alice" not in rows and b"bob" in rows


def test_a_failed_republish_still_purges_and_says_so(bucket, sfn):
    pointer = begin(bucket, sfn, ["alice"])
    failure = {"Error": "TrainingJobFailed", "Cause": "Training job facetrain-x Failed: no capacity"}
    result = purge(bucket, pointer, ["alice"], state={"failure": failure})
    assert result.subject == forget.SUBJECT_REPUBLISH_FAILED and "no capacity" in result.summary
    [(_, record)] = read_records(bucket, BUCKET, SETTINGS.erasure_prefix)
    assert record.republish_failed == "TrainingJobFailed" and record.republished_run_id is None
    rows = bucket.get_object(Bucket=BUCKET, Key="results/final_mean_embeddings.csv")["Body"].read()
    assert b"alice" not in rows


def test_a_name_not_enrolled_is_said_so_by_position_and_nothing_changes(bucket, sfn):
    before = versions(bucket, "")
    with pytest.raises(forget.NothingToForget, match="name 1 of 1 is not enrolled"):
        begin(bucket, sfn, ["ali"])  # a prefix of alice's folder is not alice
    with pytest.raises(forget.NothingToForget, match="names 1, 2 of 2 are not enrolled") as raised:
        begin(bucket, sfn, ["zoltan", "Alice"])  # names are folder names, case as there
    assert "zoltan" not in str(raised.value)  # the notification and history say which by position
    assert versions(bucket, "") == before
    pointer = begin(bucket, sfn, ["alice", "zed"])  # one of two: the other is forgotten, the receipt says
    [(_, record)] = read_records(bucket, BUCKET, SETTINGS.erasure_prefix)
    assert pointer.subjects == 1 and record.not_enrolled == [2] and record.names_requested == 2


def test_forgetting_everyone_with_photos_is_refused(bucket, sfn):
    before = versions(bucket, "")
    with pytest.raises(forget.LastPersonRefused, match="at least one person"):
        begin(bucket, sfn, ["alice", "bob", "anna"])
    assert versions(bucket, "") == before
    begin(bucket, sfn, ["alice", "bob"])  # anna stays: allowed


def test_refused_while_another_execution_runs(bucket, sfn):
    sfn.start_execution(stateMachineArn=MACHINE, name="retrain-1", input="{}")
    with pytest.raises(forget.RetrainingUnderWay, match="retrain-1"):
        begin(bucket, sfn, ["alice"])
    assert len(versions(bucket, "face_imgs/alice/")) == 4


def test_a_retried_begin_is_not_refused_for_the_execution_its_own_deletions_started(bucket, sfn):
    begin(bucket, sfn, ["alice"])
    sfn.start_execution(stateMachineArn=MACHINE, name="upload-batch-g1", input="{}")  # the upload trigger
    begin(bucket, sfn, ["alice"])  # the same execution, retried: not RetrainingUnderWay


def test_errors_name_the_photos_by_position_never_by_name(bucket, sfn, monkeypatch):
    original = bucket.delete_objects

    def refused(**kwargs):
        response = original(**kwargs)
        first = kwargs["Delete"]["Objects"][0]
        return {**response, "Errors": [{**first, "Code": "AccessDenied", "Message": "Access Denied"}]}

    monkeypatch.setattr(bucket, "delete_objects", refused)
    with pytest.raises(VersionsNotDeleted) as raised:
        begin(bucket, sfn, ["bob", "alice"])
    assert "AccessDenied" in str(raised.value) and "alice" not in str(raised.value)
    assert "the photos of the people to forget" in str(raised.value)


def test_a_retried_begin_keeps_its_receipt_and_salt(bucket, sfn):
    first = begin(bucket, sfn, ["alice"])
    [(_, before)] = read_records(bucket, BUCKET, SETTINGS.erasure_prefix)
    second = begin(bucket, sfn, ["alice"])  # Lambda retried in the same execution: photos already gone
    [(_, after)] = read_records(bucket, BUCKET, SETTINGS.erasure_prefix)
    assert first.record_key == second.record_key and after.salt == before.salt
    assert after.photo_versions == before.photo_versions


@pytest.mark.parametrize(
    "raw",
    [
        {"forget": []},
        {"forget": "alice"},
        {"forget": ["alice"], "hyperparameters": {}},
        {"forget": ["a/b"]},
        {"forget": ["_strangers"]},
        {"forget": [".."]},
        {"forget": [""]},
    ],
)
def test_a_malformed_request_is_refused_without_quoting_the_names(raw):
    with pytest.raises(InvalidInput) as raised:
        forget.request_names(raw)
    names = raw["forget"] if isinstance(raw["forget"], list) else [raw["forget"]]
    for name in names:
        assert not name or (f"'{name}'" not in str(raised.value) and f" {name} " not in str(raised.value))
    assert "name" in str(raised.value)


def test_validate_takes_a_forget_input_only_as_the_state_machine_hands_it_on():
    defaults = StackDefaults(bucket=BUCKET)
    erasure = {"record_key": "erasures/x.json", "subjects": 1, "retrain": True}
    request = resolve_request({"forget": ["alice"], "erasure": erasure}, "x", defaults)
    assert request.source == "forget" and request.force and request.erasure_record_key == "erasures/x.json"
    assert "alice" not in request.model_dump_json()  # run.json never holds the names
    with pytest.raises(InvalidInput, match="BeginForget"):
        resolve_request({"forget": ["alice"]}, "x", defaults)
    with pytest.raises(InvalidInput, match="no other field"):
        resolve_request({"forget": ["alice"], "erasure": erasure, "force": True}, "x", defaults)
    with pytest.raises(InvalidInput, match="forget input only"):
        resolve_request({"erasure": erasure}, "x", defaults)


def _record(status: str, completed_at: str | None, name: str = "alice") -> ErasureRecord:
    salt = "00" * 16
    return ErasureRecord(
        erasure_id="e1",
        execution_arn="arn",
        status=status,
        requested_at="2026-01-01T00:00:00+00:00",
        completed_at=completed_at,
        salt=salt,
        subjects=[erasure_subject_hash(salt, name)],
        names_requested=1,
    )


def test_a_receipt_forbids_publishing_the_person_while_under_way_and_for_runs_validated_before_it_ended():
    under_way = [("k", _record("photos-deleted", None))]
    done = [("k", _record("completed", "2026-01-02T00:00:00+00:00"))]
    assert subjects_in(under_way, ["bob", "alice"], "2027-01-01T00:00:00+00:00") == ["k"]
    assert subjects_in(under_way, ["bob"], "2027-01-01T00:00:00+00:00") == []
    assert subjects_in(done, ["alice"], "2026-01-01T12:00:00+00:00") == ["k"]  # validated before the end
    assert subjects_in(done, ["alice"], "2026-01-03T00:00:00+00:00") == []  # enrolled again, afterwards


def test_a_stray_file_among_the_receipts_is_skipped_not_fatal(bucket):
    write_record(bucket, BUCKET, SETTINGS.erasure_prefix, _record("photos-deleted", None))
    bucket.put_object(Bucket=BUCKET, Key="erasures/notes.json", Body=b"not json")
    bucket.put_object(Bucket=BUCKET, Key="erasures/other.json", Body=b'{"format": "other"}')
    assert [key for key, _ in read_records(bucket, BUCKET, SETTINGS.erasure_prefix)] == ["erasures/e1.json"]


def test_publish_refuses_an_enrollment_of_a_person_being_forgotten_before_storing_anything(bucket):
    from facetrain_lambdas.publish import PersonBeingForgotten, refuse_forgotten_people
    from facetrain_lambdas.run_record import RunRecord

    write_record(bucket, BUCKET, SETTINGS.erasure_prefix, _record("photos-deleted", None))
    record = RunRecord.model_validate_json(json.dumps(_run_record_document()))

    def check(identities: list[str], photos: list[str]) -> None:
        manifest = [{"prefix": f"s3://{BUCKET}/face_imgs/"}, *photos]
        bucket.put_object(Bucket=BUCKET, Key=record.manifest_key, Body=json.dumps(manifest).encode())
        results = SimpleNamespace(identities=identities)  # VerifiedResults: only its identities are read
        refuse_forgotten_people(bucket, record.layout, SETTINGS.erasure_prefix, record, results)  # type: ignore[arg-type]

    with pytest.raises(PersonBeingForgotten, match="nothing was published"):
        check(["bob", "alice"], ["bob/1.jpg", "alice/1.jpg"])
    with pytest.raises(PersonBeingForgotten):  # her one photo was rejected: rejected.csv would name it
        check(["bob"], ["bob/1.jpg", "alice/1.jpg"])
    check(["bob"], ["bob/1.jpg", "alicia/1.jpg"])


def _run_record_document() -> dict:
    from handler_fixtures import run_record

    return run_record(created_at="2026-06-01T00:00:00+00:00").model_dump(mode="json")
