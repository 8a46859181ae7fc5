"""Export facenet-pytorch's P-Net, R-Net, O-Net and InceptionResnetV1 to ONNX, recording each file's sha256.

The networks are facenet-pytorch's own modules with its own weights (P/R/O-Net ship inside the package;
InceptionResnetV1 takes the `weights` setting's file, or the seeded random init of `weights=none` that the
torch path makes, `facetrain.faces.load_facenet`). Batch is dynamic for every network, and P-Net's height
and width too (it runs over the image pyramid). The manifest (`manifest.json` beside the files) records
each file's name, role and sha256 (as `model_files.ModelFile` does), and what it was made from.

Run: `python -m facetrain.inference.export OUT_DIR [--weights none|vggface2|casia-webface|FILE.pt]
[--seed N]`. This module imports torch: it runs where torch is (a build stage, a dev venv), never in the job.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

from ..contract.hyperparameters import FACENET, Hyperparameters
from ..faces import load_facenet
from ..model_files import ModelChoice, ModelFile, WeightsError, resolve_model, sha256_file
from .manifest import MANIFEST, MANIFEST_FORMAT

# The ONNX opset exported; ONNX Runtime >= 1.17 runs it.
OPSET = 17
# role → (file name, input name, output names). Output order is the torch modules' return order.
PNET = ("pnet.onnx", "image", ("regression", "probabilities"))
RNET = ("rnet.onnx", "crops", ("regression", "probabilities"))
ONET = ("onet.onnx", "crops", ("regression", "landmarks", "probabilities"))
FACENET_OUTPUTS = ("embedding",)


class ExportError(RuntimeError):
    """The export cannot run here (a package it needs is missing)."""


@dataclass(frozen=True)
class ExportedModels:
    """The exported files (roles `pnet`, `rnet`, `onet`, `facenet`) and the manifest that records them."""

    folder: Path
    files: tuple[ModelFile, ...]
    manifest: Path


def facenet_file_name(model: ModelChoice, seed: int) -> str:
    """The InceptionResnetV1 file's name: the weights' sha256 prefix, or the seed for random weights."""
    if model.sha256 is None:
        return f"inception_resnet_v1-random-seed{seed}.onnx"
    return f"inception_resnet_v1-{model.sha256[:16]}.onnx"


def _export(
    network: torch.nn.Module,
    side: int,
    path: Path,
    input_name: str,
    output_names: tuple[str, ...],
    spatial: bool,
) -> None:
    """Export one network with a dynamic batch (and, `spatial`, a dynamic height and width: P-Net's output
    grid has its own, smaller, height and width)."""
    inputs = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
    outputs = {0: "batch", 2: "grid_height", 3: "grid_width"} if spatial else {0: "batch"}
    # dynamo=False: the TorchScript exporter, which needs nothing beyond torch (the dynamo exporter needs
    # onnxscript) and exports these plain convolutional networks op for op; torch deprecates it but ships it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        torch.onnx.export(
            network.eval(),
            (torch.zeros(2, 3, side, side),),
            str(path),
            dynamo=False,
            input_names=[input_name],
            output_names=list(output_names),
            opset_version=OPSET,
            dynamic_axes={input_name: inputs, **{name: outputs for name in output_names}},
            do_constant_folding=True,
        )


def export_models(out_dir: Path, model: ModelChoice, seed: int = 0) -> ExportedModels:
    """Export the four networks into `out_dir` (created) and write its manifest; raise WeightsError for an
    unusable weights file, ExportError when the `onnx` package is missing. `model` is the facenet choice
    (`model_files.resolve_model`), `seed` the random init's for `weights=none`."""
    if model.embedder != FACENET:
        raise WeightsError(f"only facenet's InceptionResnetV1 is exported to ONNX, not {model.embedder}")
    try:
        import onnx  # noqa: F401  torch's exporter writes the file with it
    except ImportError:
        raise ExportError(
            "the ONNX export needs the Python package onnx (torch's exporter serialises with it): "
            "`make setup` installs it (or: pip install onnx)"
        ) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[ModelFile] = []
    with torch.no_grad():
        for role, network, (name, input_name, outputs), side in (
            ("pnet", PNet(), PNET, 64),
            ("rnet", RNet(), RNET, 24),
            ("onet", ONet(), ONET, 48),
        ):
            path = out_dir / name
            _export(network, side, path, input_name, outputs, spatial=role == "pnet")
            files.append(ModelFile(role, path, sha256_file(path)))
        path = out_dir / facenet_file_name(model, seed)
        _export(
            load_facenet(model, seed, torch.device("cpu")), 160, path, "faces", FACENET_OUTPUTS, spatial=False
        )
        files.append(ModelFile("facenet", path, sha256_file(path)))
    manifest = out_dir / MANIFEST
    document = {
        "format": MANIFEST_FORMAT,
        "files": [{"role": f.role, "name": f.path.name, "sha256": f.sha256} for f in files],
        "made_from": {
            "facenet_weights": model.label,
            "facenet_weights_sha256": model.sha256,
            "seed": seed if model.sha256 is None else None,
            "torch": torch.__version__,
            "facenet_pytorch": _version("facenet-pytorch"),
            "opset": OPSET,
        },
    }
    manifest.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return ExportedModels(out_dir, tuple(files), manifest)


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facetrain.inference.export",
        description="Export facenet-pytorch's MTCNN networks and InceptionResnetV1 to ONNX.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write the .onnx files and manifest.json into")
    parser.add_argument(
        "--weights",
        default="vggface2",
        help="InceptionResnetV1's weights: vggface2 (default), casia-webface, a .pt file, "
        "or none (random init from --seed: tests only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init for --weights none")
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="a folder to look for the weights file in first (as the job's weights channel)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Hyperparameters(embedder=FACENET, weights=args.weights, seed=args.seed)
        model = resolve_model(settings, args.weights_dir)
        exported = export_models(args.out_dir, model, args.seed)
    except (WeightsError, ExportError, ValueError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 2
    for file in exported.files:
        print(f"{file.sha256}  {file.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
