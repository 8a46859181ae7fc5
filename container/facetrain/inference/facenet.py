"""facenet's face crop and embedding without torch: the crop facenet-pytorch's `extract_face` takes (Pillow
crop and bilinear resize, margin in crop pixels), `fixed_image_standardization`, and InceptionResnetV1
run by any runtime (ONNX Runtime in the job), embeddings L2-normalised as the torch path normalises them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

FaceNetwork = Callable[[np.ndarray], Sequence[np.ndarray]]


def crop_box(
    box: Sequence[float], image_size: int, margin: float, width: int, height: int
) -> tuple[int, ...]:
    """extract_face's crop rectangle (left, top, right, bottom) in pixels of an image of width x height:
    the box widened by `margin` crop pixels, truncated to integers and clipped to the image."""
    margin_x = margin * (box[2] - box[0]) / (image_size - margin)
    margin_y = margin * (box[3] - box[1]) / (image_size - margin)
    return (
        int(max(box[0] - margin_x / 2, 0)),
        int(max(box[1] - margin_y / 2, 0)),
        int(min(box[2] + margin_x / 2, width)),
        int(min(box[3] + margin_y / 2, height)),
    )


def face_crop(
    image: Image.Image, box: Sequence[float], image_size: int = 160, margin: float = 0
) -> np.ndarray:
    """The standardized 3 x image_size x image_size float32 crop of `box` in `image` (facenet-pytorch's
    extract_face, then fixed_image_standardization: (pixel - 127.5) / 128)."""
    rect = crop_box(box, image_size, margin, image.width, image.height)
    face = image.crop(rect).copy().resize((image_size, image_size), Image.BILINEAR)
    pixels = np.float32(face).transpose(2, 0, 1)
    return np.ascontiguousarray((pixels - np.float32(127.5)) / np.float32(128.0))


def embed_crops(network: FaceNetwork, crops: Sequence[np.ndarray]) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per crop (torch's F.normalize: norm floored at 1e-12)."""
    vectors = np.asarray(network(np.stack(crops))[0], dtype=np.float32)
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.float32(1e-12))
    return (vectors / norms).astype(np.float32)
