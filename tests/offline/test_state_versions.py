"""--state keeps every version of every object, delete markers included: a save then a restore into a fresh
versioned bucket lists the same history and the same current objects (bucket_state.save_state,
restore_state), a state saved before versions were kept restores its current objects, and a damaged
manifest is refused with the fix before anything is loaded."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from facetrain_offline import bucket_state
from facetrain_offline.bucket_state import (
    ObjectVersion,
    StateUnreadable,
    all_keys,
    local_files,
    object_histories,
    restore_state,
    save_state,
)
from moto import mock_aws

SAVED_FROM = "state-from"
RESTORED_INTO = "state-into"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (SAVED_FROM, RESTORED_INTO):
            client.create_bucket(Bucket=bucket)
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        yield client


def _put(s3, key: str, body: bytes) -> None:
    s3.put_object(Bucket=SAVED_FROM, Key=key, Body=body)


def _delete(s3, key: str) -> None:
    s3.delete_object(Bucket=SAVED_FROM, Key=key)


def _fill_with_history(s3) -> None:
    """Versions, overwrites and delete markers, all within the same second or two (as a run writes them)."""
    for n in range(3):
        _put(s3, "results/latest.json", b'{"run_id": "%d"}' % n)  # three versions
    _put(s3, "face_imgs/person_01/a.jpg", b"photo a")
    _delete(s3, "face_imgs/person_01/a.jpg")  # latest is a delete marker: stays deleted
    _put(s3, "results/runs/1/x.csv", b"first")
    _put(s3, "results/runs/1/x.csv", b"overwritten")
    _put(s3, "face_imgs/person_02/b.jpg", b"b1")  # versions and markers interleaved
    _delete(s3, "face_imgs/person_02/b.jpg")
    _put(s3, "face_imgs/person_02/b.jpg", b"b2")
    _delete(s3, "face_imgs/person_02/b.jpg")
    _delete(s3, "face_imgs/person_02/b.jpg")
    _put(s3, "face_imgs/person_02/b.jpg", b"b3")
    _put(s3, "results/runs", b"a key that is also a folder of other keys")
    erased = s3.put_object(Bucket=SAVED_FROM, Key="results/runs/0/erased.csv", Body=b"erased")
    _delete(s3, "results/runs/0/erased.csv")
    s3.delete_object(Bucket=SAVED_FROM, Key="results/runs/0/erased.csv", VersionId=erased["VersionId"])
    erased = s3.put_object(Bucket=SAVED_FROM, Key="results/runs/0/readded.csv", Body=b"erased")
    _delete(s3, "results/runs/0/readded.csv")
    s3.delete_object(Bucket=SAVED_FROM, Key="results/runs/0/readded.csv", VersionId=erased["VersionId"])
    _put(s3, "results/runs/0/readded.csv", b"put again")
    _put(s3, ".hidden/key", b"a key local_files would skip")


def _history(s3, bucket: str) -> dict[str, list[bytes | None]]:
    """Key → its versions' bodies newest first, None for a delete marker."""
    return {
        key: [
            None
            if version.is_delete_marker
            else s3.get_object(Bucket=bucket, Key=key, VersionId=version.version_id)["Body"].read()
            for version in versions
        ]
        for key, versions in object_histories(s3, bucket).items()
    }


def _current(s3, bucket: str) -> dict[str, bytes]:
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in all_keys(s3, bucket)}


def test_a_restore_lists_every_version_and_delete_marker_as_saved(s3, tmp_path, monkeypatch):
    _fill_with_history(s3)
    history, current = _history(s3, SAVED_FROM), _current(s3, SAVED_FROM)
    assert history["face_imgs/person_02/b.jpg"] == [b"b3", None, None, b"b2", None, b"b1"]
    assert history["results/runs/0/erased.csv"] == [None]  # its one version deleted by id
    assert history["results/runs/0/readded.csv"] == [b"put again", None]

    assert save_state(s3, SAVED_FROM, tmp_path) == len(current) == 6
    assert restore_state(s3, RESTORED_INTO, tmp_path) == 6

    assert _history(s3, RESTORED_INTO) == history
    assert _current(s3, RESTORED_INTO) == current
    assert "face_imgs/person_01/a.jpg" not in all_keys(s3, RESTORED_INTO)  # still deleted
    # A restored bucket (its whole history written within a second) saves to the same copy: ordered by
    # the restore's own replay, no key listed alone ...
    with monkeypatch.context() as patch:
        patch.setattr(bucket_state, "_in_listing_order", _not_called)
        save_state(s3, RESTORED_INTO, tmp_path / "again")
    assert _manifest_without_times(tmp_path / "again") == _manifest_without_times(tmp_path)
    # ... and, by listing such keys alone, in a process that did not restore it.
    monkeypatch.setattr(bucket_state, "_REPLAYED", {})
    save_state(s3, RESTORED_INTO, tmp_path / "listed")
    assert _manifest_without_times(tmp_path / "listed") == _manifest_without_times(tmp_path)


def _not_called(*args):
    raise AssertionError("a key was listed alone")


def test_the_saved_copy_keeps_current_objects_at_their_keys_and_history_hidden(s3, tmp_path):
    _fill_with_history(s3)
    save_state(s3, SAVED_FROM, tmp_path)
    saved = tmp_path / bucket_state.SAVED
    browsable = {key: path.read_bytes() for key, path in local_files(saved).items()}
    assert browsable == {
        "results/latest.json": b'{"run_id": "2"}',
        "results/runs/1/x.csv": b"overwritten",
        "face_imgs/person_02/b.jpg": b"b3",
        "results/runs/0/readded.csv": b"put again",
    }  # "results/runs" is a folder here, and ".hidden/key" hidden: both kept by index in the history
    versions = [p for p in (saved / bucket_state.HISTORY).iterdir() if p.name != "manifest.json"]
    assert sorted(p.name for p in versions) == [str(n) for n in range(len(versions))]  # by index, not key
    assert len(versions) == 2 + 1 + 1 + 2 + 2  # noncurrent latest.json, x.csv, a.jpg, b.jpg; runs, .hidden


def _manifest_without_times(state: Path) -> dict:
    document = json.loads((state / bucket_state.SAVED / bucket_state.MANIFEST).read_text())
    for entries in document["keys"].values():
        for entry in entries:
            del entry["last_modified"]
    return document


def test_a_state_saved_without_a_manifest_restores_its_current_objects(s3, tmp_path):
    legacy = {"results/latest.json": b'{"run_id": "a"}', "face_imgs/p/1.jpg": b"1"}
    for key, body in legacy.items():
        path = tmp_path / bucket_state.SAVED / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    (tmp_path / bucket_state.SAVED / bucket_state.COMPLETE).write_text("2 objects\n")

    assert restore_state(s3, RESTORED_INTO, tmp_path) == 2
    assert _history(s3, RESTORED_INTO) == {key: [body] for key, body in sorted(legacy.items())}


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda saved, manifest: manifest.write_text("{not json"), "cannot be read"),
        (lambda saved, manifest: manifest.write_text('{"format": 99, "keys": {}}'), "not a format-1"),
        (lambda saved, manifest: (saved / "results/latest.json").unlink(), "'results/latest.json'"),
        (lambda saved, manifest: _rewrite(manifest, "results/latest.json", "../outside"), "'../outside'"),
        (lambda saved, manifest: _rewrite(manifest, "results/latest.json", None), "no list of versions"),
    ],
    ids=["not-json", "other-format", "missing-file", "file-outside-the-copy", "no-versions"],
)
def test_a_damaged_manifest_is_refused_with_the_fix_and_nothing_is_loaded(s3, tmp_path, damage, said):
    _fill_with_history(s3)
    save_state(s3, SAVED_FROM, tmp_path)
    saved = tmp_path / bucket_state.SAVED
    damage(saved, saved / bucket_state.MANIFEST)
    (tmp_path / "outside").write_bytes(b"not part of the state")

    with pytest.raises(StateUnreadable) as refused:
        restore_state(s3, RESTORED_INTO, tmp_path)
    assert said in str(refused.value) and f"delete {saved / bucket_state.HISTORY}" in str(refused.value)
    assert _history(s3, RESTORED_INTO) == {}


def _rewrite(manifest: Path, key: str, last_file: str | None) -> None:
    document = json.loads(manifest.read_text())
    if last_file is None:
        document["keys"][key] = []
    else:
        document["keys"][key][-1]["file"] = last_file
    manifest.write_text(json.dumps(document))


def test_versions_and_delete_markers_seconds_apart_are_ordered_by_time_without_another_listing():
    def entry(name: str, second: int, *, marker: bool = False, latest: bool = False) -> ObjectVersion:
        modified = datetime(2026, 1, 1, 12, 0, second, tzinfo=UTC)
        return ObjectVersion("k", name, modified, is_delete_marker=marker, is_latest=latest)

    v1, d1, v2, d2, d3, v3 = (
        entry("v1", 1),
        entry("d1", 2, marker=True),
        entry("v2", 3),
        entry("d2", 4, marker=True),
        entry("d3", 4, marker=True),  # same second as d2, same kind: the listing's order stands
        entry("v3", 4, latest=True),  # same second too, but the latest
    )
    no_client = None  # a second listing would fail: the timestamps suffice here
    merged = bucket_state._newest_first(no_client, "bucket", "k", [v3, v2, v1], [d3, d2, d1])
    assert merged == [v3, d3, d2, v2, d1, v1]
