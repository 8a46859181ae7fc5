"""The plain facenet-pytorch loop the job is measured against (run as its own process by bench_job.py).

Per photo: open it, `mtcnn(img)`, then `resnet(face.unsqueeze(0))` — facenet-pytorch's README recipe.
Prints one JSON line: photos, accepted keys, seconds (whole and photo loop).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from facenet_pytorch import MTCNN, InceptionResnetV1
from PIL import Image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", type=Path, help="folder of <identity>/<photo> files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    mtcnn = MTCNN(image_size=160, margin=0, device=args.device)
    # Random weights, as the job's weights=none: vggface2 cannot be fetched here (same cost either way).
    resnet = InceptionResnetV1(pretrained=None, device=args.device).eval()
    paths = sorted(p for p in args.images.rglob("*") if p.is_file() and not p.name.startswith("."))
    accepted: list[str] = []
    loop_started = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            img = Image.open(path).convert("RGB")
            face = mtcnn(img)
            if face is None:
                continue
            resnet(face.unsqueeze(0).to(args.device)).cpu()
            accepted.append(path.relative_to(args.images).as_posix())
    finished = time.perf_counter()
    print(
        json.dumps(
            {
                "photos": len(paths),
                "accepted": accepted,
                "seconds": finished - started,
                "loop_seconds": finished - loop_started,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
