"""Every face of a photo, without models: FaceEncoder.detect_all (order, largest, faces not answered) on a
stub detector, PhotoPipeline(faces="all") on a stub encoder (each face's embedding is its own across batch
boundaries), and identify's search of one face at the decision rule's boundary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.identify import Results, answer_face
from facetrain.inference.faces import DetectedFace, FaceEncoder
from facetrain.photos import PhotoRef, PhotoRejected, Rejection, decode_photo
from facetrain.pipeline import Accepted, Examined, FaceRejected, PhotoPipeline, Rejected
from PIL import Image

SETTINGS = Hyperparameters(weights="none")  # min_face_size 20, detection_max_side 512, thresholds .6/.7/.7


class StubDetector:
    """The runtime's MTCNN answer (faces.Detector) for every photo: boxes in detection-copy pixels and their
    probabilities, empty arrays for none."""

    def __init__(self, boxes: list[list[float]], probs: list[float]) -> None:
        self.boxes, self.probs = boxes, probs

    def find(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        if not self.boxes:
            return np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32)
        return np.array(self.boxes, dtype=np.float32), np.array(self.probs, dtype=np.float32)


def stub_encoder(boxes: list[list[float]], probs: list[float], **settings: object) -> FaceEncoder:
    encoder = object.__new__(FaceEncoder)  # no MTCNN, no embedder: only detection's own logic runs
    encoder.settings = SETTINGS.model_copy(update=settings)
    encoder.detector = StubDetector(boxes, probs)
    return encoder


def blank_photo(tmp_path: Path, name: str = "photo.png", size: tuple[int, int] = (1024, 512)) -> Path:
    path = tmp_path / name
    Image.new("RGB", size, (120, 110, 100)).save(path)
    return path


@pytest.fixture
def decoded(tmp_path):
    """A 1024 x 512 photo: its detection copy is 512 x 256, two photo pixels per detection pixel."""
    photo = decode_photo(blank_photo(tmp_path), SETTINGS.max_image_pixels, 512, 20)
    assert photo.detection_scale == 2.0
    return photo


BOXES = [[300.0, 40.0, 360.0, 110.0], [20.0, 60.0, 60.0, 110.0], [20.0, 10.0, 45.0, 40.0], [150, 50, 165, 66]]
PROBS = [0.99, 0.98, 0.97, 0.95]


def test_every_face_is_found_left_to_right_in_photo_pixels(decoded):
    faces = stub_encoder(BOXES, PROBS).detect_all(decoded)

    # by the box's left edge, then its top (the two faces at x=20: the upper first)
    assert [face.box for face in faces] == [
        (40.0, 20.0, 90.0, 80.0),
        (40.0, 120.0, 120.0, 220.0),
        (300.0, 100.0, 330.0, 132.0),
        (600.0, 80.0, 720.0, 220.0),
    ]
    assert [face.probability for face in faces] == pytest.approx([0.97, 0.98, 0.95, 0.99])
    assert {face.faces_found for face in faces} == {4}


def test_largest_only_is_the_face_the_job_selects(decoded):
    encoder = stub_encoder(BOXES, PROBS)
    [largest] = encoder.detect_all(decoded, largest_only=True)
    assert largest == encoder.detect(decoded)  # face_selection=largest
    assert largest.box == (600.0, 80.0, 720.0, 220.0)


def test_face_selection_does_not_limit_what_identify_examines(decoded):
    encoder = stub_encoder(BOXES, PROBS, face_selection="reject")
    with pytest.raises(PhotoRejected, match="face_selection=reject"):
        encoder.detect(decoded)  # enrolling refuses the photo
    assert len(encoder.detect_all(decoded)) == 4  # examining it answers every face


def test_a_photo_without_a_face_is_rejected_as_the_job_rejects_it(decoded):
    with pytest.raises(PhotoRejected) as caught:
        stub_encoder([], []).detect_all(decoded)
    assert caught.value.rejection.reason == "no_face"


def test_faces_below_min_face_size_or_the_detection_threshold_are_not_answered(decoded):
    encoder = stub_encoder(BOXES, PROBS)
    small = DetectedFace((300.0, 100.0, 330.0, 132.0), 0.95, 4)  # 15 px across in the detection copy
    assert encoder.unanswerable(decoded, small) == Rejection(
        "below_min_face_size",
        "the face is 15 px across in the 512 px detection copy, less than min_face_size=20",
    )
    at_size = DetectedFace((300.0, 100.0, 340.0, 140.0), 0.95, 4)  # 20 px: the size searched for
    assert encoder.unanswerable(decoded, at_size) is None
    faint = DetectedFace((300.0, 100.0, 340.0, 140.0), 0.69, 4)
    rejection = encoder.unanswerable(decoded, faint)
    assert rejection is not None and rejection.reason == "below_detection_threshold"
    assert encoder.unanswerable(decoded, DetectedFace(at_size.box, 0.7, 4)) is None  # the threshold itself


class StubEncoder:
    """Faces per photo (by file name: _decoded's sha256); a face's crop is its left edge, its embedding
    [left, 1]; a face with a probability under 0.9 cannot be aligned."""

    def __init__(self, faces: dict[str, list[DetectedFace]]) -> None:
        self.faces = faces
        self.batches: list[int] = []

    def _faces(self, photo) -> list[DetectedFace]:
        faces = self.faces[photo.sha256]  # _decoded: the file name
        if not faces:
            raise PhotoRejected("no_face", "no face found")
        return faces

    def detect(self, photo) -> DetectedFace:
        return self._faces(photo)[0]

    def detect_all(self, photo, largest_only: bool = False) -> list[DetectedFace]:
        faces = self._faces(photo)
        return [max(faces, key=lambda f: f.box[2] - f.box[0])] if largest_only else faces

    def unanswerable(self, photo, face: DetectedFace) -> Rejection | None:
        return Rejection("below_min_face_size", "small") if face.box[2] - face.box[0] < 20 else None

    def crop(self, photo, face: DetectedFace) -> float:
        if face.probability < 0.9:
            raise PhotoRejected("too_small", "cannot align")
        return face.box[0]

    def embed(self, crops: list[float]) -> np.ndarray:
        self.batches.append(len(crops))
        return np.array([[x, 1.0] for x in crops], dtype=np.float32)


def face(left: float, width: float = 50.0, probability: float = 0.99) -> DetectedFace:
    return DetectedFace((left, 0.0, left + width, width), probability, 0)


def test_the_pipeline_answers_every_face_of_each_photo_in_order_across_batches(tmp_path, monkeypatch):
    faces = {
        "three.png": [face(10), face(100, width=10), face(200), face(300)],  # one too small: not embedded
        "none.png": [],
        "one.png": [face(400)],
        "unalignable.png": [face(500, probability=0.5), face(600)],
    }
    names = ["three.png", "none.png", "one.png", "unalignable.png"]
    monkeypatch.setattr("facetrain.pipeline.decode_photo", lambda path, **_: _decoded(path))
    refs = [PhotoRef("", name, tmp_path / name) for name in names]
    encoder = StubEncoder(faces)

    pipeline = PhotoPipeline(SETTINGS.model_copy(update={"batch_size": 2}), encoder, faces="all")  # type: ignore[arg-type]
    outcomes = list(pipeline.run(refs))

    assert [outcome.photo.key for outcome in outcomes] == names
    three, none, one, unalignable = outcomes
    assert isinstance(none, Rejected) and none.rejection.reason == "no_face"
    for outcome, expected in ((three, faces["three.png"]), (one, faces["one.png"])):
        assert isinstance(outcome, Examined)
        assert [item.face for item in outcome.faces] == expected
    assert (
        isinstance(three.faces[1], FaceRejected) and three.faces[1].rejection.reason == "below_min_face_size"
    )
    for item in (*three.faces, *one.faces, *unalignable.faces):
        if isinstance(item, Accepted):  # each face's own embedding, whatever batch it went through
            assert item.embedding.tolist() == [item.face.box[0], 1.0]
    assert [type(item) for item in unalignable.faces] == [FaceRejected, Accepted]
    assert unalignable.faces[0].rejection.reason == "too_small"
    assert sum(encoder.batches) == 5 and max(encoder.batches) <= 3  # a photo's faces stay in one batch


def test_the_largest_face_only_and_the_job_s_selection(tmp_path, monkeypatch):
    faces = {"two.png": [face(10, width=30), face(100, width=60)]}
    monkeypatch.setattr("facetrain.pipeline.decode_photo", lambda path, **_: _decoded(path))
    refs = [PhotoRef("", "two.png", tmp_path / "two.png")]

    [largest] = PhotoPipeline(SETTINGS, StubEncoder(faces), faces="largest").run(refs)  # type: ignore[arg-type]
    [selected] = PhotoPipeline(SETTINGS, StubEncoder(faces)).run(refs)  # type: ignore[arg-type]

    assert isinstance(largest, Examined) and [item.face for item in largest.faces] == [faces["two.png"][1]]
    assert isinstance(selected, Accepted) and selected.face == faces["two.png"][0]  # StubEncoder.detect


def _decoded(path: Path):
    from facetrain.photos import DecodedPhoto

    image = Image.new("RGB", (64, 64))
    return DecodedPhoto(sha256=path.name, size=(64, 64), detection_image=image, crop_image=image, data=b"")


def results_with(threshold: float) -> Results:
    """Two enrolled identities: `a` at exactly sqrt(2) from the probe [1, 0], `b` at 2."""
    means = np.array([[0.0, 1.0], [-1.0, 0.0]])
    return Results({"accept_threshold": threshold}, SETTINGS, ["a", "b"], means)


def test_identify_accepts_a_face_at_the_threshold_and_refuses_it_just_above():
    probe = np.array([1.0, 0.0], dtype=np.float32)
    at = answer_face(probe, results_with(math.sqrt(2.0)), top=2)
    assert (at["identity"], at["accepted"], at["distance"]) == ("a", True, round(math.sqrt(2.0), 6))
    assert at["margin"] == pytest.approx(2.0 - math.sqrt(2.0), abs=1e-6)
    assert [(c["identity"], c["accepted"]) for c in at["candidates"]] == [("a", True), ("b", False)]

    below = answer_face(probe, results_with(math.nextafter(math.sqrt(2.0), 0.0)), top=1)
    assert (below["identity"], below["accepted"]) == (None, False)
    assert below["distance"] == at["distance"] and len(below["candidates"]) == 1
