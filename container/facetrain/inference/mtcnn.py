"""MTCNN face detection in numpy: facenet-pytorch's `detect_face` glue around any runtime's P/R/O-Net.

This mirrors `facenet_pytorch.models.utils.detect_face.detect_face` (facenet-pytorch 2.5.3) step by step,
for one image: the scale pyramid, `imresample` (torch's interpolate mode="area", i.e. adaptive average
pooling), `generateBoundingBox`, torchvision's `batched_nms` (IoU, boxes above the threshold suppressed)
per scale and over all scales, the box regression (`bbreg`), squaring (`rerec`), `pad`, the R-Net and O-Net
stages, the landmarks and the final "Min" NMS (`nms_numpy`); then `MTCNN.detect`'s largest-first order.
The arithmetic is float32 in the same order as torch's, so that the same networks give the same boxes.

Why hand-written: the job must detect without torch and torchvision (their import alone costs seconds,
and their CUDA 13 build the GPU hosts' drivers may not run), and no maintained numpy MTCNN reproduces
facenet-pytorch's: the `mtcnn` package on PyPI runs on TensorFlow and resizes with OpenCV, not torch's
area interpolation, and rounds boxes its own way, so its boxes would differ from the torch path's and
every stored embedding would change. Parity with the torch path is tested on real
photos (tests/container/test_onnx_parity.py).

Deliberate differences, none reachable from facenet-pytorch's successful answers: the NMS sorts scores
with a stable sort (torch's sort is not stable, so among exactly equal scores the order torch picks is
not reproducible anyway); a candidate box wholly outside the image is dropped with its scores, where
facenet-pytorch skips its crop and then fails on a shape mismatch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# facenet-pytorch's constants (detect_face, MTCNN defaults)
PYRAMID_FACTOR = 0.709
PNET_STRIDE = 2
PNET_CELL = 12
RNET_SIDE = 24
ONET_SIDE = 48
NMS_PER_SCALE = 0.5
NMS_STAGE = 0.7
NMS_FINAL_MIN = 0.7
NETWORK_BATCH = 512  # fixed_batch_process: R-Net and O-Net run on at most 512 crops at a time

# A network: float32 NCHW batch in, its outputs in the torch module's return order.
Network = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass(frozen=True)
class MtcnnNetworks:
    """P-Net ((regression, probabilities) over a whole pyramid level), R-Net ((regression,
    probabilities) of 24 px crops) and O-Net ((regression, landmarks, probabilities) of 48 px crops)."""

    pnet: Network
    rnet: Network
    onet: Network


@dataclass(frozen=True)
class Detections:
    """MTCNN.detect's answer for one image, largest box first: boxes [x1, y1, x2, y2] (float32, image
    pixels), their probabilities, and 5 landmarks (x, y) per face. Empty arrays when no face is found."""

    boxes: np.ndarray  # (n, 4) float32
    probabilities: np.ndarray  # (n,) float32
    landmarks: np.ndarray  # (n, 5, 2) float32


def integral_image(image: np.ndarray) -> np.ndarray:
    """Summed-area table of an H x W x 3 uint8 image, channels first: 3 x (H+1) x (W+1) with a zero first
    row and column (int32, or int64 for an image too large for int32 sums)."""
    height, width = image.shape[:2]
    dtype = np.int32 if height * width * 255 < 2**31 else np.int64
    table = np.zeros((image.shape[2], height + 1, width + 1), dtype=dtype)
    np.cumsum(np.cumsum(image.transpose(2, 0, 1), axis=1, dtype=dtype), axis=2, out=table[:, 1:, 1:])
    return table


def _bins(start: np.ndarray, length: np.ndarray, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive pooling's input ranges (ATen's start_index/end_index: floor(i*L/n), ceil((i+1)*L/n)) for
    each of `out_size` outputs over ranges [start, start+length); arrays of shape (k, out_size)."""
    i = np.arange(out_size, dtype=np.int64)[None, :]
    length = length.astype(np.int64)[:, None]
    first = (i * length) // out_size
    last = -((-(i + 1) * length) // out_size)
    return start.astype(np.int64)[:, None] + first, start.astype(np.int64)[:, None] + last


def _means(sums: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Bin sums divided as ATen's adaptive average pooling divides them: sum / kh / kw, in float32. The
    sums are exact integers (below 2**24 for every bin of a detection copy, so exact in float32 too)."""
    return sums.astype(np.float32) / rows.astype(np.float32) / columns.astype(np.float32)


def pyramid_level(table: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """torch's interpolate(mode="area") of the whole image to out_h x out_w: float32 (1, 3, out_h, out_w).
    The bins of a whole-image resize are a grid, so rows and columns are gathered separately."""
    height, width = table.shape[1] - 1, table.shape[2] - 1
    r0, r1 = (b[0] for b in _bins(np.zeros(1), np.array([height]), out_h))
    c0, c1 = (b[0] for b in _bins(np.zeros(1), np.array([width]), out_w))
    bottom, top = np.take(table, r1, axis=1), np.take(table, r0, axis=1)
    sums = (
        np.take(bottom, c1, axis=2)
        - np.take(top, c1, axis=2)
        - np.take(bottom, c0, axis=2)
        + np.take(top, c0, axis=2)
    )
    return _means(sums, (r1 - r0)[:, None], (c1 - c0)[None, :])[None]


def area_resample(
    table: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    height: np.ndarray,
    width: np.ndarray,
    out_h: int,
    out_w: int,
) -> np.ndarray:
    """torch's interpolate(mode="area") (adaptive average pooling) of k regions of the image whose
    summed-area table is `table`, each resized to out_h x out_w: float32 (k, 3, out_h, out_w)."""
    r0, r1 = _bins(top, height, out_h)
    c0, c1 = _bins(left, width, out_w)
    a, b = r0[:, :, None], r1[:, :, None]
    c, d = c0[:, None, :], c1[:, None, :]
    sums = table[:, b, d] - table[:, a, d] - table[:, b, c] + table[:, a, c]  # (3, k, out_h, out_w)
    means = _means(sums, (r1 - r0)[None, :, :, None], (c1 - c0)[None, :, None, :])
    return np.ascontiguousarray(means.transpose(1, 0, 2, 3))


def scale_pyramid(
    height: int, width: int, min_face_size: float, factor: float = PYRAMID_FACTOR
) -> list[float]:
    """detect_face's scales: from 12/min_face_size down by `factor` while the shorter side stays >= 12."""
    m = 12.0 / min_face_size
    shorter = min(height, width) * m
    scales = []
    scale = m
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.nms on CPU: indices kept, highest score first; a box whose IoU (areas without the +1)
    with a kept one is above `threshold` is suppressed. float32 arithmetic, the threshold compared in
    double, as torchvision's kernel does."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i], dtype=np.float32) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    zero = np.float32(0)
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[position + 1 :]
        rest = rest[~suppressed[rest]]
        if len(rest) == 0:
            continue
        w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[overlap.astype(np.float64) > threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """detect_face's `nms_numpy(..., 'Min')` (its final NMS): overlap over the smaller area, +1 areas,
    boxes kept while their overlap is <= `threshold`; the same numpy operations in the same order."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0].copy(), boxes[:, 1].copy(), boxes[:, 2].copy(), boxes[:, 3].copy()
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    pick = []
    while order.size > 0:
        i = order[-1]
        pick.append(i)
        rest = order[0:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = (w * h) / np.minimum(area[i], area[rest])
        order = order[np.where(overlap <= threshold)]
    return np.asarray(pick, dtype=np.int64)


def candidate_boxes(
    regression: np.ndarray, probabilities: np.ndarray, scale: float, threshold: float
) -> np.ndarray:
    """detect_face's generateBoundingBox for one image: a row [x1, y1, x2, y2, score, 4 regressions] per
    P-Net cell whose face probability is >= threshold (float32, row-major cell order)."""
    face = probabilities[0, 1]
    ys, xs = np.nonzero(face >= np.float32(threshold))
    cells = np.stack([xs, ys], axis=1).astype(np.float32)
    scale32 = np.float32(scale)
    q1 = np.floor((PNET_STRIDE * cells + 1) / scale32)
    q2 = np.floor((PNET_STRIDE * cells + PNET_CELL - 1 + 1) / scale32)
    offsets = regression[0][:, ys, xs].T
    return np.concatenate([q1, q2, face[ys, xs][:, None], offsets], axis=1).astype(np.float32)


def square(boxes: np.ndarray) -> np.ndarray:
    """detect_face's rerec: each box made square around its centre, on its longer side (a new array)."""
    boxes = boxes.copy()
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 1] = boxes[:, 1] + h * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """detect_face's bbreg: the boxes moved by the network's regression, in units of (side + 1)."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0] = boxes[:, 0] + offsets[:, 0] * w
    boxes[:, 1] = boxes[:, 1] + offsets[:, 1] * h
    boxes[:, 2] = boxes[:, 2] + offsets[:, 2] * w
    boxes[:, 3] = boxes[:, 3] + offsets[:, 3] * h
    return boxes


def crop_ranges(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """detect_face's pad: boxes truncated to integers and clipped to the image, as (y, ey, x, ex) with the
    crop being rows y-1 .. ey-1 and columns x-1 .. ex-1."""
    ints = np.trunc(boxes[:, :4]).astype(np.int32)
    x, y, ex, ey = ints[:, 0], ints[:, 1], ints[:, 2], ints[:, 3]
    x[x < 1] = 1
    y[y < 1] = 1
    ex[ex > width] = width
    ey[ey > height] = height
    return y, ey, x, ex


def _crops(table: np.ndarray, boxes: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The boxes' image regions resampled to side x side and normalised as detect_face does, and the mask
    of boxes that have a region (see the module's note)."""
    height, width = table.shape[1] - 1, table.shape[2] - 1
    y, ey, x, ex = crop_ranges(boxes, width, height)
    usable = (ey > y - 1) & (ex > x - 1)
    y, ey, x, ex = y[usable], ey[usable], x[usable], ex[usable]
    crops = area_resample(table, y - 1, x - 1, ey - y + 1, ex - x + 1, side, side)
    return (crops - np.float32(127.5)) * np.float32(0.0078125), usable


def _in_batches(network: Network, crops: np.ndarray) -> list[np.ndarray]:
    """detect_face's fixed_batch_process: the network on at most NETWORK_BATCH crops at a time."""
    parts = [network(crops[i : i + NETWORK_BATCH]) for i in range(0, len(crops), NETWORK_BATCH)]
    return [np.concatenate(outputs, axis=0) for outputs in zip(*parts, strict=True)]


def detect_faces(
    image: np.ndarray,
    networks: MtcnnNetworks,
    min_face_size: float = 20,
    thresholds: Sequence[float] = (0.6, 0.7, 0.7),
    factor: float = PYRAMID_FACTOR,
) -> Detections:
    """MTCNN on one H x W x 3 uint8 RGB image: facenet-pytorch's detect_face followed by MTCNN.detect's
    ordering (largest box first)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"detect_faces takes an H x W x 3 uint8 RGB image, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    table = integral_image(image)

    # First stage: P-Net over the pyramid, NMS per scale, then over all scales.
    per_scale = []
    for scale in scale_pyramid(height, width, min_face_size, factor):
        level = pyramid_level(table, int(height * scale + 1), int(width * scale + 1))
        regression, probabilities = networks.pnet((level - np.float32(127.5)) * np.float32(0.0078125))[:2]
        boxes = candidate_boxes(regression, probabilities, scale, thresholds[0])
        per_scale.append(boxes[nms(boxes[:, :4], boxes[:, 4], NMS_PER_SCALE)])
    boxes = np.concatenate(per_scale, axis=0) if per_scale else np.zeros((0, 9), dtype=np.float32)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], NMS_STAGE)]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    boxes = np.stack(
        [
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ],
        axis=1,
    )
    boxes = square(boxes)

    # Second stage: R-Net on 24 px crops.
    if len(boxes) > 0:
        crops, usable = _crops(table, boxes, RNET_SIDE)
        boxes = boxes[usable]
        regression, probabilities = _in_batches(networks.rnet, crops)[:2]
        score = probabilities[:, 1]
        passed = score > np.float32(thresholds[1])
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        offsets = regression[passed]
        pick = nms(boxes[:, :4], boxes[:, 4], NMS_STAGE)
        boxes = square(regress(boxes[pick], offsets[pick]))

    # Third stage: O-Net on 48 px crops, landmarks, the final "Min" NMS.
    landmarks = np.zeros((0, 5, 2), dtype=np.float32)
    if len(boxes) > 0:
        crops, usable = _crops(table, boxes, ONET_SIDE)
        boxes = boxes[usable]
        regression, points, probabilities = _in_batches(networks.onet, crops)[:3]
        score = probabilities[:, 1]
        passed = score > np.float32(thresholds[2])
        points = points[passed]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        offsets = regression[passed]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w[:, None] * points[:, :5] + boxes[:, 0, None] - 1
        points_y = h[:, None] * points[:, 5:10] + boxes[:, 1, None] - 1
        landmarks = np.stack([points_x, points_y], axis=2)
        boxes = regress(boxes, offsets)
        pick = nms_min(boxes[:, :4], boxes[:, 4], NMS_FINAL_MIN)
        boxes, landmarks = boxes[pick], landmarks[pick]

    # MTCNN.detect (select_largest=True): largest box first.
    order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
    boxes, landmarks = boxes[order], landmarks[order]
    return Detections(
        boxes=np.ascontiguousarray(boxes[:, :4], dtype=np.float32),
        probabilities=np.ascontiguousarray(boxes[:, 4], dtype=np.float32),
        landmarks=np.ascontiguousarray(landmarks, dtype=np.float32),
    )
