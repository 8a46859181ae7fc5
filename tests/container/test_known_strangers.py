"""Known strangers in the job, without a model: face_imgs/_strangers/ is listed apart from the identities
(any depth, in either channel layout), kept out of the enrollment by EnrollmentBuilder, stored apart in
saved_embeddings.pkl (`strangers`) and reused from there by sha256 (issue 24, item 3)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.embeddings_file import EmbeddingsFileError, dump_embeddings, load_embeddings
from facetrain.contract.names import STRANGERS_FOLDER, is_skipped, is_strangers_key
from facetrain.enrollment import EnrollmentBuilder
from facetrain.inference.faces import DetectedFace
from facetrain.outputs import render_rejected
from facetrain.photos import PhotoRef, Rejection, list_channel
from facetrain.pipeline import Accepted, Rejected
from facetrain.reuse import PreviousEmbeddings, load_previous, split_reusable
from facetrain.sagemaker_env import ContractError

DIM = 8
PEOPLE = ["alice/1.jpg", "alice/2.jpg", "bob/1.jpg"]
STRANGERS = [
    "_strangers/visitor.jpg",  # directly in the folder
    "_strangers/visitors/2024/guest.jpg",  # any depth
    "_strangers/public/face.png",
]
NOT_STRANGERS = [
    "_strangers/.DS_Store",  # skipped inside, as in a person's folder
    "_strangers/_old/ex.jpg",
    "_stranger/typo.jpg",  # only the exact name is the exception
    "_archive/1.jpg",
    ".git/x.jpg",
]


def _write(root: Path, relatives: list[str]) -> Path:
    for relative in relatives:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(relative.encode())
    return root


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _ref(key: str, root: Path = Path("/nowhere")) -> PhotoRef:
    identity = key.split("/")[0]
    return PhotoRef(identity=identity, key=key, path=root / key)


def _accepted(key: str, seed: int, root: Path = Path("/nowhere")) -> Accepted:
    sha = hashlib.sha256(key.encode()).hexdigest()
    return Accepted(_ref(key, root), sha, DetectedFace((1.0, 2.0, 30.0, 40.0), 0.99, 1), _unit(seed))


# ---- the name ------------------------------------------------------------------------------------------


def test_the_folder_name_is_one_constant_that_the_skip_rule_would_otherwise_skip():
    assert STRANGERS_FOLDER == "_strangers" and is_skipped(STRANGERS_FOLDER)
    assert is_strangers_key("_strangers/a.jpg") and is_strangers_key("_strangers/x/y/a.jpg")
    assert not is_strangers_key("_strangers") and not is_strangers_key("_strangersx/a.jpg")
    assert not is_strangers_key("alice/_strangers/a.jpg")


# ---- listing -------------------------------------------------------------------------------------------


def test_strangers_are_listed_apart_at_any_depth_and_never_as_an_identity(tmp_path):
    listing = list_channel(_write(tmp_path, PEOPLE + STRANGERS + NOT_STRANGERS + ["top.jpg"]))

    assert [(p.identity, p.key) for p in listing.photos] == [(k.split("/")[0], k) for k in PEOPLE]
    assert [p.key for p in listing.strangers] == sorted(STRANGERS)
    assert all(p.identity == STRANGERS_FOLDER and p.is_stranger for p in listing.strangers)
    assert not any(p.is_stranger for p in listing.photos)
    assert all(p.path == tmp_path / p.key and p.path.is_file() for p in listing.strangers)
    assert listing.stray_files == ["top.jpg"]


def test_a_file_named_like_the_folder_is_skipped_and_no_folder_lists_no_stranger(tmp_path):
    listing = list_channel(_write(tmp_path, [*PEOPLE, "_strangers"]))
    assert listing.strangers == [] and listing.stray_files == []
    assert len(listing.photos) == 3


def test_a_person_named_strangers_is_a_person(tmp_path):
    listing = list_channel(_write(tmp_path, ["strangers/1.jpg", "bob/_strangers/2.jpg"]))
    assert [(p.identity, p.key) for p in listing.photos] == [("strangers", "strangers/1.jpg")]
    assert listing.strangers == []


@pytest.mark.parametrize("prefix", ["face_imgs/", "teams/berlin/photos/"])
def test_both_channel_layouts_give_the_same_stranger_keys(tmp_path, prefix):
    suffix = list_channel(_write(tmp_path / "suffix", PEOPLE + STRANGERS), prefix)
    full_key = list_channel(_write(tmp_path / "full", [prefix + key for key in PEOPLE + STRANGERS]), prefix)
    for listing in (suffix, full_key):
        assert [p.key for p in listing.strangers] == sorted(STRANGERS)
        assert [p.key for p in listing.photos] == PEOPLE
        assert all(p.path.is_file() and p.path.as_posix().endswith(p.key) for p in listing.strangers)


def test_strangers_beside_the_prefix_folder_are_a_mixed_layout_not_dropped(tmp_path):
    # The full-key layout holds only face_imgs/...; a _strangers/ folder beside it is a suffix-layout entry.
    _write(tmp_path, ["face_imgs/" + key for key in PEOPLE] + ["_strangers/visitor.jpg"])
    with pytest.raises(ContractError, match=r"mixes layouts: .*'_strangers'"):
        list_channel(tmp_path, "face_imgs/")
    (tmp_path / "_strangers" / "visitor.jpg").unlink()
    (tmp_path / "_strangers").rmdir()
    (tmp_path / "_other").mkdir()  # any other `_` name stays ignored, as before
    assert len(list_channel(tmp_path, "face_imgs/").photos) == 3


# ---- enrollment ----------------------------------------------------------------------------------------


def _built(outcomes):
    builder = EnrollmentBuilder(stray_files=["top.jpg"])
    for outcome in sorted(outcomes, key=lambda o: (o.photo.identity, o.photo.key)):
        builder.add(outcome)
    return builder.finish(min_images_per_identity=1)


PEOPLE_OUTCOMES = [_accepted(key, seed) for seed, key in enumerate(PEOPLE)]
STRANGER_OUTCOMES = [
    _accepted("_strangers/a.jpg", 10),
    _accepted("_strangers/visitors/b.jpg", 11),
    Rejected(_ref("_strangers/c.jpg"), "cd" * 32, Rejection("no_face", "no face found")),
]


def test_strangers_are_never_enrolled_and_counted_apart():
    enrollment = _built(PEOPLE_OUTCOMES + STRANGER_OUTCOMES)
    without = _built(PEOPLE_OUTCOMES)

    assert [item.identity for item in enrollment.identities] == ["alice", "bob"]
    assert [record["key"] for record in enrollment.records] == PEOPLE
    for name in ("images_total", "images_accepted", "excluded", "rejected"):  # the enrollment's, unchanged
        assert getattr(enrollment, name) == getattr(without, name), name
    for mine, theirs in zip(enrollment.identities, without.identities, strict=True):
        np.testing.assert_array_equal(mine.mean, theirs.mean)
    strangers = enrollment.strangers
    assert (strangers.photos, len(strangers.records), len(strangers.rejected)) == (3, 2, 1)
    assert [r["key"] for r in strangers.records] == ["_strangers/a.jpg", "_strangers/visitors/b.jpg"]
    assert {r["identity"] for r in strangers.records} == {STRANGERS_FOLDER}
    assert strangers.rejections_by_reason == {"no_face": 1}
    assert "" not in enrollment.rejections_by_identity() and STRANGERS_FOLDER not in (
        enrollment.rejections_by_identity()
    )
    matrix = strangers.embedding_matrix(DIM)
    assert matrix.shape == (2, DIM) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[1], STRANGER_OUTCOMES[1].embedding)
    assert without.strangers.embedding_matrix(DIM).shape == (0, DIM)


def test_a_change_of_strangers_changes_the_dataset_fingerprint():
    base = _built(PEOPLE_OUTCOMES).dataset_fingerprint
    assert _built(PEOPLE_OUTCOMES + STRANGER_OUTCOMES).dataset_fingerprint != base
    assert _built(PEOPLE_OUTCOMES + STRANGER_OUTCOMES[:1]).dataset_fingerprint not in (
        base,
        _built(PEOPLE_OUTCOMES + STRANGER_OUTCOMES).dataset_fingerprint,
    )


def test_rejected_csv_lists_the_strangers_rows_after_the_enrollments_with_no_identity():
    rejected = Rejected(_ref("bob/2.jpg"), "ef" * 32, Rejection("not_an_image", "not an image"))
    text = render_rejected(_built([*PEOPLE_OUTCOMES, rejected, *STRANGER_OUTCOMES]), None)
    assert text.splitlines() == [
        '"identity","photo","reason","message"',
        '"","top.jpg","not_in_identity_folder","file at the top of face_imgs/; put photos in '
        'face_imgs/<person>/"',
        '"bob","bob/2.jpg","not_an_image","not an image"',
        '"","_strangers/c.jpg","no_face","no face found"',
    ]


# ---- saved_embeddings.pkl and reuse ------------------------------------------------------------------


def _pickled(enrollment) -> bytes:
    buffer = io.BytesIO()
    dump_embeddings(
        {"embedding_fingerprint": "f"}, enrollment.records, buffer, strangers=enrollment.strangers.records
    )
    return buffer.getvalue()


def test_the_pickle_keeps_strangers_apart_from_the_records():
    payload = load_embeddings(_pickled(_built(PEOPLE_OUTCOMES + STRANGER_OUTCOMES)))
    assert [r["key"] for r in payload["records"]] == PEOPLE
    assert [r["key"] for r in payload["strangers"]] == ["_strangers/a.jpg", "_strangers/visitors/b.jpg"]
    assert load_embeddings(_pickled(_built(PEOPLE_OUTCOMES)))["strangers"] == []


def test_a_pickle_written_before_known_strangers_reads_as_having_none():
    import pickle

    old = pickle.dumps({"format": "facetrain.saved_embeddings", "version": 1, "metadata": {}, "records": []})
    assert load_embeddings(old)["strangers"] == []


@pytest.mark.parametrize(
    "strangers", [{"not": "a list"}, [{"identity": "_strangers"}], [{"embedding": np.zeros(3)}]]
)
def test_unsound_stranger_entries_are_refused(strangers):
    import pickle

    bad = pickle.dumps(
        {
            "format": "facetrain.saved_embeddings",
            "version": 1,
            "metadata": {},
            "records": [],
            "strangers": strangers,
        }
    )
    with pytest.raises(EmbeddingsFileError, match="stranger"):
        load_embeddings(bad)


def test_strangers_are_reused_by_sha256_like_any_photo(tmp_path):
    for key in ["alice/1.jpg", "_strangers/a.jpg", "_strangers/new.jpg"]:
        _write(tmp_path / "photos", [key])
    on_disk = {
        key: hashlib.sha256((tmp_path / "photos" / key).read_bytes()).hexdigest()
        for key in ["alice/1.jpg", "_strangers/a.jpg"]
    }
    enrollment = _built(
        [
            Accepted(
                _ref("alice/1.jpg"), on_disk["alice/1.jpg"], DetectedFace((1, 2, 3, 4), 0.9, 1), _unit(1)
            ),
            Accepted(
                _ref("_strangers/a.jpg"),
                on_disk["_strangers/a.jpg"],
                DetectedFace((1, 2, 3, 4), 0.9, 1),
                _unit(2),
            ),
        ]
    )
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "saved_embeddings.pkl").write_bytes(_pickled(enrollment))
    previous = load_previous(tmp_path / "previous", "f", DIM)
    assert isinstance(previous, PreviousEmbeddings) and set(previous.by_sha256) == set(on_disk.values())

    listing = list_channel(tmp_path / "photos")
    reused, to_compute = split_reusable([*listing.photos, *listing.strangers], previous)

    assert sorted(o.photo.key for o in reused) == ["_strangers/a.jpg", "alice/1.jpg"]
    assert [p.key for p in to_compute] == ["_strangers/new.jpg"]
    stranger = next(o for o in reused if o.photo.is_stranger)
    np.testing.assert_array_equal(stranger.embedding, _unit(2))


def test_a_stranger_moved_into_a_persons_folder_is_reused_and_enrolled(tmp_path):
    """By sha256: the same bytes give the same embedding wherever the photo lies."""
    _write(tmp_path / "photos", ["_strangers/a.jpg"])
    sha = hashlib.sha256((tmp_path / "photos" / "_strangers/a.jpg").read_bytes()).hexdigest()
    enrollment = _built(
        [
            _accepted("alice/1.jpg", 1),
            Accepted(_ref("_strangers/a.jpg"), sha, DetectedFace((1, 2, 3, 4), 0.9, 1), _unit(2)),
        ]
    )
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "saved_embeddings.pkl").write_bytes(_pickled(enrollment))
    (tmp_path / "photos" / "carol").mkdir()
    (tmp_path / "photos" / "_strangers" / "a.jpg").rename(tmp_path / "photos" / "carol" / "a.jpg")

    listing = list_channel(tmp_path / "photos")
    reused, to_compute = split_reusable(listing.photos, load_previous(tmp_path / "previous", "f", DIM))

    assert [(o.photo.identity, o.photo.key) for o in reused] == [("carol", "carol/a.jpg")] and not to_compute
    assert not _built(reused).strangers.records and [i.identity for i in _built(reused).identities] == [
        "carol"
    ]
