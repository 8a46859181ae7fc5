"""torch vs ONNX Runtime, stage by stage, on the same photos in the same process (issue 28's micro-benchmark).

The networks are exported from facenet-pytorch (`facetrain.inference.export`, random InceptionResnetV1
weights as weights=none); photos are decoded as the job decodes them, outside the timings. Per round,
each runtime (in alternating order) detects every photo (facenet-pytorch's MTCNN.detect vs
facetrain.inference.mtcnn.detect_faces; P-Net, R-Net and O-Net time measured around each network call,
the rest is the glue: resampling, NMS, boxes), then crops and embeds the selected faces in batches of 16.
Both runtimes get the same threads (`--threads`, default the cores this process may use). Prints the
medians over the rounds per stage, photos/s for the whole photo (detect + crop + embed), and the ratio;
then, as fresh processes alternating, one photo examined from process start to exit (runtime=torch vs
runtime=onnx) and each runtime's import (`import torch, torchvision, facenet_pytorch` vs `import
onnxruntime`).

Run: .venv/bin/python benchmarks/bench_onnx_stages.py [--images ../shared/data/faces-dev] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.cpu_threads import usable_cores
from facetrain.inference.export import export_models
from facetrain.inference.facenet import embed_crops, face_crop
from facetrain.inference.faces import DetectedFace, FaceEncoder, _largest, crop_source
from facetrain.inference.model_files import resolve_model
from facetrain.inference.mtcnn import MtcnnNetworks, detect_faces
from facetrain.inference.onnx_models import OnnxModels, load_models
from facetrain.inference.runtimes import open_encoder
from facetrain.photos import DecodedPhoto, decode_photo
from photo_sets import photos_of

REPO = Path(__file__).resolve().parents[1]
MAX_PIXELS = 89_478_485
BATCH = 16
STAGES = ("pnet", "rnet", "onet", "glue", "detect", "crop", "embed", "whole")


class Clock:
    """Seconds accumulated per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, stage: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        return run


class TimedModule(torch.nn.Module):
    """A facenet-pytorch network whose forward passes are timed (detect_face reads its parameters)."""

    def __init__(self, network: torch.nn.Module, clock: Clock, stage: str) -> None:
        super().__init__()
        self.network = network
        self.forward = clock.timed(stage, network.forward)  # type: ignore[method-assign]


def face_of(photo: DecodedPhoto, boxes: np.ndarray, probabilities: np.ndarray) -> DetectedFace:
    index = _largest(boxes)
    box = tuple(float(v) * photo.detection_scale for v in boxes[index])
    return DetectedFace(box=box, probability=float(probabilities[index]), faces_found=len(boxes))  # type: ignore[arg-type]


def run_torch(
    encoder: FaceEncoder, photos: list[DecodedPhoto], settings: Hyperparameters
) -> dict[str, float]:
    clock = Clock()
    detector = encoder.detector.mtcnn  # type: ignore[attr-defined]  (runtime=torch: facenet-pytorch's MTCNN)
    originals = detector.pnet, detector.rnet, detector.onet
    detector.pnet, detector.rnet, detector.onet = (
        TimedModule(net, clock, stage) for net, stage in zip(originals, ("pnet", "rnet", "onet"), strict=True)
    )
    try:
        started = time.perf_counter()
        crops = []
        with torch.inference_mode():
            for photo in photos:
                boxes, probabilities = clock.timed("detect", detector.detect)(photo.detection_image)
                if boxes is None:
                    continue
                face = face_of(photo, boxes, np.asarray(probabilities, np.float64))
                crops.append(clock.timed("crop", encoder.crop)(photo, face))
            for i in range(0, len(crops), BATCH):
                clock.timed("embed", encoder.embed)(crops[i : i + BATCH])
        clock.seconds["whole"] = time.perf_counter() - started
    finally:
        detector.pnet, detector.rnet, detector.onet = originals
    return dict(clock.seconds)


def run_onnx(models: OnnxModels, photos: list[DecodedPhoto], settings: Hyperparameters) -> dict[str, float]:
    clock = Clock()
    networks = MtcnnNetworks(
        pnet=clock.timed("pnet", models.mtcnn.pnet),
        rnet=clock.timed("rnet", models.mtcnn.rnet),
        onet=clock.timed("onet", models.mtcnn.onet),
    )

    def crop(photo: DecodedPhoto, face: DetectedFace) -> np.ndarray:
        source, scale = crop_source(photo, face, settings.image_size, settings.max_image_pixels)
        return face_crop(source, np.array(face.box) / scale, settings.image_size, settings.margin)

    started = time.perf_counter()
    crops = []
    for photo in photos:
        image = np.asarray(photo.detection_image)
        found = clock.timed("detect", detect_faces)(
            image, networks, settings.min_face_size, settings.detection_thresholds
        )
        if len(found.boxes) == 0:
            continue
        crops.append(clock.timed("crop", crop)(photo, face_of(photo, found.boxes, found.probabilities)))
    for i in range(0, len(crops), BATCH):
        clock.timed("embed", embed_crops)(models.facenet, crops[i : i + BATCH])
    clock.seconds["whole"] = time.perf_counter() - started
    return dict(clock.seconds)


# One photo examined (decoded, detected, cropped, embedded) by a fresh process: argv = photo, ONNX folder.
FIRST_PHOTO = {
    "torch": """
import sys
from pathlib import Path
from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.inference.runtimes import open_encoder, resolve_models
from facetrain.photos import decode_photo
settings = Hyperparameters(weights="none", runtime="torch")
encoder = open_encoder(settings, resolve_models(settings, None), "cpu")
photo = decode_photo(Path(sys.argv[1]), 89478485, 512, 20)
encoder.embed([encoder.crop(photo, encoder.detect(photo))])
""",
    "onnx": """
import sys
from pathlib import Path
import numpy as np
from facetrain.inference.facenet import embed_crops, face_crop
from facetrain.inference.mtcnn import detect_faces
from facetrain.inference.onnx_models import load_models
from facetrain.photos import decode_photo
models = load_models(Path(sys.argv[2]), "cpu")
photo = decode_photo(Path(sys.argv[1]), 89478485, 512, 20)
found = detect_faces(np.asarray(photo.detection_image), models.mtcnn)
box = found.boxes[0] * photo.detection_scale / photo.crop_scale  # the decoded image: no re-decode here
embed_crops(models.facenet, [face_crop(photo.crop_image, box)])
""",
}


def process_seconds(arguments: list[str]) -> float:
    """Wall seconds of a fresh process of this interpreter, start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], check=True)  # noqa: S603 (this interpreter, our programs)
    return time.perf_counter() - started


def alternating(rounds: int, measure: Callable[[str], float]) -> dict[str, float]:
    """Median of `measure(runtime)` over the rounds, torch and onnx alternating which goes first."""
    seconds: dict[str, list[float]] = {"torch": [], "onnx": []}
    for index in range(rounds):
        for runtime in ("torch", "onnx") if index % 2 == 0 else ("onnx", "torch"):
            seconds[runtime].append(measure(runtime))
    return {runtime: statistics.median(values) for runtime, values in seconds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "faces-dev")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = Hyperparameters(weights="none", seed=0, runtime="torch")
    model = resolve_model(settings, None)
    paths = photos_of(args.images)[: args.limit]
    photos = [decode_photo(p, MAX_PIXELS, settings.detection_max_side, settings.min_face_size) for p in paths]
    encoder = open_encoder(settings, model, "cpu")
    torch.set_num_threads(args.threads)  # open_encoder sets the usable cores; --threads wins
    with tempfile.TemporaryDirectory() as folder:
        export_models(Path(folder), model, settings.seed)
        models = load_models(Path(folder), "cpu", threads=args.threads)
        run_torch(encoder, photos[:2], settings), run_onnx(models, photos[:2], settings)  # warm-up
        rounds: dict[str, list[dict[str, float]]] = {"torch": [], "onnx": []}
        for index in range(args.rounds):
            order = ("torch", "onnx") if index % 2 == 0 else ("onnx", "torch")
            for runtime in order:
                run = (
                    run_torch(encoder, photos, settings)
                    if runtime == "torch"
                    else run_onnx(models, photos, settings)
                )
                run["glue"] = run["detect"] - run.get("pnet", 0) - run.get("rnet", 0) - run.get("onet", 0)
                rounds[runtime].append(run)
        first = alternating(
            args.rounds, lambda runtime: process_seconds(["-c", FIRST_PHOTO[runtime], str(paths[0]), folder])
        )
    print(
        f"{len(photos)} photos from {args.images}, {args.rounds} rounds alternating, {args.threads} threads"
    )
    print(f"{'stage (s, median)':<20}{'torch':>10}{'onnx':>10}{'torch/onnx':>12}")
    for stage in STAGES:
        t = statistics.median(r.get(stage, 0.0) for r in rounds["torch"])
        o = statistics.median(r.get(stage, 0.0) for r in rounds["onnx"])
        print(f"{stage:<20}{t:>10.3f}{o:>10.3f}{(t / o if o else float('nan')):>11.2f}x")
    t_rate = [len(photos) / r["whole"] for r in rounds["torch"]]
    o_rate = [len(photos) / r["whole"] for r in rounds["onnx"]]
    print(
        f"whole photo, photos/s: torch {statistics.median(t_rate):.2f}, onnx {statistics.median(o_rate):.2f} "
        f"(per round ratio: {', '.join(f'{o / t:.2f}x' for t, o in zip(t_rate, o_rate, strict=True))})"
    )
    print(
        f"one photo examined by a fresh process, start to exit (s, median): torch {first['torch']:.2f}, "
        f"onnx {first['onnx']:.2f} ({first['torch'] / first['onnx']:.2f}x)"
    )
    statements = {"torch": "import torch, torchvision, facenet_pytorch", "onnx": "import onnxruntime"}
    imports = alternating(args.rounds, lambda runtime: process_seconds(["-c", statements[runtime]]))
    print(
        f"import as a fresh process (s, median): torch+torchvision+facenet_pytorch {imports['torch']:.2f}, "
        f"onnxruntime {imports['onnx']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
