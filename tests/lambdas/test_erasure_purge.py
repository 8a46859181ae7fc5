"""purge_prefix over a versioned moto bucket holding the real files of two runs (support.erasure_corpus),
the current files in several versions: every version holding person_02 is rewritten or deleted, the
others stay, no older version becomes current, and a second purge changes nothing."""

from __future__ import annotations

import io
import re
import tarfile

import pytest
from botocore.exceptions import ClientError
from facetrain.contract.enrollment_csv import parse_csv
from facetrain.contract.rules_file import load_rules, render_rules
from facetrain_lambdas import erasure_purge
from facetrain_lambdas.erasure_purge import ObjectTooLarge, PurgeReport, purge_prefix
from facetrain_lambdas.object_versions import VersionsNotDeleted
from handler_fixtures import BUCKET
from support.erasure_corpus import FORGOTTEN, IMAGES_PREFIX, RealResults, real_results

PREFIX = "results/"
JSON_TYPE = "application/json"
CLEAN_REPORT = b"<!doctype html><title>facetrain report</title><p>an older report of nobody</p>"


@pytest.fixture(scope="session")
def real(sagemaker_tree_class, shared_data, tmp_path_factory) -> RealResults:
    return real_results(sagemaker_tree_class, shared_data, tmp_path_factory.getbasetemp() / "erasure-corpus")


def forgotten_left(data: bytes) -> bool:
    """`person_02` anywhere but as the start of `person_02b`, inside archives' members too."""
    if re.search(rb"person_02(?!b)", data):
        return True
    if data[:2] == b"\x1f\x8b":
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return any(forgotten_left(tar.extractfile(m).read()) for m in tar if m.isfile())
    return False


def _content_type(name: str) -> str:
    return JSON_TYPE if name.endswith(".json") else "binary/octet-stream"


def _put(s3, key: str, body: bytes) -> str:
    return s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=_content_type(key))["VersionId"]


def _republished_rules(real: RealResults) -> bytes:
    """rules.py as a retrain without person_02 publishes it (the lead's flow runs Purge after that)."""
    rules = load_rules(real.runs["r2"]["rules.py"])
    rules["identities"] = [name for name in rules["identities"] if name != FORGOTTEN]
    return render_rules({k: v for k, v in rules.items() if k not in ("format", "version")}).encode()


@pytest.fixture
def bucket(s3, real):
    """The data bucket, versioned: runs r1-r3 and the current files published by r1 then r2 (report.html
    over an older one of nobody; rules.py then republished without person_02), and photos (not purged)."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    _put(s3, f"{PREFIX}report.html", CLEAN_REPORT)
    for run in ("r1", "r2"):
        for name, body in real.current_files(run).items():
            _put(s3, f"{PREFIX}{name}", body)
    _put(s3, f"{PREFIX}rules.py", _republished_rules(real))
    for run in ("r1", "r2", "r3"):
        for key, body in real.run_objects(run).items():
            _put(s3, f"{PREFIX}{key}", body)
    _put(s3, f"{PREFIX}runs/r1/metrics.json", real.runs["r2"]["metrics.json"])  # a second version
    _put(s3, f"{IMAGES_PREFIX}{FORGOTTEN}/img3.jpg", b"\xff\xd8 photo")
    return s3


def _versions(s3) -> dict[tuple[str, str], dict]:
    """(key, version id) -> the listing's entry (delete markers marked), every version in the bucket."""
    listing = s3.list_object_versions(Bucket=BUCKET)
    found = {(v["Key"], v["VersionId"]): {**v, "marker": False} for v in listing.get("Versions", [])}
    found.update(
        {(m["Key"], m["VersionId"]): {**m, "marker": True} for m in listing.get("DeleteMarkers", [])}
    )
    assert not listing.get("IsTruncated")
    return found


def _body(s3, key: str, version_id: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key, VersionId=version_id)["Body"].read()


def _holding(s3) -> set[tuple[str, str]]:
    return {
        (key, vid)
        for (key, vid), v in _versions(s3).items()
        if key.startswith(PREFIX) and not v["marker"] and forgotten_left(_body(s3, key, vid))
    }


def _current(s3) -> dict[str, str]:
    """key -> current version id (delete markers included)."""
    return {key: vid for (key, vid), v in _versions(s3).items() if v["IsLatest"]}


def test_purge_leaves_no_version_with_the_person_and_every_other_version(bucket, real):
    before = _versions(bucket)
    holding = _holding(bucket)
    current_before = _current(bucket)
    assert len(holding) > 20

    report = purge_prefix(bucket, BUCKET, PREFIX, [FORGOTTEN], IMAGES_PREFIX)

    after = _versions(bucket)
    assert not _holding(bucket)
    assert {k for k in before if k not in holding} <= set(after)  # every clean version stays
    assert not holding & set(after)
    assert (
        f"{IMAGES_PREFIX}{FORGOTTEN}/img3.jpg",
        current_before[f"{IMAGES_PREFIX}{FORGOTTEN}/img3.jpg"],
    ) in after
    deleted = {(d.key, d.version_id) for d in report.deleted} | {
        (r.key, vid) for r in report.rewritten for vid in r.deleted_version_ids
    }
    assert deleted == holding and report.versions_deleted == len(holding)
    assert report.versions_scanned == sum(
        1 for k, v in before.items() if k[0].startswith(PREFIX) and not v["marker"]
    )
    # Every current version is the one before, a rewrite, or (report.html) a delete marker.
    current_after = _current(bucket)
    rewritten = {r.key: r.new_version_id for r in report.rewritten}
    for key, version_id in current_after.items():
        assert version_id in (current_before[key], rewritten.get(key)) or key in report.delete_markers, key
    assert report.delete_markers == [f"{PREFIX}report.html"]
    with pytest.raises(ClientError, match=r"NoSuchKey|Not Found|404"):
        bucket.get_object(Bucket=BUCKET, Key=f"{PREFIX}report.html")
    assert _body(bucket, f"{PREFIX}report.html", _only_version(after, f"{PREFIX}report.html")) == CLEAN_REPORT
    # Keys whose every version held them are gone without a marker; the rewritten ones read back.
    assert f"{PREFIX}runs/r1/report.html" not in current_after
    assert f"{PREFIX}runs/r1/training/facetrain-job/output/model.tar.gz" not in current_after
    assert report.versions_rewritten == len(report.rewritten) == len(rewritten)
    assert (
        f"{PREFIX}rules.py" not in rewritten
        and current_after[f"{PREFIX}rules.py"] == current_before[f"{PREFIX}rules.py"]
    )
    rows = parse_csv(
        bucket.get_object(Bucket=BUCKET, Key=f"{PREFIX}final_mean_embeddings.csv")["Body"].read().decode()
    )
    assert [identity for identity, _, _ in rows] == ["person_02b", "person_04", "person_05"]
    run_json = bucket.head_object(Bucket=BUCKET, Key=f"{PREFIX}runs/r2/run.json")
    assert run_json["ContentType"] == JSON_TYPE


def _only_version(versions: dict, key: str) -> str:
    (version_id,) = [vid for (k, vid), v in versions.items() if k == key and not v["marker"]]
    return version_id


def test_a_second_purge_finds_nothing_and_changes_nothing(bucket):
    purge_prefix(bucket, BUCKET, PREFIX, [FORGOTTEN], IMAGES_PREFIX)
    before = _versions(bucket)

    again = purge_prefix(bucket, BUCKET, PREFIX, [FORGOTTEN], IMAGES_PREFIX)

    assert again == PurgeReport(versions_scanned=again.versions_scanned) and not again.changed
    assert _versions(bucket) == before


def test_a_name_that_only_starts_alike_changes_nothing(bucket):
    before = _versions(bucket)

    report = purge_prefix(bucket, BUCKET, PREFIX, ["person_0"], IMAGES_PREFIX)

    assert not report.changed and _versions(bucket) == before


def test_a_purge_stopped_half_way_is_finished_by_the_next(bucket, monkeypatch):
    def refused(*args, **kwargs):
        raise VersionsNotDeleted("S3 did not delete them")

    with monkeypatch.context() as patch:
        patch.setattr(erasure_purge, "delete_versions", refused)
        with pytest.raises(VersionsNotDeleted):
            purge_prefix(bucket, BUCKET, PREFIX, [FORGOTTEN], IMAGES_PREFIX)
    assert _holding(bucket)  # the rewrites and markers were put, nothing deleted yet
    with pytest.raises(ClientError):  # already hidden: the version under the marker never shows
        bucket.get_object(Bucket=BUCKET, Key=f"{PREFIX}report.html")

    report = purge_prefix(bucket, BUCKET, PREFIX, [FORGOTTEN], IMAGES_PREFIX)

    assert not _holding(bucket) and report.versions_deleted
    assert not report.rewritten  # the first run's rewrites are current already
    with pytest.raises(ClientError):
        bucket.get_object(Bucket=BUCKET, Key=f"{PREFIX}report.html")


def test_an_object_over_the_cap_is_a_clear_error_and_nothing_changes(bucket, monkeypatch):
    monkeypatch.setattr(erasure_purge, "MAX_RESULT_FILE_BYTES", 100_000)
    before = _versions(bucket)

    with pytest.raises(ObjectTooLarge, match=r"s3://\S+/results/\S+ version \S+ is \d+ bytes.*delete-object"):
        purge_prefix(bucket, BUCKET, PREFIX, [FORGOTTEN], IMAGES_PREFIX)

    assert _versions(bucket) == before


def test_the_report_is_json_without_names(bucket):
    report = purge_prefix(bucket, BUCKET, PREFIX, [FORGOTTEN], IMAGES_PREFIX)

    text = report.model_dump_json()
    assert PurgeReport.model_validate_json(text) == report and FORGOTTEN not in text
