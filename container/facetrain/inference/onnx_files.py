"""Where runtime=onnx finds its exported networks, and their export when they are missing.

The exports live in a cache folder (FACETRAIN_ONNX_DIR; the training image sets /opt/facetrain/onnx and
fills it at build time; elsewhere $XDG_CACHE_HOME/facetrain/onnx, filled by `make setup`), in one folder per
network family: `mtcnn/` (P-Net, R-Net, O-Net: facenet-pytorch ships one set of weights for them) and one
`facenet-<key>/` per InceptionResnetV1 weights, keyed by the weights file's sha256 (or, for weights=none,
by the seed of the random init), so that a changed weights file can never be paired with a stale export. A
`weights` channel may bring its own exports in an `onnx/` folder of the same layout (looked in first).

Where torch, facenet-pytorch and onnx are installed (a development venv) a missing export is made once, by
`python -m facetrain.inference.export --cache` in a child process: this process never imports torch. The
training image has no torch: there, a missing export is an error that names the fix.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

from ..contract.shorten import clip
from .manifest import MANIFEST, MTCNN_ROLES, read_manifest
from .model_files import ModelChoice, ModelFile, WeightsError

log = logging.getLogger("facetrain")

ONNX_DIR_ENV = "FACETRAIN_ONNX_DIR"
MTCNN_FOLDER = "mtcnn"
CHANNEL_FOLDER = "onnx"  # inside the `weights` channel
EXPORT_PACKAGES = ("torch", "facenet_pytorch", "onnx")
EXPORT_TIMEOUT_SECONDS = 600
EXPORT_FAILED = "export failed: "  # how the exporter's own refusals start (export.main)


def onnx_home() -> Path:
    """The export cache: $FACETRAIN_ONNX_DIR, else $XDG_CACHE_HOME/facetrain/onnx (~/.cache/...)."""
    given = os.environ.get(ONNX_DIR_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "facetrain" / "onnx"


def facenet_folder(model: ModelChoice, seed: int) -> str:
    """The folder of InceptionResnetV1's export for these weights: the weights file's sha256 prefix, or the
    seed of the random init (weights=none)."""
    if model.sha256 is None:
        return f"facenet-random-seed{seed}"
    return f"facenet-{model.sha256[:16]}"


def export_command(model: ModelChoice, seed: int, cache: Path) -> list[str]:
    """The command that writes the exports these weights need into `cache` (the very weights file the
    job resolved, by path: `--weights-file`)."""
    command = [sys.executable, "-m", "facetrain.inference.export", "--cache", str(cache)]
    if model.sha256 is None:
        return [*command, "--weights", "none", "--seed", str(seed)]
    return [*command, "--weights-file", str(model.path("weights"))]


def can_export() -> bool:
    """True when the exporter's packages are installed here (found, not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in EXPORT_PACKAGES)


def _roots(weights_channel: Path | None) -> list[Path]:
    roots = [onnx_home()]
    if weights_channel is not None and (weights_channel / CHANNEL_FOLDER).is_dir():
        roots.insert(0, weights_channel / CHANNEL_FOLDER)
    return roots


def _find(folder: str, roots: list[Path]) -> Path | None:
    return next((root / folder for root in roots if (root / folder / MANIFEST).is_file()), None)


def _missing(names: list[str], roots: list[Path], model: ModelChoice, seed: int) -> WeightsError:
    command = " ".join(export_command(model, seed, onnx_home())[1:])
    return WeightsError(
        f"runtime=onnx needs the ONNX export of {' and '.join(names)} (weights={model.label}), which is not "
        f"in {' nor '.join(str(r) for r in roots)}, and this machine has no torch to make it. Fix one of: "
        f"run `python {command}` where torch is installed (`make setup` does, for weights=none seed 0 and "
        f"vggface2) and set {ONNX_DIR_ENV} to that folder, or add it to the 'weights' channel under "
        f"{CHANNEL_FOLDER}/; use the training image, which holds the exports of its weights; or set "
        "runtime=torch where torch is installed."
    )


def _export(model: ModelChoice, seed: int) -> None:
    """Run the exporter in a child process (this process imports no torch); WeightsError on failure."""
    cache = onnx_home()
    log.info("exporting the networks to ONNX once, into %s (weights=%s)", cache, model.label)
    try:
        done = subprocess.run(  # noqa: S603  our own module, run by this interpreter
            export_command(model, seed, cache),
            capture_output=True,
            text=True,
            timeout=EXPORT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise WeightsError(f"the ONNX export into {cache} took over {EXPORT_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        # The exporter's own message ("export failed: weights file x.pt cannot be loaded …") may span lines
        # (torch's); anything else it printed (a crash) is told by its last line.
        said = done.stderr.rpartition(EXPORT_FAILED)[2] if EXPORT_FAILED in done.stderr else None
        reason = " ".join((said or (done.stderr.strip().splitlines() or ["no message"])[-1]).split())
        raise WeightsError(f"the ONNX export into {cache} failed: {clip(reason, 600)}")


def onnx_files(model: ModelChoice, seed: int, weights_channel: Path | None) -> tuple[ModelFile, ...]:
    """MTCNN's exported networks (roles pnet, rnet, onet) and, for embedder=facenet, InceptionResnetV1's
    for these weights (role facenet), each checked against its manifest; exported first where they are
    missing and torch is installed, else WeightsError naming the fix."""
    wanted = [(MTCNN_FOLDER, MTCNN_ROLES)]
    if model.embedder == "facenet":
        wanted.append((facenet_folder(model, seed), ("facenet",)))
    roots = _roots(weights_channel)
    missing = [folder for folder, _ in wanted if _find(folder, roots) is None]
    if missing:
        if not can_export():
            raise _missing(missing, roots, model, seed)
        _export(model, seed)
    files: list[ModelFile] = []
    for folder, roles in wanted:
        found = _find(folder, roots)
        if found is None:
            raise _missing([folder], roots, model, seed)
        try:
            files.extend(read_manifest(found, roles))
        except WeightsError:
            if found.parent != onnx_home() or not can_export():
                raise  # names the file and the fix
            log.warning("the ONNX export in %s does not verify: exporting it again", found)
            _export(model, seed)  # replaces the folder (export.publish_folder)
            files.extend(read_manifest(found, roles))
    return tuple(files)
