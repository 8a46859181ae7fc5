"""An image built without the vggface2 weights (FACETRAIN_VGGFACE2_WEIGHTS=absent, make image-local) refuses
facenet+vggface2 naming the three fixes; a weights channel still serves, and other embedders are untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.inference.model_files import VGGFACE2_WEIGHTS_ENV, WEIGHT_FILES, WeightsError, resolve_model


@pytest.fixture
def image_without_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME, as in the image, and the image's marker that the weights were left out."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(VGGFACE2_WEIGHTS_ENV, "absent")
    return tmp_path


def test_facenet_vggface2_is_refused_naming_the_fixes(image_without_weights: Path) -> None:
    with pytest.raises(WeightsError) as refused:
        resolve_model(Hyperparameters(), None)  # the defaults: embedder=facenet, weights=vggface2
    message = str(refused.value)
    assert message.startswith("embedder=facenet with weights=vggface2 cannot run in this image")
    assert "built without the vggface2 weights" in message
    assert "rebuild the image with the weights" in message
    assert f"'weights' channel holding {WEIGHT_FILES['vggface2']}" in message
    assert "embedder=dlib-resnet" in message


def test_a_weights_channel_still_serves_in_that_image(image_without_weights: Path) -> None:
    channel = image_without_weights / "weights"
    channel.mkdir()
    (channel / WEIGHT_FILES["vggface2"]).write_bytes(b"weights from the channel")
    choice = resolve_model(Hyperparameters(), channel)
    assert choice.path("weights") == channel / WEIGHT_FILES["vggface2"]


def test_outside_such_an_image_the_general_message_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(VGGFACE2_WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsError, match="was not found") as refused:
        resolve_model(Hyperparameters(), None)
    assert "cannot run in this image" not in str(refused.value)
