"""Export facenet-pytorch's P-Net, R-Net, O-Net and InceptionResnetV1 to ONNX, recording each file's sha256.

The networks are facenet-pytorch's own modules with its own weights (P/R/O-Net ship inside the package;
InceptionResnetV1 takes the `weights` setting's file, or the seeded random init of `weights=none` that the
torch path makes, `torch_runtime.load_facenet`). Batch is dynamic for every network, and height and width
too for P-Net (it runs over the image pyramid) and InceptionResnetV1 (the `image_size` setting). The
manifest (`manifest.json` beside the files) records each file's name, role and sha256 (as
`model_files.ModelFile` does), and what it was made from. The same inputs give byte-identical files.

Run: `python -m facetrain.inference.export --cache [DIR] [--weights none|vggface2|casia-webface|FILE.pt]
[--seed N]` fills the cache runtime=onnx reads (`onnx_files`: DIR/mtcnn/ and DIR/facenet-<key>/; DIR
defaults to FACETRAIN_ONNX_DIR or ~/.cache/facetrain/onnx), or `... export OUT_DIR ...` writes all four
networks into one folder. This module imports torch: it runs where torch is (the image's build stage, a
dev venv, or a child process of a dev job), never in the job's own process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

from ..contract.hyperparameters import FACENET, Hyperparameters
from .manifest import FACENET_ROLE, MANIFEST, MANIFEST_FORMAT, MTCNN_ROLES, read_manifest
from .model_files import ModelChoice, ModelFile, WeightsError, resolve_model, sha256_file
from .onnx_files import EXPORT_FAILED, MTCNN_FOLDER, facenet_folder, onnx_home
from .torch_runtime import load_facenet

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
    spatial_outputs: bool = False,
) -> None:
    """Export one network with a dynamic batch (and, `spatial`, a dynamic input height and width;
    `spatial_outputs`: P-Net's output grid has its own, smaller, height and width)."""
    inputs = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
    outputs = {0: "batch", 2: "grid_height", 3: "grid_width"} if spatial_outputs else {0: "batch"}
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


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401  torch's exporter writes the file with it
    except ImportError:
        raise ExportError(
            "the ONNX export needs the Python package onnx (torch's exporter serialises with it): "
            "`make setup` installs it (or: pip install -e '.[torch]')"
        ) from None


def export_mtcnn(out_dir: Path) -> list[ModelFile]:
    """P-Net, R-Net and O-Net (facenet-pytorch's own weights) into `out_dir` (which exists)."""
    files = []
    with torch.no_grad():
        for role, network, (name, input_name, outputs), side in (
            ("pnet", PNet(), PNET, 64),
            ("rnet", RNet(), RNET, 24),
            ("onet", ONet(), ONET, 48),
        ):
            path = out_dir / name
            pnet = role == "pnet"
            _export(network, side, path, input_name, outputs, spatial=pnet, spatial_outputs=pnet)
            files.append(ModelFile(role, path, sha256_file(path)))
    return files


def export_facenet(out_dir: Path, model: ModelChoice, seed: int) -> ModelFile:
    """InceptionResnetV1 with the chosen weights (or the seeded random init) into `out_dir`."""
    path = out_dir / facenet_file_name(model, seed)
    with torch.no_grad():
        network = load_facenet(model, seed, torch.device("cpu"))
        _export(network, 160, path, "faces", FACENET_OUTPUTS, spatial=True)
    return ModelFile("facenet", path, sha256_file(path))


def write_manifest(out_dir: Path, files: list[ModelFile], model: ModelChoice | None, seed: int) -> Path:
    """manifest.json of `files` (and, with InceptionResnetV1 among them, what it was made from)."""
    made_from: dict[str, object] = {
        "torch": torch.__version__,
        "facenet_pytorch": _version("facenet-pytorch"),
        "opset": OPSET,
    }
    if model is not None:
        made_from |= {
            "facenet_weights": model.label,
            "facenet_weights_sha256": model.sha256,
            "seed": seed if model.sha256 is None else None,
        }
    document = {
        "format": MANIFEST_FORMAT,
        "files": [{"role": f.role, "name": f.path.name, "sha256": f.sha256} for f in files],
        "made_from": made_from,
    }
    manifest = out_dir / MANIFEST
    manifest.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return manifest


def _checked(model: ModelChoice) -> None:
    if model.embedder != FACENET:
        raise WeightsError(f"only facenet's InceptionResnetV1 is exported to ONNX, not {model.embedder}")
    _require_onnx()


def export_models(out_dir: Path, model: ModelChoice, seed: int = 0) -> ExportedModels:
    """Export the four networks into `out_dir` (created) and write its manifest; raise WeightsError for an
    unusable weights file, ExportError when the `onnx` package is missing. `model` is the facenet choice
    (`model_files.resolve_model`), `seed` the random init's for `weights=none`."""
    _checked(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [*export_mtcnn(out_dir), export_facenet(out_dir, model, seed)]
    return ExportedModels(out_dir, tuple(files), write_manifest(out_dir, files, model, seed))


def publish_folder(cache: Path, folder: str, roles: tuple[str, ...], write: Callable[[Path], object]) -> Path:
    """Write a cache folder whole or not at all: into a temporary folder beside it, then renamed into
    place. A folder already there that verifies (`read_manifest` of `roles`) is kept; one that does not (a
    changed or missing file) is replaced. A concurrent export of the same folder wins or loses the rename:
    both wrote the same bytes."""
    final = cache / folder
    if (final / MANIFEST).is_file():
        try:
            read_manifest(final, roles)
            return final
        except WeightsError:
            shutil.rmtree(final)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=cache))
    try:
        write(staging)
        staging.chmod(0o755)
        try:
            staging.rename(final)
        except OSError:  # another export got there first
            if not (final / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def export_to_cache(cache: Path, model: ModelChoice, seed: int = 0) -> list[Path]:
    """Fill the cache runtime=onnx reads (`onnx_files`): cache/mtcnn/ and cache/facenet-<key>/ for these
    weights, each written only when missing or not verifying; returns the two folders."""
    _checked(model)
    mtcnn = publish_folder(
        cache, MTCNN_FOLDER, MTCNN_ROLES, lambda d: write_manifest(d, export_mtcnn(d), None, seed)
    )
    facenet = publish_folder(
        cache,
        facenet_folder(model, seed),
        (FACENET_ROLE,),
        lambda d: write_manifest(d, [export_facenet(d, model, seed)], model, seed),
    )
    return [mtcnn, facenet]


def weights_file(path: Path) -> ModelFile:
    """The weights file `path` (role weights, its sha256); WeightsError when it is not a file."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    return ModelFile("weights", path, sha256_file(path))


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
    parser.add_argument(
        "out_dir", type=Path, nargs="?", help="folder to write all four .onnx files and manifest.json into"
    )
    parser.add_argument(
        "--cache",
        nargs="?",
        const="",
        default=None,
        help="fill the cache runtime=onnx reads instead (DIR/mtcnn/, DIR/facenet-<key>/); DIR defaults to "
        "FACETRAIN_ONNX_DIR, else ~/.cache/facetrain/onnx",
    )
    parser.add_argument(
        "--weights",
        default="vggface2",
        help="InceptionResnetV1's weights: vggface2 (default), casia-webface, a .pt file, "
        "or none (random init from --seed: tests only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init for --weights none")
    parser.add_argument(
        "--weights-file",
        type=Path,
        default=None,
        help="export exactly this weights file (as the job resolved it; its path is not checked as a "
        "`weights` setting): what a job exporting its own missing models passes",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="a folder to look for the weights file in first (as the job's weights channel)",
    )
    args = parser.parse_args(argv)
    if (args.out_dir is None) == (args.cache is None):
        parser.error("give either OUT_DIR or --cache [DIR]")
    try:
        if args.weights_file is not None:
            model = ModelChoice(FACENET, args.weights_file.name, (weights_file(args.weights_file),))
        else:
            settings = Hyperparameters(embedder=FACENET, weights=args.weights, seed=args.seed)
            model = resolve_model(settings, args.weights_dir)
        if args.cache is not None:
            for folder in export_to_cache(Path(args.cache) if args.cache else onnx_home(), model, args.seed):
                print(folder)
            return 0
        exported = export_models(args.out_dir, model, args.seed)
    except (WeightsError, ExportError, ValueError) as exc:
        print(f"{EXPORT_FAILED}{exc}", file=sys.stderr)
        return 2
    for file in exported.files:
        print(f"{file.sha256}  {file.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
