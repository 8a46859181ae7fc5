"""runtime=onnx (facetrain.inference.onnx_runtime) against runtime=torch (torch_runtime) on real photos.

The networks are exported from facenet-pytorch here (weights=none: the job's seeded random
InceptionResnetV1; vggface2's weights are not in this environment). Each photo is decoded as the job
decodes it; both paths must find the same faces (none included), boxes and landmarks within 1 px and
probabilities within 1e-5 on the detection copy, the same face selected, and embeddings within 1e-4 per value.
Measured: 32 photos (30 with faces): boxes within 9.2e-5 px, probabilities within 3.6e-7; 28 photos'
embeddings within 1.2e-7 per value, their crops identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

MAX_PIXELS = 89_478_485
BOX_TOLERANCE_PX = 1.0
PROBABILITY_TOLERANCE = 1e-5
EMBEDDING_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def settings():
    from facetrain.contract.hyperparameters import Hyperparameters

    return Hyperparameters(weights="none", seed=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, settings):
    from facetrain.inference.export import export_models
    from facetrain.inference.model_files import resolve_model

    return export_models(tmp_path_factory.mktemp("onnx"), resolve_model(settings, None), settings.seed)


@pytest.fixture(scope="module")
def onnx_models(exported):
    from facetrain.inference.onnx_models import load_models

    return load_models(exported.folder, "cpu", threads=1)


@pytest.fixture(scope="module")
def torch_encoder(settings):
    from facetrain.inference.runtimes import open_encoder, resolve_models

    reference = settings.model_copy(update={"runtime": "torch"})
    return open_encoder(reference, resolve_models(reference, None), "cpu")


def real_photos(shared_data: Path, tmp_path: Path) -> list[Path]:
    """faces-dev, faces-small and the multi-face photo, plus three derived at test time: upside down, shrunk
    to 60 x 45 px, and the top-left corner of a portrait, where no face is found (the same rejection)."""
    photos = sorted((shared_data / "faces-dev").rglob("*.jpg")) + sorted(
        (shared_data / "faces-small").rglob("*.jpg")
    )
    photos.append(shared_data / "edge-cases" / "multiface.jpg")
    with Image.open(shared_data / "faces-small" / "paul_rudd" / "1.jpg") as opened:
        image = opened.convert("RGB")
    image.rotate(180).save(tmp_path / "upside-down.jpg", quality=92)
    image.resize((60, 45)).save(tmp_path / "tiny.jpg", quality=92)
    image.crop((0, 0, image.width // 4, image.height // 4)).save(tmp_path / "corner.jpg", quality=92)
    return [*photos, tmp_path / "upside-down.jpg", tmp_path / "tiny.jpg", tmp_path / "corner.jpg"]


def onnx_faces(photo, models, settings):
    from facetrain.inference.mtcnn import detect_faces

    return detect_faces(
        np.asarray(photo.detection_image), models.mtcnn, settings.min_face_size, settings.detection_thresholds
    )


def test_detection_matches_facenet_pytorch_on_real_photos(
    shared_data, tmp_path, settings, onnx_models, torch_encoder
):
    from facetrain.inference.faces import _largest
    from facetrain.photos import decode_photo

    worst_box = worst_probability = worst_landmark = 0.0
    with_faces = without = 0
    for path in real_photos(shared_data, tmp_path):
        photo = decode_photo(path, MAX_PIXELS, settings.detection_max_side, settings.min_face_size)
        with torch.inference_mode():
            boxes, probabilities, landmarks = torch_encoder.detector.mtcnn.detect(
                photo.detection_image, landmarks=True
            )
        found = onnx_faces(photo, onnx_models, settings)
        name = f"{path.parent.name}/{path.name}"
        if boxes is None:
            assert len(found.boxes) == 0, f"{name}: the ONNX path finds {len(found.boxes)} faces, torch none"
            without += 1
            continue
        assert len(found.boxes) == len(boxes), f"{name}: {len(found.boxes)} faces vs torch's {len(boxes)}"
        worst_box = max(worst_box, float(np.abs(found.boxes - boxes).max()))
        worst_landmark = max(worst_landmark, float(np.abs(found.landmarks - landmarks).max()))
        worst_probability = max(
            worst_probability,
            float(np.abs(found.probabilities - np.asarray(probabilities, np.float32)).max()),
        )
        assert _largest(found.boxes) == _largest(boxes), f"{name}: another face selected"
        assert int(np.argmax(found.probabilities)) == int(np.argmax(probabilities)), f"{name}: most probable"
        with_faces += 1
    print(
        f"{with_faces} photos with faces, {without} without; max box diff {worst_box:.2e} px, "
        f"max probability diff {worst_probability:.2e}, max landmark diff {worst_landmark:.2e} px"
    )
    assert with_faces >= 29 and without >= 1
    assert worst_box <= BOX_TOLERANCE_PX
    assert worst_probability <= PROBABILITY_TOLERANCE
    assert worst_landmark <= BOX_TOLERANCE_PX


def test_embeddings_match_the_torch_path_on_real_photos(shared_data, settings, onnx_models, torch_encoder):
    """End to end: each path detects, selects, crops (from the job's reduced re-decode) and embeds."""
    from facetrain.inference.facenet import embed_crops, face_crop
    from facetrain.inference.faces import DetectedFace, _largest, crop_source
    from facetrain.photos import decode_photo

    photos = sorted((shared_data / "faces-dev").rglob("*.jpg")) + sorted(
        (shared_data / "faces-small").rglob("*.jpg")
    )
    torch_crops, onnx_crops = [], []
    for path in photos:
        photo = decode_photo(path, MAX_PIXELS, settings.detection_max_side, settings.min_face_size)
        face = torch_encoder.detect(photo)
        torch_crops.append(torch_encoder.crop(photo, face))
        found = onnx_faces(photo, onnx_models, settings)
        index = _largest(found.boxes)
        box = tuple(float(v) * photo.detection_scale for v in found.boxes[index])
        mine = DetectedFace(
            box=box, probability=float(found.probabilities[index]), faces_found=len(found.boxes)
        )  # type: ignore[arg-type]
        source, scale = crop_source(photo, mine, settings.image_size, settings.max_image_pixels)
        onnx_crops.append(face_crop(source, np.array(mine.box) / scale, settings.image_size, settings.margin))
        np.testing.assert_array_equal(onnx_crops[-1], torch_crops[-1].numpy(), err_msg=f"{path.name}: crop")
    expected = np.concatenate(
        [torch_encoder.embed(torch_crops[i : i + 16]) for i in range(0, len(photos), 16)]
    )
    got = np.concatenate(
        [embed_crops(onnx_models.facenet, onnx_crops[i : i + 16]) for i in range(0, len(photos), 16)]
    )
    worst = float(np.abs(got - expected).max())
    print(f"{len(photos)} photos: max embedding diff {worst:.2e} per value")
    assert got.shape == (28, 512) and got.dtype == np.float32
    assert worst <= EMBEDDING_TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_the_manifest_records_each_exported_file_and_its_sha256(exported):
    from facetrain.inference.model_files import sha256_file

    document = json.loads(exported.manifest.read_text())
    assert [entry["role"] for entry in document["files"]] == ["pnet", "rnet", "onet", "facenet"]
    for entry in document["files"]:
        assert sha256_file(exported.folder / entry["name"]) == entry["sha256"]
    assert document["made_from"]["facenet_weights"] == "none" and document["made_from"]["seed"] == 0
    assert document["files"][3]["name"] == "inception_resnet_v1-random-seed0.onnx"


def test_a_changed_or_missing_model_file_is_refused_naming_it(exported, tmp_path):
    import shutil

    from facetrain.inference.model_files import WeightsError
    from facetrain.inference.onnx_models import load_models

    copy = tmp_path / "models"
    shutil.copytree(exported.folder, copy)
    with (copy / "rnet.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(
        WeightsError, match=r"the rnet model .*rnet\.onnx is not the file manifest\.json records"
    ):
        load_models(copy)
    (copy / "rnet.onnx").unlink()
    with pytest.raises(WeightsError, match=r"rnet\.onnx is missing; re-export them: python -m facetrain"):
        load_models(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(WeightsError, match=r"manifest\.json is missing"):
        load_models(copy)


def test_the_export_command_names_absent_weights_without_a_traceback(tmp_path, capsys, monkeypatch):
    from facetrain.inference.export import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached vggface2 weights there
    assert main([str(tmp_path / "out"), "--weights", "vggface2"]) == 2
    error = capsys.readouterr().err
    assert "export failed: The vggface2 weights file 20180402-114759-vggface2.pt was not found" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_a_weights_file_is_exported_under_its_sha256_and_embeds_as_torch_does(tmp_path, settings):
    """The branch vggface2 takes (its weights are not in this environment): a .pt state dict, here
    InceptionResnetV1's seeded init with seed 3 saved by torch."""
    from facetrain.contract.hyperparameters import Hyperparameters
    from facetrain.inference.export import export_models
    from facetrain.inference.facenet import embed_crops
    from facetrain.inference.model_files import resolve_model
    from facetrain.inference.onnx_models import load_models
    from facetrain.inference.torch_runtime import TorchFacenetEmbedder, load_facenet

    weights = tmp_path / "seed3.pt"
    torch.save(load_facenet(resolve_model(settings, None), 3, torch.device("cpu")).state_dict(), weights)
    file_settings = Hyperparameters(weights=str(weights))
    model = resolve_model(file_settings, None)
    exported = export_models(tmp_path / "onnx", model, seed=0)
    document = json.loads(exported.manifest.read_text())
    assert document["made_from"]["facenet_weights_sha256"] == model.sha256
    assert document["made_from"]["seed"] is None
    assert document["files"][3]["name"] == f"inception_resnet_v1-{model.sha256[:16]}.onnx"

    faces = torch.rand(5, 3, 160, 160, generator=torch.Generator().manual_seed(28)) * 2 - 1
    expected = TorchFacenetEmbedder(file_settings, model, "cpu").embed(list(faces))
    got = embed_crops(load_models(exported.folder, threads=1).facenet, list(faces.numpy()))
    assert float(np.abs(got - expected).max()) <= EMBEDDING_TOLERANCE
    seeded = TorchFacenetEmbedder(settings, resolve_model(settings, None), "cpu").embed(list(faces))
    assert float(np.abs(got - seeded).max()) > 0.01  # the file's weights ran, not the seed-0 init


def test_device_cuda_without_onnxruntime_gpu_names_the_package():
    import onnxruntime
    from facetrain.accelerator import DeviceError
    from facetrain.inference.onnx_models import CUDA, providers

    assert providers("cpu") == ["CPUExecutionProvider"]
    if CUDA in onnxruntime.get_available_providers():
        assert providers("cuda") == [(CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
    else:
        with pytest.raises(DeviceError, match="install onnxruntime-gpu"):
            providers("cuda")
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', not 'tpu'"):
        providers("tpu")


def test_every_network_takes_any_batch_and_pnet_and_facenet_any_size(exported):
    import onnxruntime

    shapes = {}
    for entry in json.loads(exported.manifest.read_text())["files"]:
        session = onnxruntime.InferenceSession(
            str(exported.folder / entry["name"]), providers=["CPUExecutionProvider"]
        )
        shapes[entry["role"]] = [node.shape for node in session.get_inputs() + session.get_outputs()]
    assert shapes["pnet"] == [
        ["batch", 3, "height", "width"],
        *[["batch", n, "grid_height", "grid_width"] for n in (4, 2)],
    ]
    assert shapes["rnet"] == [["batch", 3, 24, 24], ["batch", 4], ["batch", 2]]
    assert shapes["onet"] == [["batch", 3, 48, 48], ["batch", 4], ["batch", 10], ["batch", 2]]
    assert shapes["facenet"] == [["batch", 3, "height", "width"], ["batch", 512]]  # the image_size setting


def test_the_export_without_the_onnx_package_says_what_to_install(tmp_path, capsys, monkeypatch):
    import sys

    from facetrain.inference.export import main

    monkeypatch.setitem(sys.modules, "onnx", None)  # as where onnx is not installed: import onnx fails
    assert main([str(tmp_path / "out"), "--weights", "none"]) == 2
    error = capsys.readouterr().err
    assert "export failed: the ONNX export needs the Python package onnx" in error and "make setup" in error
    assert "Traceback" not in error


@pytest.mark.parametrize(
    ("embedder", "changes"),
    [("facenet", {}), ("facenet", {"image_size": 112, "margin": 20}), ("dlib-resnet", {})],
    ids=["facenet", "facenet-112px-margin20", "dlib-resnet"],
)
def test_the_job_pipeline_gives_the_same_outcomes_on_both_runtimes(shared_data, tmp_path, embedder, changes):
    """What the job does (open_encoder + PhotoPipeline) on each runtime, over the real photos: the same
    photos accepted and the same rejections, the same face selected (boxes within 1 px), embeddings within
    EMBEDDING_TOLERANCE per value."""
    from facetrain.contract.hyperparameters import Hyperparameters
    from facetrain.inference.runtimes import open_encoder, resolve_models
    from facetrain.photos import PhotoRef
    from facetrain.pipeline import Accepted, PhotoPipeline

    base = {"embedder": embedder, **({"weights": "none"} if embedder == "facenet" else {}), **changes}
    photos = [
        PhotoRef(identity=path.parent.name, key=f"{path.parent.name}/{path.name}", path=path)
        for path in real_photos(shared_data, tmp_path)
    ]
    outcomes = {}
    for runtime in ("onnx", "torch"):
        settings = Hyperparameters(**base, runtime=runtime)
        encoder = open_encoder(settings, resolve_models(settings, None), "cpu")
        outcomes[runtime] = list(PhotoPipeline(settings, encoder).run(photos))
    worst_box = worst_value = 0.0
    accepted = 0
    for mine, reference in zip(outcomes["onnx"], outcomes["torch"], strict=True):
        assert type(mine) is type(reference), f"{mine.photo.key}: {mine} vs {reference}"
        if not isinstance(reference, Accepted):
            assert mine.rejection.reason == reference.rejection.reason, mine.photo.key
            continue
        accepted += 1
        assert mine.face.faces_found == reference.face.faces_found, mine.photo.key
        worst_box = max(worst_box, float(np.abs(np.subtract(mine.face.box, reference.face.box)).max()))
        worst_value = max(worst_value, float(np.abs(mine.embedding - reference.embedding).max()))
    print(
        f"{embedder} {changes}: {accepted} accepted; max box diff {worst_box:.2e} px, "
        f"embedding {worst_value:.2e}"
    )
    assert accepted >= 28
    assert worst_box <= BOX_TOLERANCE_PX
    assert worst_value <= EMBEDDING_TOLERANCE
