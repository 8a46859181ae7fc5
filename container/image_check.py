"""The training image's proof of what it runs, made at build time (container/Dockerfile) and again by the
image tests (tests/image): no torch, and every model the job may need is there, verified, and opens.

    python container/image_check.py

Checks, each failure named on stderr (exit 1):
- torch, torchvision, facenet_pytorch and onnx are not installed (the final stage runs ONNX Runtime only);
- every export folder in FACETRAIN_ONNX_DIR matches its manifest (`manifest.read_manifest`: each file's
  sha256);
- the job's own resolution (`runtimes.resolve_models`, then `open_encoder` on the CPU, which opens every
  ONNX Runtime session and dlib's models) succeeds for embedder=facenet weights=none, weights=vggface2 where
  the image says its weights are baked, and embedder=dlib-resnet: with no torch here, a missing export is
  an error, never an export;
- the GPU flavour (FACETRAIN_ACCELERATOR=gpu) has ONNX Runtime's CUDA execution provider, and the CUDA 12
  and cuDNN 9 libraries it links against resolve (only the driver's libcuda comes from the host).
Run it with no network (the Dockerfile points the proxies at a closed port): nothing may be downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from facetrain.contract.hyperparameters import Hyperparameters
from facetrain.inference.manifest import FACENET_ROLE, MTCNN_ROLES, read_manifest
from facetrain.inference.model_files import VGGFACE2_WEIGHTS_ENV, WeightsError
from facetrain.inference.onnx_files import MTCNN_FOLDER, onnx_home
from facetrain.inference.runtimes import open_encoder, resolve_models

TORCH_FREE = ("torch", "torchvision", "facenet_pytorch", "onnx")
ACCELERATOR_ENV = "FACETRAIN_ACCELERATOR"  # cpu | gpu, set by container/Dockerfile


def installed_torch_packages() -> list[str]:
    """The torch-side packages that are importable here (found, not imported)."""
    return [name for name in TORCH_FREE if importlib.util.find_spec(name) is not None]


def export_folders(home: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """The export folders under `home` with the roles each must hold (mtcnn/: P/R/O-Net; facenet-*/: one
    InceptionResnetV1)."""
    folders = sorted(path for path in home.iterdir() if path.is_dir() and not path.name.startswith("."))
    return [(path, MTCNN_ROLES if path.name == MTCNN_FOLDER else (FACENET_ROLE,)) for path in folders]


def settings_to_check() -> list[Hyperparameters]:
    """The configurations this image must run with no network."""
    wanted = [Hyperparameters(weights="none", seed=0), Hyperparameters(embedder="dlib-resnet")]
    if os.environ.get(VGGFACE2_WEIGHTS_ENV) == "baked":
        wanted.append(Hyperparameters(weights="vggface2"))
    return wanted


def problems() -> list[str]:
    """Everything wrong with this image, each a sentence; empty when it is sound."""
    torch_side = installed_torch_packages()
    found = [f"{name} is installed: the final stage must hold no torch" for name in torch_side]
    home = onnx_home()
    if not home.is_dir():
        return [*found, f"{home} (FACETRAIN_ONNX_DIR) is missing: the export stage's models were not copied"]
    folders = export_folders(home)
    if not any(path.name == MTCNN_FOLDER for path, _ in folders):
        found.append(f"{home} holds no {MTCNN_FOLDER}/ export")
    for folder, roles in folders:
        try:
            files = read_manifest(folder, roles)
        except WeightsError as exc:
            found.append(str(exc))
            continue
        print(f"{folder}: " + ", ".join(f"{file.role} {file.sha256[:12]}" for file in files))
    for settings in settings_to_check():
        label = f"embedder={settings.embedder} weights={settings.weights} runtime={settings.runtime}"
        try:
            model = resolve_models(settings, None)
            open_encoder(settings, model, "cpu")
        except WeightsError as exc:
            found.append(f"{label}: {exc}")
            continue
        print(f"{label}: opens ({len(model.runtime_files)} ONNX files)")
    if os.environ.get(ACCELERATOR_ENV) == "gpu":
        found += cuda_provider_problems()
    return found


def unresolved_libraries(library: Path) -> list[str]:
    """The shared libraries `library` needs that the dynamic loader cannot find here (ldd's "not found"),
    but the driver's libcuda, which the GPU host mounts at run time."""
    # ldd: the loader's own answer (the same search as at run time: ld.so.conf, RPATH, LD_LIBRARY_PATH)
    done = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=False)  # noqa: S603, S607
    if done.returncode != 0:
        return [f"ldd {library}: {done.stderr.strip() or done.stdout.strip()}"]
    missing = [line.split()[0] for line in done.stdout.splitlines() if "not found" in line]
    return [name for name in missing if not name.startswith("libcuda.so")]


def cuda_provider_problems() -> list[str]:
    """The GPU flavour: ONNX Runtime offers its CUDA provider, and the provider's CUDA 12 and cuDNN 9
    libraries (the nvidia-*-cu12 wheels) resolve, so that a GPU host needs only its driver."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        offered = onnxruntime.get_available_providers()
        return [f"the GPU image's ONNX Runtime has no CUDA provider (it offers {offered})"]
    provider = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if not provider.is_file():
        return [f"{provider} is missing"]
    missing = unresolved_libraries(provider)
    return [f"{provider.name} needs {name}, which the loader does not find" for name in missing]


def main() -> int:
    found = problems()
    for problem in found:
        print(f"image check: {problem}", file=sys.stderr)
    if not found:
        print("image check: no torch; every export verified and opened")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
