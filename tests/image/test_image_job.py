"""The training image run as SageMaker runs it (podman, --network none, /opt/ml mounted, argument `train`) on
the real photos of faces-dev, on the default runtime (onnx: the image has no torch): the outputs, a
hopeless job's failure file, runtime=torch refused, a stop's exit 143."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from facetrain.contract.embeddings_file import load_embeddings
from facetrain.contract.enrollment_csv import parse_csv
from facetrain.contract.rules_file import load_rules
from PIL import Image as PILImage
from support.podman_image import Image, ImageJob

pytestmark = pytest.mark.image

OUTPUTS = {"final_mean_embeddings.csv", "rules.py", "saved_embeddings.pkl", "metrics.json", "report.html"}
DIMENSION = {"facenet": 512, "dlib-resnet": 128}


def _default_job_settings(image: Image) -> dict[str, str]:
    """The defaults (facenet, vggface2) in an image that holds the weights; in one built without them
    (make image-local here) the embedder an offline run chooses then: dlib-resnet, the job's real model."""
    return {} if image.weights_baked else {"embedder": "dlib-resnet"}


def _identities(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir()}


@pytest.mark.slow
def test_the_image_enrolls_faces_dev_with_no_network(image: Image, image_job, shared_data: Path) -> None:
    settings = _default_job_settings(image)
    embedder = settings.get("embedder", "facenet")
    job: ImageJob = image_job(settings)
    job.copy_photos(shared_data / "faces-dev")

    done = job.run()

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert job.failure() is None
    assert set(job.model_files()) >= OUTPUTS
    model = job.tree.model_dir
    enrolled = parse_csv(
        (model / "final_mean_embeddings.csv").read_text(encoding="utf-8"), DIMENSION[embedder]
    )
    assert {identity for identity, _, _ in enrolled} == _identities(shared_data / "faces-dev")
    rules = load_rules((model / "rules.py").read_text(encoding="utf-8"))
    assert rules["embedder"] == embedder and not rules["not_for_production"]
    saved = load_embeddings(model / "saved_embeddings.pkl")
    assert len(saved["records"]) == sum(count for _, count, _ in enrolled) > len(enrolled)


def test_runtime_torch_is_refused_in_the_image_naming_the_fix(
    image: Image, image_job, shared_data: Path
) -> None:
    """The image holds ONNX Runtime only: runtime=torch (the reference path) fails at once, with the fix."""
    job: ImageJob = image_job({**_default_job_settings(image), "runtime": "torch"})
    job.copy_photos(shared_data / "faces-dev")

    done = job.run()

    assert done.returncode != 0
    failure = job.failure()
    assert failure, done.stdout[-2000:] + done.stderr[-2000:]
    assert "runtime=torch" in failure
    assert "Traceback" not in failure
    assert job.model_files() == []


@pytest.mark.slow
def test_photos_without_faces_fail_the_job_with_a_clear_failure_file(
    image: Image, image_job, tmp_path: Path
) -> None:
    job: ImageJob = image_job(_default_job_settings(image))
    for person in ("ann", "bob"):
        (job.images / person).mkdir(parents=True)
        for shade in (40, 200):
            PILImage.new("RGB", (320, 240), (shade, shade, shade)).save(job.images / person / f"{shade}.jpg")

    done = job.run()

    assert done.returncode != 0
    failure = job.failure()
    assert failure, done.stdout[-2000:] + done.stderr[-2000:]
    assert failure.startswith("No identity could be enrolled: 4 files, 0 usable"), failure
    assert "Traceback" not in failure
    assert "final_mean_embeddings.csv" not in job.model_files()


def test_a_bad_hyperparameter_fails_the_job_naming_the_key(
    image: Image, image_job, shared_data: Path
) -> None:
    job: ImageJob = image_job({**_default_job_settings(image), "batch_size": "-3"})
    job.copy_photos(shared_data / "faces-dev")

    done = job.run()

    assert done.returncode != 0
    failure = job.failure()
    assert failure and "batch_size" in failure, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in failure
    assert job.model_files() == []


def test_facenet_vggface2_is_refused_in_an_image_without_its_weights(
    image: Image, image_job, shared_data: Path
) -> None:
    if image.weights_baked:
        pytest.skip(f"{image.name} holds the vggface2 weights (label facetrain.vggface2-weights=baked)")
    job: ImageJob = image_job({})  # the defaults: embedder=facenet, weights=vggface2
    job.copy_photos(shared_data / "faces-dev")

    done = job.run()

    assert done.returncode != 0
    failure = job.failure()
    assert failure, done.stdout[-2000:] + done.stderr[-2000:]
    assert "built without the vggface2 weights" in failure
    for fix in ("rebuild the image with the weights", "'weights' channel", "embedder=dlib-resnet"):
        assert fix in failure, fix
    assert job.model_files() == []


@pytest.mark.slow
def test_podman_stop_mid_job_exits_143_with_nothing_in_model(
    image: Image, image_job, shared_data: Path
) -> None:
    job: ImageJob = image_job(_default_job_settings(image))
    job.copy_photos(shared_data / "faces-dev")
    process = job.start()
    assert process.stdout is not None
    log: list[str] = []
    deadline = time.monotonic() + 300
    for line in process.stdout:  # wait until the job is past start-up, about to examine the photos
        log.append(line)
        if "photos to examine" in line or time.monotonic() > deadline:
            break
    assert any("photos to examine" in line for line in log), "".join(log)[-3000:]

    stopped = image.podman_cmd("stop", "--time", "60", job.name, timeout=120)  # SIGTERM, as StopTrainingJob

    log.extend(process.stdout)
    status = process.wait(timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert status == 143, "".join(log)[-3000:]
    failure = job.failure()
    assert failure and failure.startswith("Stopped:"), failure
    assert job.model_files() == []
