"""facetrain.inference.mtcnn's steps against the facenet-pytorch / torchvision functions they mirror, on the
same inputs: resampling bit for bit, NMS index for index, box arithmetic exactly (float32 in the same
order). The whole detector's parity on real photos is tests/container/test_onnx_parity.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


def detection_copy(path, side: int = 512) -> np.ndarray:
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    image.thumbnail((side, side))
    return np.asarray(image)


def random_boxes(
    rng: np.random.Generator, count: int, extent: float = 200.0
) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping float32 boxes of 10-60 px and distinct scores (no ties: torch's sort is not stable)."""
    corner = rng.uniform(0, extent, size=(count, 2))
    side = rng.uniform(10, 60, size=(count, 2))
    boxes = np.concatenate([corner, corner + side], axis=1).astype(np.float32)
    scores = rng.permutation(count).astype(np.float32) / count + np.float32(0.001)
    return boxes, scores


def test_area_resampling_is_torchs_bit_for_bit(shared_data):
    from facenet_pytorch.models.utils.detect_face import imresample
    from facetrain.inference.mtcnn import area_resample, integral_image, pyramid_level, scale_pyramid

    image = detection_copy(shared_data / "edge-cases" / "multiface.jpg")
    height, width = image.shape[:2]
    table = integral_image(image)
    reference = torch.as_tensor(image[None].copy()).permute(0, 3, 1, 2).float()  # as detect_face prepares it
    levels = scale_pyramid(height, width, 20)
    assert len(levels) > 5
    for scale in levels:
        size = (int(height * scale + 1), int(width * scale + 1))
        expected = imresample(reference, size).numpy()
        np.testing.assert_array_equal(pyramid_level(table, *size), expected)
        whole = area_resample(
            table, np.array([0]), np.array([0]), np.array([height]), np.array([width]), *size
        )
        np.testing.assert_array_equal(whole, expected)
    # crops, shrunk and enlarged, as the R-Net and O-Net stages take them
    for top, bottom, left, right, side in (
        (10, 90, 20, 100, 24),
        (5, 30, 7, 29, 48),
        (100, 260, 50, 260, 48),
        (0, 11, 0, 9, 24),
    ):
        expected = imresample(reference[:, :, top:bottom, left:right], (side, side)).numpy()
        got = area_resample(
            table,
            np.array([top]),
            np.array([left]),
            np.array([bottom - top]),
            np.array([right - left]),
            side,
            side,
        )
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_nms_keeps_what_torchvision_keeps(threshold):
    from facetrain.inference.mtcnn import nms
    from torchvision.ops import nms as torchvision_nms

    rng = np.random.default_rng(28)
    for count in (1, 7, 300):
        boxes, scores = random_boxes(rng, count)
        expected = torchvision_nms(torch.as_tensor(boxes), torch.as_tensor(scores), threshold).numpy()
        got = nms(boxes, scores, threshold)
        assert len(got) > 0 and (count < 50 or len(got) < count)  # overlapping boxes: some suppressed
        np.testing.assert_array_equal(got, expected)


def test_min_nms_is_detect_faces_final_nms():
    from facenet_pytorch.models.utils.detect_face import nms_numpy
    from facetrain.inference.mtcnn import nms_min

    rng = np.random.default_rng(2028)
    boxes, scores = random_boxes(rng, 120)
    expected = nms_numpy(boxes, scores, 0.7, "Min")
    got = nms_min(boxes, scores, 0.7)
    assert len(got) < len(boxes)
    np.testing.assert_array_equal(got, expected)


def test_box_steps_are_detect_faces_own():
    from facenet_pytorch.models.utils import detect_face as reference
    from facetrain.inference.mtcnn import candidate_boxes, crop_ranges, regress, square

    rng = np.random.default_rng(7)
    # P-Net's outputs over a 40 x 50 level: probabilities around the threshold, regressions in [-0.3, 0.3]
    face = rng.uniform(0.3, 1.0, size=(1, 40, 50)).astype(np.float32)
    probabilities = np.stack([1 - face, face], axis=1)
    regression = rng.uniform(-0.3, 0.3, size=(1, 4, 40, 50)).astype(np.float32)
    scale = 0.6 * 0.709**3
    expected, _ = reference.generateBoundingBox(
        torch.as_tensor(regression), torch.as_tensor(probabilities)[:, 1], scale, 0.6
    )
    got = candidate_boxes(regression, probabilities, scale, 0.6)
    np.testing.assert_array_equal(got, expected.numpy())

    boxes = got[:, :5].copy()
    np.testing.assert_array_equal(square(boxes), reference.rerec(torch.as_tensor(boxes.copy())).numpy())
    offsets = got[:, 5:9]
    np.testing.assert_array_equal(
        regress(boxes, offsets),
        reference.bbreg(torch.as_tensor(boxes.copy()), torch.as_tensor(offsets)).numpy(),
    )
    shifted = boxes.copy()
    shifted[:, :4] = shifted[:, :4] * 3 - 40  # some beyond every edge of a 200 x 150 image
    for mine, theirs in zip(
        crop_ranges(shifted, 200, 150), reference.pad(torch.as_tensor(shifted), 200, 150), strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("margin", [0, 20, 44])
def test_face_crop_is_extract_face_then_fixed_image_standardization(shared_data, margin):
    from facenet_pytorch.models.mtcnn import fixed_image_standardization
    from facenet_pytorch.models.utils.detect_face import extract_face
    from facetrain.inference.facenet import face_crop

    with Image.open(shared_data / "edge-cases" / "multiface.jpg") as opened:
        image = opened.convert("RGB")
    # inside the photo, over its left/top edge, over its right/bottom edge (fractional, as MTCNN's are)
    boxes = ([100.4, 80.7, 220.2, 230.9], [-12.6, -5.3, 60.1, 70.8], [1150.5, 560.2, 1230.7, 660.4])
    for size in (160, 112):
        for box in boxes:
            expected = fixed_image_standardization(extract_face(image, np.array(box), size, margin)).numpy()
            np.testing.assert_array_equal(
                face_crop(image, box, size, margin), expected, err_msg=f"{box} {size}"
            )
