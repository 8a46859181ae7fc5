"""Helpers of the training-container suite: run the job in-process, and derive broken photos with Pillow.

The job runs through `facetrain.train.main([])` (torch is imported once per worker) with
SAGEMAKER_BASE_DIR pointing at a SageMakerTree under tmp_path, and the working directory moved to tmp so
that anything a hostile input might create lands where the test looks for it.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

EXIF_ORIENTATION = 0x0112
PWNED = "PWNED"


@dataclass
class JobRun:
    """Exit code of one in-process run, and where it ran."""

    rc: int
    cwd: Path


def run_in_process(tree, monkeypatch: pytest.MonkeyPatch, cwd: Path, argv: list[str] | None = None) -> JobRun:
    """Run `train` in this process on the tree; the cwd is moved to `cwd` for the run."""
    import torch
    from facetrain.train import main

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # share the cores between the xdist workers instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tree.base))
    monkeypatch.chdir(cwd)
    rc = main([] if argv is None else argv)
    return JobRun(rc=rc, cwd=cwd)


@pytest.fixture
def run_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., JobRun]:
    """Run the job in-process on a SageMakerTree; cwd is tmp_path/cwd during the run."""

    def run(tree, argv: list[str] | None = None) -> JobRun:
        cwd = tmp_path / "cwd"
        cwd.mkdir(exist_ok=True)
        return run_in_process(tree, monkeypatch, cwd, argv)

    return run


@pytest.fixture(scope="module")
def module_job() -> Iterator[Callable[..., JobRun]]:
    """Like run_job, for module-scoped fixtures (one job run shared by the tests of a module)."""
    with pytest.MonkeyPatch.context() as monkeypatch:

        def run(tree, argv: list[str] | None = None) -> JobRun:
            cwd = tree.base.parent / "cwd"
            cwd.mkdir(exist_ok=True)
            return run_in_process(tree, monkeypatch, cwd, argv)

        yield run


def _assert_not_pwned(*folders: Path) -> None:
    """No hostile input managed to run `touch PWNED` (in the run's cwd, the tree, or the repository)."""
    repo = Path(__file__).resolve().parents[2]
    for folder in (*folders, repo):
        hits = list(folder.rglob(PWNED)) if folder != repo else list(folder.glob(PWNED))
        assert not hits, f"hostile input ran code: {hits}"


# ---- photos derived at test time ----------------------------------------------------------------------


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# Pixels stored so that ImageOps.exif_transpose (applying the tag) brings them back upright.
_STORED_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # tag 6 = "rotate 90 CW to display": stored rotated 90 CCW
    8: Image.Transpose.ROTATE_270,
}


def exif_rotated_jpeg(upright: Image.Image, orientation: int, tag: bool = True) -> bytes:
    """A JPEG whose pixels are rotated and whose EXIF Orientation tag undoes it (tag=False: no tag)."""
    stored = upright.transpose(_STORED_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    if tag:
        exif[EXIF_ORIENTATION] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (8-bit RGB), with a tiny IDAT: only the header is large."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def gray16_png(image: Image.Image) -> bytes:
    """16-bit grayscale PNG (Pillow mode I;16) holding exactly the 8-bit grayscale values times 257."""
    values = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    sixteen = Image.fromarray(values)
    assert sixteen.mode == "I;16"
    return encode(sixteen, "PNG")


@pytest.fixture(scope="session")
def forge() -> SimpleNamespace:
    """Functions deriving test inputs from real photos."""
    return SimpleNamespace(
        load_rgb=load_rgb,
        encode=encode,
        exif_rotated_jpeg=exif_rotated_jpeg,
        truncated=truncated,
        png_with_declared_size=png_with_declared_size,
        gray16_png=gray16_png,
    )


@pytest.fixture(scope="session")
def assert_not_pwned() -> Callable[..., None]:
    """Check that no `touch PWNED` ran: in the folders given (recursively) and at the repository root."""
    return _assert_not_pwned
