"""`facetrain identify` answers every face of a photo, on real dlib-resnet embeddings: one answer per face
found, left to right, each searched with contract/decision.py's rule at the published threshold.

Who is in the photos (looked at): edge-cases/multiface.jpg shows six people, one of them faces-dev's
person_02 (the face at about x 225-304 of its 1200 x 630 pixels); none of faces-small's four people
(angelina_jolie, kate_siegel, paul_rudd, shea_whigham) is in it, nor any other faces-dev person.
faces-dev/person_02/img54.jpg shows person_02 with three bystanders behind her, none of them enrolled.
The derived photo pastes person_04's face (img14.jpg, left out of the enrollment) into multiface.jpg's
empty top-left corner: two enrolled people among seven faces.

The accept threshold is the published one of the enrollment made here (calibration decides it): every
decision is checked against it, and every face that is not an enrolled person must be refused at it.
"""

from __future__ import annotations

import io
import json

import pytest
from facetrain.contract.decision import search
from PIL import Image

GROUP = "edge-cases/multiface.jpg"
BYSTANDERS = "faces-dev/person_02/img54.jpg"
STRANGERS = [
    "faces-small/angelina_jolie/1.jpg",
    "faces-small/kate_siegel/1.jpg",
    "faces-small/paul_rudd/1.jpg",
    "faces-small/shea_whigham/1.jpg",
]
PASTED = "faces-dev/person_04/img14.jpg"  # left out of the enrollment, pasted into the group photo
TOP = 4  # every enrolled identity is a candidate: the search can be redone from the candidates


@pytest.fixture(scope="module")
def enrolled(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    """faces-dev with dlib-resnet and the default settings (so the default calibration), but PASTED."""
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("faces") / "opt_ml", {"embedder": "dlib-resnet"})
    for folder in sorted(p for p in (shared_data / "faces-dev").iterdir() if p.is_dir()):
        for photo in sorted(folder.iterdir()):
            if photo != shared_data / PASTED:
                tree.add_photo(folder.name, photo.name, photo)
    assert module_job(tree).rc == 0, tree.failure()
    return tree


@pytest.fixture(scope="module")
def derived(shared_data, tmp_path_factory):
    """multiface.jpg with person_04's face (about 75 x 100 px) pasted into its empty top-left corner."""
    group = Image.open(shared_data / GROUP).convert("RGB")
    face = Image.open(shared_data / PASTED).convert("RGB").crop((270, 10, 570, 340)).resize((150, 165))
    group.paste(face, (5, 5))
    path = tmp_path_factory.mktemp("derived") / "group-and-person_04.jpg"
    group.save(path, quality=95)
    return path


def run(results, *photos, largest_only: bool = False) -> list[dict]:
    from facetrain.identify import run_identify

    out, err = io.StringIO(), io.StringIO()
    code = run_identify(list(photos), results.model, top=TOP, out=out, err=err, largest_only=largest_only)
    assert code == 0, err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def answers(enrolled, shared_data, derived):
    """One identify run over every photo of these tests, by photo name."""
    photos = [shared_data / GROUP, shared_data / BYSTANDERS, derived, *(shared_data / p for p in STRANGERS)]
    lines = run(enrolled, *photos)
    assert [line["photo"] for line in lines] == [str(p) for p in photos]
    return dict(zip([GROUP, BYSTANDERS, "derived", *STRANGERS], lines, strict=True))


def check_decisions(line: dict, enrolled) -> None:
    """Every face of a photo's line answered, left to right, by the decision rule at the published
    threshold; every face at least as probable as the detection threshold the enrollment used."""
    rules = enrolled.rules()
    threshold, identities = rules["accept_threshold"], rules["identities"]
    detection = enrolled.embeddings()["metadata"]["hyperparameters"]["detection_thresholds"][-1]
    faces = line["faces"]
    assert line["faces_found"] == len(faces) == line["faces_answered"]  # one answer per face found
    lefts = [face["box"][0] for face in faces]
    assert lefts == sorted(lefts)
    for face in faces:
        x1, y1, x2, y2 = face["box"]
        assert x1 < x2 and y1 < y2 and detection <= face["probability"] <= 1.0
        candidates = face["candidates"]
        assert sorted(c["identity"] for c in candidates) == sorted(identities)
        redone = search([c["distance"] for c in candidates], threshold)
        assert face["distance"] == candidates[0]["distance"] == redone.distance
        assert face["accepted"] == redone.accepted == (face["distance"] <= threshold)
        assert face["identity"] == (candidates[0]["identity"] if face["accepted"] else None)
        assert face["margin"] == pytest.approx(redone.margin, abs=2e-6)
        assert all(c["accepted"] == (c["distance"] <= threshold) for c in candidates)
    assert line["identities"] == [face["identity"] for face in faces if face["accepted"]]


def test_every_face_of_the_group_photo_is_answered_and_only_person_02_is_found(enrolled, answers):
    rules = enrolled.rules()
    line = answers[GROUP]

    check_decisions(line, enrolled)
    assert line["faces_found"] == 6
    assert line["identities"] == ["person_02"]
    [found] = [face for face in line["faces"] if face["accepted"]]
    x1, y1, x2, y2 = found["box"]  # in the photo's own pixels (its detection copy is 512 px wide)
    assert 200 < x1 < 250 and 280 < x2 < 330 and 230 < y1 < 280 and 330 < y2 < 380
    assert found["identity"] == "person_02"
    assert found["margin"] > 0.1  # measured 0.19: no other identity is near
    for face in line["faces"]:
        if face is not found:  # the five others are not enrolled: refused at the published threshold
            assert face["identity"] is None and face["accepted"] is False, face
            assert face["distance"] > rules["accept_threshold"]


def test_the_bystanders_are_refused_where_the_enrolled_person_is_found(enrolled, answers):
    rules = enrolled.rules()
    line = answers[BYSTANDERS]

    check_decisions(line, enrolled)
    assert line["faces_found"] == 4
    assert line["identities"] == ["person_02"]
    biggest = max(line["faces"], key=lambda face: face["box"][2] - face["box"][0])
    assert biggest["identity"] == "person_02"  # the portrait's subject; the three small faces refused
    assert all(face["distance"] > rules["accept_threshold"] for face in line["faces"] if face is not biggest)


def test_people_not_enrolled_are_refused(enrolled, answers):
    rules = enrolled.rules()
    for photo in STRANGERS:
        line = answers[photo]
        check_decisions(line, enrolled)
        assert line["faces_found"] == 1
        [face] = line["faces"]
        assert (face["identity"], face["accepted"]) == (None, False), (photo, face)
        assert face["distance"] > rules["accept_threshold"]
        assert line["identities"] == []


def test_enrolled_people_are_found_among_several_faces_of_a_derived_photo(enrolled, answers):
    line = answers["derived"]

    check_decisions(line, enrolled)
    assert line["faces_found"] == 7
    assert line["identities"] == ["person_04", "person_02"]  # left to right
    first, second, *others = line["faces"]
    assert first["identity"] == "person_04" and first["box"][2] < 150  # on the pasted face
    assert second["identity"] == "person_02" and 200 < second["box"][0] < 250
    assert all(face["identity"] is None for face in others)  # multiface.jpg's five strangers


def test_largest_face_only_restores_one_answer_per_photo(enrolled, answers, shared_data):
    lines = run(enrolled, shared_data / GROUP, shared_data / BYSTANDERS, largest_only=True)

    for name, line in zip((GROUP, BYSTANDERS), lines, strict=True):
        [face] = line["faces"]
        every = answers[name]
        assert line["faces_found"] == every["faces_found"] and line["faces_answered"] == 1
        # the largest of the faces every-face mode answered, with the very same answer
        assert face == max(
            every["faces"], key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1])
        )
    assert lines[0]["faces"][0]["box"][0] > 800 and lines[0]["identities"] == []  # not person_02's face
    assert lines[1]["identities"] == ["person_02"]
