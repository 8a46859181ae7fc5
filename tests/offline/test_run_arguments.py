"""`facetrain run` refuses options it cannot run with before anything starts: exit 2, a message naming
the option and the fix, no traceback, nothing created (run_arguments.py, photo_upload.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from facetrain_offline.cli import main
from facetrain_offline.run_arguments import option_problems
from facetrain_offline.run_options import RunOptions

Layout = Callable[[Path, Path], list[str]]  # (tmp_path, IMAGES_DIR) → the options after IMAGES_DIR


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "ann").mkdir(parents=True)
    (folder / "ann" / "1.jpg").write_bytes(b"a photo")
    return folder


def _refused(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    started = time.monotonic()
    code = main(["run", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert time.monotonic() - started < 10, "refused only after something was started"
    assert "Traceback" not in err
    return err


def _file(path: Path) -> Path:
    path.write_text("not a folder\n")
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


# name → (the options, words the refusal must hold)
FOLDERS: dict[str, tuple[Layout, list[str]]] = {
    "--out is an existing file": (
        lambda tmp, images: ["--out", str(_file(tmp / "out.txt"))],
        ["--out", "is a file, not a folder", "give --out a folder"],
    ),
    "--out below a file": (
        lambda tmp, images: ["--out", str(_file(tmp / "out.txt") / "sub")],
        ["--out", "cannot be created:", "out.txt is not a folder"],
    ),
    "--out is a broken link": (
        lambda tmp, images: ["--out", str(_link(tmp / "dangling", tmp / "nowhere"))],
        ["--out", "exists and is not a folder"],
    ),
    "--out is a FIFO": (
        lambda tmp, images: ["--out", str(_fifo(tmp / "pipe"))],
        ["--out", "exists and is not a folder"],
    ),
    "--state is an existing file": (
        lambda tmp, images: ["--out", str(tmp / "out"), "--state", str(_file(tmp / "state"))],
        ["--state", "is a file, not a folder"],
    ),
    "--out inside IMAGES_DIR": (
        lambda tmp, images: ["--out", str(images / "results")],
        ["--out", "is inside IMAGES_DIR", "uploaded as a photo", "outside IMAGES_DIR"],
    ),
    "--out deep inside IMAGES_DIR": (
        lambda tmp, images: ["--out", str(images / "ann" / "x" / "y")],
        ["is inside IMAGES_DIR"],
    ),
    "--out is IMAGES_DIR": (
        lambda tmp, images: ["--out", str(images)],
        ["IMAGES_DIR and --out are the same folder"],
    ),
    "--out leads into IMAGES_DIR by a link": (
        lambda tmp, images: ["--out", str(_link(tmp / "link", images) / "out")],
        ["--out", "is inside IMAGES_DIR"],
    ),
    "--out given relative, inside IMAGES_DIR": (
        lambda tmp, images: ["--out", os.path.relpath(images / "out")],
        ["is inside IMAGES_DIR"],
    ),
    "IMAGES_DIR inside --out": (
        lambda tmp, images: ["--out", str(tmp)],
        ["IMAGES_DIR", "is inside --out", "give IMAGES_DIR a folder outside --out"],
    ),
    "--state inside IMAGES_DIR": (
        lambda tmp, images: ["--out", str(tmp / "out"), "--state", str(images / ".state")],
        ["--state", "is inside IMAGES_DIR"],
    ),
    "IMAGES_DIR inside --state": (
        lambda tmp, images: ["--out", str(tmp / "out"), "--state", str(tmp)],
        ["IMAGES_DIR", "is inside --state", "the state save replaces"],
    ),
    "--state is --out": (
        lambda tmp, images: ["--out", str(tmp / "both"), "--state", str(tmp / "both")],
        ["--out and --state are the same folder"],
    ),
}


@pytest.mark.parametrize("variant", FOLDERS)
def test_folders_the_run_cannot_use_are_refused(capsys, tmp_path, images, variant):
    layout, words = FOLDERS[variant]
    args = [str(images), *layout(tmp_path, images), "-p", "weights=none"]
    before = sorted(tmp_path.rglob("*"))

    err = _refused(capsys, args)

    for word in words:
        assert word in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing created


# name → (the options, words the refusal must hold): values once taken in silence, or tracebacks.
VALUES: dict[str, tuple[list[str], list[str]]] = {
    "--instance-count 0": (["--instance-count", "0"], ["--instance-count 0 is out of range: give 1 to 20"]),
    "--instance-count -1": (["--instance-count", "-1"], ["--instance-count -1", "1 to 20"]),
    "--instance-count 21": (["--instance-count", "21"], ["--instance-count 21", "1 to 20"]),
    "--poll-seconds 0": (["--poll-seconds", "0"], ["--poll-seconds 0 is out of range: give 1 to 3600"]),
    "--poll-seconds -5": (["--poll-seconds", "-5"], ["--poll-seconds -5"]),
    "--poll-seconds 3601": (["--poll-seconds", "3601"], ["--poll-seconds 3601", "1 to 3600"]),
    "--settle-seconds -1": (
        ["--settle-seconds", "-1"],
        ["--settle-seconds -1 is out of range: give 0 to 3600"],
    ),
    "--settle-seconds 3601": (["--settle-seconds", "3601"], ["--settle-seconds 3601"]),
    "--min-accuracy 1.5": (
        ["--min-accuracy", "1.5"],
        ["--min-accuracy 1.5 is out of range: give 0.0 to 1.0"],
    ),
    "--min-accuracy nan": (["--min-accuracy", "nan"], ["--min-accuracy nan"]),
    "--max-fpir 0": (["--max-fpir", "0"], ["--max-fpir 0.0 is out of range: give above 0.0, at most 1.0"]),
    "--max-fpir -inf": (["--max-fpir=-inf"], ["--max-fpir -inf"]),
    "--run-id ''": (["--run-id", ""], ["--run-id '' cannot name a run"]),
    "--run-id with a space": (["--run-id", "my run"], ["--run-id 'my run' cannot name a run"]),
    "--instance-type ''": (["--instance-type", ""], ["--instance-type", "AllowedPattern"]),
    "--instance-type gpu": (["--instance-type", "gpu"], ["--instance-type", "ml.g4dn.xlarge"]),
    "--template missing": (["--template", "/nonexistent/template.yaml"], ["--template", "cannot be read"]),
}


@pytest.mark.parametrize("variant", VALUES)
def test_values_the_run_would_not_take_are_refused(capsys, tmp_path, images, variant):
    options, words = VALUES[variant]
    out = tmp_path / "out"

    err = _refused(capsys, [str(images), "--out", str(out), *options])

    for word in words:
        assert word in err, err
    assert not out.exists()


def test_every_problem_is_named_at_once(capsys, tmp_path, images):
    err = _refused(
        capsys,
        [
            str(images),
            "--out",
            str(images / "o"),
            "--instance-count",
            "0",
            "--poll-seconds",
            "0",
            "--run-id",
            "",
        ],
    )
    assert [line.split(" ")[2] for line in err.splitlines()] == [
        "--out",
        "--instance-count",
        "--run-id",
        "--poll-seconds",
    ]


def test_the_limits_themselves_are_accepted(images, tmp_path):
    for edge in (
        {"instance_count": 1, "poll_seconds": 1, "settle_seconds": 0, "min_accuracy": 0.0, "max_fpir": 1.0},
        {"instance_count": 20, "poll_seconds": 3600, "settle_seconds": 3600, "min_accuracy": 1.0},
        {"run_id": "a", "instance_type": "ml.m5.large", "state_dir": tmp_path / "state"},
    ):
        assert option_problems(RunOptions(images_dir=images, out_dir=tmp_path / "out", **edge)) == []
    # the results beside the photos (not inside them) are fine
    assert option_problems(RunOptions(images_dir=images, out_dir=images.parent / "images-out")) == []


# (the path made, relative to IMAGES_DIR; the name refused)
NOT_UTF8 = [
    (b"caf\xe9.jpg", "caf\\xe9.jpg"),
    (b"ann/\xff.jpg", "ann/\\xff.jpg"),
    (b"ann/s\x80/1.jpg", "ann/s\\x80"),
    (b"\xc3(/1.jpg", "\\xc3("),
]


@pytest.mark.parametrize(("name", "shown"), NOT_UTF8)
def test_a_name_that_is_not_utf8_is_refused_before_anything_starts(capsys, tmp_path, images, name, shown):
    path = os.path.join(os.fsencode(images), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as photo:
        photo.write(b"a photo")
    out = tmp_path / "out"

    err = _refused(capsys, [str(images), "--out", str(out)])

    assert f"- {images}/{shown}\n" in err and "Rename them" in err
    assert not out.exists()
