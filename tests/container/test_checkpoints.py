"""Spot checkpoints (facetrain.checkpoints): per-photo outcomes saved atomically, read back safely, reused
only under the same embedding fingerprint, and used by the job when its checkpoint folder exists."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from facetrain.checkpoints import (
    CheckpointWriter,
    checkpointing,
    is_checkpointed,
    load_checkpoints,
    resume,
    segment_file,
)
from facetrain.inference.faces import DetectedFace
from facetrain.photos import PhotoRef, Rejection
from facetrain.pipeline import Accepted, Rejected, Unforeseen

DIM = 8
FINGERPRINT = "f" * 64


def _photo(folder: Path, identity: str, name: str, content: bytes) -> PhotoRef:
    path = folder / identity / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return PhotoRef(identity, f"{identity}/{name}", path)


def _sha(photo: PhotoRef) -> str:
    import hashlib

    return hashlib.sha256(photo.path.read_bytes()).hexdigest()


def _accepted(photo: PhotoRef, seed: int) -> Accepted:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    vector /= np.linalg.norm(vector)
    return Accepted(photo, _sha(photo), DetectedFace((1.0, 2.0, 30.5, 40.25), 0.99, 1), vector)


@pytest.fixture
def photos(tmp_path: Path) -> list[PhotoRef]:
    return [_photo(tmp_path / "imgs", "ann", f"{i}.jpg", f"photo {i}".encode()) for i in range(4)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "opt_ml" / "checkpoints"
    path.mkdir(parents=True)
    return path


def _written(folder: Path, outcomes, fingerprint: str = FINGERPRINT) -> Path:
    """One segment of algo-1 holding `outcomes`."""
    writer = CheckpointWriter(folder, "algo-1", fingerprint, interval_seconds=1e9)
    for outcome in outcomes:
        writer.add(outcome)
    writer.flush()
    (path,) = writer.segments
    return path


def test_outcomes_round_trip_and_resume_only_what_is_saved(folder, photos) -> None:
    no_face = Rejected(photos[1], _sha(photos[1]), Rejection("no_face", "no face found; use a photo …"))
    _written(folder, [_accepted(photos[0], 0), no_face])

    checkpointed = load_checkpoints(folder, FINGERPRINT, DIM)
    resumed, to_examine = resume(photos, checkpointed)

    assert [o.photo.key for o in resumed] == ["ann/0.jpg", "ann/1.jpg"]
    assert to_examine == photos[2:]
    first, second = resumed
    assert isinstance(first, Accepted) and isinstance(second, Rejected)
    np.testing.assert_array_equal(first.embedding, _accepted(photos[0], 0).embedding)
    assert first.face == DetectedFace((1.0, 2.0, 30.5, 40.25), 0.99, 1)
    assert second.rejection == Rejection("no_face", "no face found; use a photo …")


def test_another_fingerprint_is_not_reused(folder, photos) -> None:
    _written(folder, [_accepted(photos[0], 0)], fingerprint="0" * 64)

    assert load_checkpoints(folder, FINGERPRINT, DIM) is None


def test_a_changed_photo_is_examined_again(folder, photos) -> None:
    _written(folder, [_accepted(photos[0], 0)])
    photos[0].path.write_bytes(b"other bytes, same name")

    resumed, to_examine = resume(photos, load_checkpoints(folder, FINGERPRINT, DIM))

    assert resumed == [] and to_examine == photos


def test_unforeseen_and_unreadable_rejections_are_not_checkpointed(photos) -> None:
    sha = _sha(photos[0])
    assert is_checkpointed(Rejected(photos[0], sha, Rejection("several_faces", "2 faces found")))
    assert not is_checkpointed(Rejected(photos[0], sha, Unforeseen("no_face", "face detection failed (X)")))
    assert not is_checkpointed(Rejected(photos[0], sha, Rejection("unreadable", "truncated")))
    assert not is_checkpointed(Rejected(photos[0], None, Rejection("no_face", "no face found")))


@pytest.mark.parametrize(
    "content",
    [b"", b"\x80\x05truncated", b"not a pickle at all", pickle.dumps({"format": "something else"})],
    ids=["empty", "truncated", "garbage", "foreign"],
)
def test_an_unreadable_checkpoint_is_a_warning_without_names(folder, photos, caplog, content) -> None:
    segment_file(folder, "algo-2", 1).write_bytes(content)
    _written(folder, [_accepted(photos[0], 0)])  # algo-1's file is sound

    with caplog.at_level(logging.INFO, logger="facetrain"):
        checkpointed = load_checkpoints(folder, FINGERPRINT, DIM)

    assert checkpointed is not None and set(checkpointed.accepted) == {_sha(photos[0])}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "photo-outcomes-algo-2-00001.pkl is unusable" in warnings[0]
    assert "ann" not in caplog.text


def test_a_checkpoint_that_would_run_code_is_refused(folder, tmp_path) -> None:
    marker = tmp_path / "PWNED"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    segment_file(folder, "algo-1", 1).write_bytes(pickle.dumps({"format": "x", "records": [Exploit()]}))

    assert load_checkpoints(folder, FINGERPRINT, DIM) is None
    assert not marker.exists()


def test_unsound_records_are_left_out(folder, photos, caplog) -> None:
    bad = _accepted(photos[1], 1)
    bad = Accepted(bad.photo, bad.sha256, bad.face, bad.embedding * 3)  # not of unit length
    _written(folder, [_accepted(photos[0], 0), bad])

    with caplog.at_level(logging.WARNING, logger="facetrain"):
        checkpointed = load_checkpoints(folder, FINGERPRINT, DIM)

    assert checkpointed is not None and set(checkpointed.accepted) == {_sha(photos[0])}
    assert "1 unsound" in caplog.text


def test_a_write_that_dies_half_way_leaves_no_partial_segment(folder, photos, monkeypatch) -> None:
    first = _written(folder, [_accepted(photos[0], 0)])
    writer = CheckpointWriter(folder, "algo-1", FINGERPRINT, interval_seconds=1e9)
    writer.add(_accepted(photos[1], 1))

    def dies_half_way(metadata, records, out) -> None:
        out.write(b"\x80\x05half a pickle")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("facetrain.checkpoints.dump_embeddings", dies_half_way)
        writer.flush()  # a warning, never an exception

    assert sorted(p.name for p in folder.parent.rglob("*") if p.is_file()) == [first.name]
    assert set(load_checkpoints(folder, FINGERPRINT, DIM).accepted) == {_sha(photos[0])}
    writer.flush()  # the outcome stayed pending: the next segment holds it
    assert set(load_checkpoints(folder, FINGERPRINT, DIM).accepted) == {_sha(photos[0]), _sha(photos[1])}


def test_a_leftover_temporary_file_is_ignored(folder, photos) -> None:
    path = _written(folder, [_accepted(photos[0], 0)])
    (folder / f".{path.name}.tmp").write_bytes(b"\x80\x05half")
    (folder.parent / f".checkpoints-{path.name}.tmp").write_bytes(b"\x80\x05half")

    assert set(load_checkpoints(folder, FINGERPRINT, DIM).accepted) == {_sha(photos[0])}


def test_each_outcome_is_written_once_in_segments_at_most_every_interval(folder, photos) -> None:
    now = [0.0]
    writer = CheckpointWriter(folder, "algo-1", FINGERPRINT, 30.0, clock=lambda: now[0])
    writer.add(_accepted(photos[0], 0))
    assert writer.segments == []
    now[0] = 31.0
    writer.add(_accepted(photos[1], 1))
    now[0] = 32.0
    writer.add(_accepted(photos[2], 2))
    assert [p.name for p in writer.segments] == ["photo-outcomes-algo-1-00001.pkl"]
    now[0] = 70.0
    writer.add(_accepted(photos[3], 3))

    assert [p.name for p in writer.segments] == [
        "photo-outcomes-algo-1-00001.pkl",
        "photo-outcomes-algo-1-00002.pkl",
    ]
    from facetrain.contract.embeddings_file import load_embeddings

    assert [len(load_embeddings(p)["records"]) for p in writer.segments] == [2, 2]
    assert len(load_checkpoints(folder, FINGERPRINT, DIM)) == 4


def test_a_restarted_writer_goes_on_after_the_last_segment(folder, photos) -> None:
    _written(folder, [_accepted(photos[0], 0)])
    segment_file(folder, "algo-2", 7).write_bytes(b"another host's")

    writer = CheckpointWriter(folder, "algo-1", FINGERPRINT, interval_seconds=1e9)
    writer.add(_accepted(photos[1], 1))
    writer.flush()

    assert [p.name for p in writer.segments] == ["photo-outcomes-algo-1-00002.pkl"]
    assert len(load_checkpoints(folder, FINGERPRINT, DIM)) == 2


def test_the_block_flushes_when_a_stop_ends_it(folder, photos) -> None:
    from facetrain.stopping import JobStopped

    with pytest.raises(JobStopped), checkpointing(folder, "algo-1", FINGERPRINT) as writer:
        writer.add(_accepted(photos[1], 1))
        raise JobStopped("SIGTERM")

    assert set(load_checkpoints(folder, FINGERPRINT, DIM).accepted) == {_sha(photos[1])}


def test_no_checkpoint_folder_no_writer(tmp_path) -> None:
    with checkpointing(tmp_path / "checkpoints", "algo-1", FINGERPRINT) as writer:
        assert writer is None
    assert not (tmp_path / "checkpoints").exists()


# ---- the job ------------------------------------------------------------------------------------------


def _tree(sagemaker_tree_class, base, shared_data, checkpoints: bool):
    tree = sagemaker_tree_class(base)
    tree.add_identities(shared_data / "faces-dev", limit=3, names=("person_02", "person_04"))
    tree.add_photo("person_04", "blank.png", _blank_png())  # no face: a lasting rejection
    if checkpoints:
        (tree.base / "checkpoints").mkdir()
    return tree


def _blank_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def _means(tree) -> dict[str, np.ndarray]:
    return {identity: values for identity, _, values in tree.enrollment()}


@pytest.fixture
def first(sagemaker_tree_class, shared_data, tmp_path, run_job):
    tree = _tree(sagemaker_tree_class, tmp_path / "first", shared_data, checkpoints=True)
    assert run_job(tree).rc == 0
    return tree


def test_the_job_saves_every_outcome_and_a_restart_computes_nothing(
    sagemaker_tree_class, shared_data, tmp_path, run_job, first, caplog
) -> None:
    saved = load_checkpoints(
        first.base / "checkpoints", first.embeddings()["metadata"]["embedding_fingerprint"], 512
    )
    assert saved is not None and (len(saved.accepted), len(saved.rejected)) == (6, 1)
    restarted = _tree(sagemaker_tree_class, tmp_path / "restarted", shared_data, checkpoints=False)
    shutil.copytree(first.base / "checkpoints", restarted.base / "checkpoints")

    with caplog.at_level(logging.INFO, logger="facetrain"):
        assert run_job(restarted).rc == 0

    assert "checkpoint: 7 photo outcomes resumed (6 embeddings, 1 rejection)" in caplog.text
    assert (restarted.metrics()["embeddings_computed"], restarted.metrics()["embeddings_reused"]) == (0, 6)
    assert restarted.rejected_by_photo()["person_04/blank.png"]["reason"] == "no_face"
    assert restarted.enrollment_text() == first.enrollment_text()


def test_without_the_folder_nothing_is_written(sagemaker_tree_class, shared_data, tmp_path, run_job) -> None:
    tree = _tree(sagemaker_tree_class, tmp_path / "plain", shared_data, checkpoints=False)

    assert run_job(tree).rc == 0

    assert not (tree.base / "checkpoints").exists()
    assert not list(tree.base.rglob("photo-outcomes-*"))


def test_a_checkpoint_of_other_settings_is_not_used(
    sagemaker_tree_class, shared_data, tmp_path, run_job, first
) -> None:
    changed = _tree(sagemaker_tree_class, tmp_path / "changed", shared_data, checkpoints=False)
    shutil.copytree(first.base / "checkpoints", changed.base / "checkpoints")
    changed.update_hyperparameters(margin="10")

    assert run_job(changed).rc == 0

    assert (changed.metrics()["embeddings_computed"], changed.metrics()["embeddings_reused"]) == (6, 0)


def test_a_corrupt_checkpoint_is_ignored_by_the_job(
    sagemaker_tree_class, shared_data, tmp_path, run_job, first
) -> None:
    corrupt = _tree(sagemaker_tree_class, tmp_path / "corrupt", shared_data, checkpoints=True)
    segments = sorted((first.base / "checkpoints").iterdir())  # one, or more on a slow machine (30 s each)
    assert segments
    for segment in segments:  # every segment cut in half: none can be read
        saved = segment.read_bytes()
        (corrupt.base / "checkpoints" / segment.name).write_bytes(saved[: len(saved) // 2])

    assert run_job(corrupt).rc == 0

    assert corrupt.metrics()["embeddings_computed"] == 6
    for identity, mean in _means(first).items():
        np.testing.assert_allclose(_means(corrupt)[identity], mean, atol=1e-5)
