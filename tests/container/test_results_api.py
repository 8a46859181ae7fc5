"""The results as a library (facetrain.results) and `facetrain identify`'s words about its arguments, on real
photos against one job's results (weights=none with a seed, as test_identify.py).

The library's answer is the command's: the same fields, computed by the same code, for file bytes, a PIL
image or an array; the command answers a folder, a missing file or a broken link about the path given,
never with a traceback or the job's "upload the photo again"."""

from __future__ import annotations

import io
import tempfile

import numpy as np
import pytest
from facetrain.results import Answer, Face, Results, ResultsError
from PIL import Image
from support.cli import identify

PHOTOS = ["faces-dev/person_02/img3.jpg", "edge-cases/multiface.jpg", "faces-dev/person_10/img46.jpg"]


@pytest.fixture(scope="module")
def published(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("api") / "opt_ml", {"weights": "none", "seed": "7"})
    tree.add_identities(shared_data / "faces-dev", limit=3)
    assert module_job(tree).rc == 0, tree.failure()
    return tree


@pytest.fixture(scope="module")
def results(published):
    return Results.load(published.model, device="cpu")


def _without_photo(line: dict) -> dict:
    return {key: value for key, value in line.items() if key != "photo"}


def test_the_answer_for_a_files_bytes_is_the_commands_line(published, results, shared_data, tmp_path, capsys):
    wall, notes = tmp_path / "wall.jpg", tmp_path / "notes.jpg"
    Image.new("RGB", (400, 300), (200, 190, 180)).save(wall)
    notes.write_text("not a photo", encoding="utf-8")
    files = [*(shared_data / p for p in PHOTOS), wall, notes]
    code, lines, err = identify(capsys, *files, "--results", published.model, "--device", "cpu")
    assert code == 1, err  # notes.jpg is not an image
    answers = results.identify_many([path.read_bytes() for path in files])
    assert [answer.as_json() for answer in answers] == [_without_photo(line) for line in lines]
    group = answers[1]
    assert group.faces_found == len(group.faces) > 1 and all(isinstance(f, Face) for f in group.faces)
    assert (answers[3].reason, answers[3].faces_found, answers[3].faces) == ("no_face", 0, ())
    assert answers[4].reason == "not_an_image" and answers[4].faces_found is None
    assert all("NOT FOR PRODUCTION" in answer.warning for answer in answers)  # type: ignore[operator]
    alone = results.identify(files[0].read_bytes())  # a batch of one: the same faces, to float noise
    assert [face.box for face in alone.faces] == [face.box for face in answers[0].faces]


def test_a_pil_image_and_an_array_are_examined_pixel_for_pixel(
    published, results, shared_data, tmp_path, capsys
):
    image = Image.open(shared_data / PHOTOS[1])
    lossless = tmp_path / "group.png"
    image.convert("RGB").save(lossless)
    code, [line], err = identify(capsys, lossless, "--results", published.model, "--device", "cpu")
    assert code == 0, err
    from_image = results.identify(image)
    assert from_image.as_json() == _without_photo(line)
    assert results.identify(np.asarray(image.convert("RGB"))) == from_image
    grey = np.asarray(image.convert("L"))
    assert results.identify(grey).faces_found == len(results.identify(grey).faces)  # H x W grey is read


def test_a_pil_image_is_taken_upright(results, shared_data, forge):
    upright = forge.load_rgb(shared_data / PHOTOS[0])
    sideways = Image.open(io.BytesIO(forge.exif_rotated_jpeg(upright, 6)))
    assert sideways.size == (upright.height, upright.width)  # stored rotated; its EXIF says how to show it
    [face] = results.identify(upright).faces
    [turned] = results.identify(sideways).faces
    assert _overlap(turned.box, face.box) > 0.9  # in upright pixels (re-encoded as JPEG: not to the pixel)
    assert turned.candidates[0].identity == face.candidates[0].identity


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return width * height / (area - width * height)


def test_the_results_describe_themselves(published, results):
    rules = published.rules()
    assert results.identities == rules["identities"]
    assert results.threshold == rules["accept_threshold"]
    assert results.not_for_production is True


def test_a_line_of_the_command_reads_back_as_an_answer(results, shared_data):
    answer = results.identify((shared_data / PHOTOS[1]).read_bytes())
    assert Answer.from_json(answer.as_json()) == answer


def test_load_refuses_with_the_commands_words(tmp_path, shared_data, capsys):
    missing = tmp_path / "nowhere"
    with pytest.raises(ResultsError) as refused:
        Results.load(missing)
    _, _, err = identify(capsys, shared_data / PHOTOS[0], "--results", missing)
    assert err.strip() == f"facetrain identify: {refused.value}"
    assert str(refused.value).startswith(f"the results folder {missing} does not exist")
    with pytest.raises(ValueError, match="top must be at least 1"):
        Results.load(missing, top=0)


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("door.jpg", "identify takes a PIL image, a numpy array or bytes, not str"),
        (np.zeros((4, 4, 3), dtype=np.float32), "an image array must be uint8"),
        (np.zeros((4, 4, 4), dtype=np.uint8), "an image array must be uint8, H x W x 3"),
    ],
)
def test_another_kind_of_argument_is_a_type_error(results, image, words):
    with pytest.raises(TypeError, match=words.replace("(", r"\(")):
        results.identify(image)


def test_no_image_is_left_on_disk(results, shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    results.identify_many([(shared_data / PHOTOS[0]).read_bytes(), b"not an image"])
    assert list(tmp_path.iterdir()) == []


def test_a_folder_a_missing_file_and_a_broken_link_are_said_plainly(published, shared_data, tmp_path, capsys):
    folder, missing, link = shared_data / "faces-dev" / "person_02", tmp_path / "gone.jpg", tmp_path / "l.jpg"
    in_folder = f"{folder} is a folder, not a photo: give the photos in it (e.g. {folder}/*.jpg)"
    link.symlink_to(tmp_path / "nowhere.jpg")
    code, lines, err = identify(
        capsys, folder, missing, link, shared_data / PHOTOS[0], "--results", published.model
    )
    assert code == 1 and "Traceback" not in err
    assert [(line["photo"], line["reason"], line["error"]) for line in lines[:3]] == [
        (str(folder), "not_an_image", in_folder),
        (str(missing), "unreadable", f"{missing} does not exist: check the path and the file's name"),
        (str(link), "unreadable", f"{link} is a symbolic link to a file that does not exist"),
    ]
    assert all(line["faces"] == [] and line["faces_found"] is None for line in lines[:3])
    assert lines[3]["faces"][0]["candidates"]  # the photo after them is still identified


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "LAB", "HSV", "RGBA", "L"])
def test_an_image_in_any_mode_pillow_makes_is_taken(mode: str) -> None:
    """A PIL image in a mode PNG cannot hold (a CMYK JPEG opened by Pillow) is converted, never an error."""
    from facetrain.results import image_bytes

    image = Image.new("RGB", (8, 6), (200, 100, 50)).convert(mode)
    decoded = Image.open(io.BytesIO(image_bytes(image)))
    assert decoded.size == (8, 6) and decoded.format == "PNG"
