"""--state's save is crash-safe: killed at any step, the folder holds the old copy or the new one whole
(current objects, noncurrent versions and the manifest alike), and the next start finishes or undoes what
was left (bucket_state.recover_state)."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pytest
from facetrain_offline import bucket_state
from facetrain_offline.bucket_state import local_files, recover_state, save_state
from moto import mock_aws

BUCKET = "state-test"


class Killed(BaseException):
    """Where the test kills the save: like SIGKILL, nothing after it runs (no except, no finally in the
    save catches a BaseException that is not an Exception)."""


@pytest.fixture(params=["unversioned", "versioned"])
def s3(request):
    """The bucket, without versioning or, as template.yaml deploys it, with (a save then holds noncurrent
    versions and delete markers too)."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        if request.param == "versioned":
            client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def _saved(state: Path) -> dict[str, bytes]:
    return {key: path.read_bytes() for key, path in local_files(state / bucket_state.SAVED).items()}


def _whole_copy(state: Path) -> dict[str, bytes]:
    """Every file of the saved copy, hidden ones (the history, the manifest) included."""
    saved = state / bucket_state.SAVED
    return {p.relative_to(saved).as_posix(): p.read_bytes() for p in saved.rglob("*") if p.is_file()}


def _fill(s3, objects: dict[str, bytes]) -> None:
    """The bucket holding objects, each over an older version, and a deleted key (in a versioned bucket:
    a noncurrent version each, and a delete marker); nothing else, whatever it held before."""
    listing = s3.list_object_versions(Bucket=BUCKET)
    for entry in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        version = {} if entry["VersionId"] == "null" else {"VersionId": entry["VersionId"]}
        s3.delete_object(Bucket=BUCKET, Key=entry["Key"], **version)
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"draft of " + body)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    s3.put_object(Bucket=BUCKET, Key="results/removed.txt", Body=b"removed")
    s3.delete_object(Bucket=BUCKET, Key="results/removed.txt")


OLD = {"results/latest.json": b'{"run_id": "a"}', "results/runs/a/x.csv": b"a", "face_imgs/p/1.jpg": b"1"}
NEW = {
    "results/latest.json": b'{"run_id": "b"}',
    "results/runs/a/x.csv": b"a",
    "results/runs/b/x.csv": b"b",
    "results/runs/b/y.pkl": b"bb",
    "face_imgs/p/1.jpg": b"1",
    "face_imgs/q/2.jpg": b"2",
}


def _kill_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> list[str]:
    """Make the save's `step`-th disk or S3 action (0-based) raise Killed; the actions seen so far."""
    seen: list[str] = []

    def tripwire(name: str, original):
        def action(*args, **kwargs):
            if len(seen) == step:
                raise Killed(name)
            seen.append(name)
            return original(*args, **kwargs)

        return action

    monkeypatch.setattr(Path, "rename", tripwire("rename", Path.rename))
    monkeypatch.setattr(Path, "write_text", tripwire("write_text", Path.write_text))
    monkeypatch.setattr(bucket_state.shutil, "rmtree", tripwire("rmtree", shutil.rmtree))
    return seen


def test_a_save_killed_at_any_step_leaves_the_old_copy_or_the_new_one_whole(s3, tmp_path, monkeypatch):
    outcomes = set()
    step = 0
    while True:
        state = tmp_path / f"state-{step}"
        _fill(s3, OLD)
        save_state(s3, BUCKET, state)
        assert _saved(state) == OLD
        old_copy = _whole_copy(state)
        _fill(s3, NEW)
        save_state(s3, BUCKET, tmp_path / "reference")  # what a save that is not killed writes
        new_copy = _whole_copy(tmp_path / "reference")
        original_download = s3.download_file
        with monkeypatch.context() as patch:
            seen = _kill_at_step(patch, step)
            patch.setattr(s3, "download_file", _counted(original_download, seen, step))
            try:
                save_state(s3, BUCKET, state)
            except Killed:
                killed = True
            else:
                killed = False
        message = recover_state(state)
        held = _saved(state)
        assert held in (OLD, NEW), f"killed at step {step} ({seen}): the state holds a mix"
        assert _whole_copy(state) == (old_copy if held == OLD else new_copy), f"killed at step {step}"
        assert not (state / bucket_state.STAGING).exists() and not (state / bucket_state.RETIRED).exists()
        if killed and held == OLD:
            assert message is None or "discarded" in message or "restored" in message, message
        outcomes.add("old" if held == OLD else "new")
        # The next save works from whatever was left.
        save_state(s3, BUCKET, state)
        assert _whole_copy(state) == new_copy
        if not killed:
            break
        step += 1
    assert outcomes == {"old", "new"} and step > len(NEW)  # every download and every rename was cut


def _counted(download, seen: list[str], step: int):
    def action(*args, **kwargs):
        if len(seen) == step:
            raise Killed("download_file")
        seen.append("download_file")
        return download(*args, **kwargs)

    return action


def test_recovery_says_what_it_did(tmp_path):
    state = tmp_path / "state"
    (state / bucket_state.SAVED / "k").mkdir(parents=True)
    (state / bucket_state.STAGING / "k").mkdir(parents=True)  # incomplete: no COMPLETE mark
    assert "discarded an incomplete copy" in recover_state(state)
    assert (state / bucket_state.SAVED / "k").is_dir() and not (state / bucket_state.STAGING).exists()

    (state / bucket_state.STAGING / "new").mkdir(parents=True)
    (state / bucket_state.STAGING / bucket_state.COMPLETE).write_text("1 objects\n")
    assert "finished a save" in recover_state(state)
    assert (state / bucket_state.SAVED / "new").is_dir() and not (state / bucket_state.SAVED / "k").exists()
    assert recover_state(state) is None  # nothing left to do
