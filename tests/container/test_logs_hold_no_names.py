"""The training job's log holds no identity name and no photo key at its default level (issue 26).

SageMaker sends the job's stdout and stderr to CloudWatch /aws/sagemaker/TrainingJobs, a log group the
stack neither owns nor bounds, so the real `train` script runs here in a subprocess on faces-dev with
photos the job rejects (a blank image and a non-image, derived at test time, and a stray file named after
a person), once as SageMaker runs it and once with FACETRAIN_LOG_LEVEL=DEBUG: the default output has
counts and names nothing; DEBUG names the rejected photos (the switch works). The same for a run whose
previous embeddings hold an unsound record, and for a run that fails because no photo is usable, whose
reason names a photo in output/failure (the FailureReason) but not in the log.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
TRAIN = Path(sys.executable).with_name("train")  # the console script of the venv running the tests
PHOTOS_PER_PERSON = 2
BLANK = ("person_02", "blank.jpg")  # no face: rejected as no_face
NOT_AN_IMAGE = ("person_04", "notes.jpg")  # text bytes: rejected as not_an_image
STRAY = "person_05-portrait.jpg"  # directly in the channel: a stray file, named after a person


def blank_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (240, 240), "gray").save(buffer, format="JPEG")
    return buffer.getvalue()


def add_rejected_photos(tree) -> None:
    tree.add_photo(*BLANK, blank_jpeg())
    tree.add_photo(*NOT_AN_IMAGE, b"meeting notes, not a photo\n")
    tree.add_photo("", STRAY, b"stray")


def identifying_words(tree) -> set[str]:
    """Every identity name and every file name in the photos channel (a photo key is built of them)."""
    words = set()
    for path in tree.images.rglob("*"):
        words.add(path.name)
        words.add(path.relative_to(tree.images).as_posix())
    words.add(Path(STRAY).stem)
    return words


def train(tree, cwd: Path, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tree.base), "PYTHONUNBUFFERED": "1"}
    env.pop("FACETRAIN_LOG_LEVEL", None)  # the default: what SageMaker runs
    if debug:
        env["FACETRAIN_LOG_LEVEL"] = "DEBUG"
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(TRAIN)], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def named_in(output: str, words: Iterable[str]) -> list[str]:
    return sorted(word for word in words if word in output)


@pytest.fixture(scope="module")
def first(sagemaker_tree_class, tmp_path_factory, shared_data):
    """faces-dev (2 photos each) plus the rejected photos, run once at the default level."""
    assert TRAIN.is_file(), f"{TRAIN} is missing: install the project into .venv (pip install -e '.[job]')"
    base = tmp_path_factory.mktemp("first")
    tree = sagemaker_tree_class(base / "opt_ml")
    tree.add_identities(shared_data / "faces-dev", limit=PHOTOS_PER_PERSON)
    add_rejected_photos(tree)
    result = train(tree, base / "cwd")
    assert result.returncode == 0, result.stdout + result.stderr + str(tree.failure())
    return tree, result


@pytest.fixture(scope="module")
def with_unsound_previous(first, sagemaker_tree_class, tmp_path_factory, shared_data):
    """The same photos with the first run's embeddings as `previous`, one record damaged (NaN)."""
    tree_of_first, _ = first
    payload = pickle.loads((tree_of_first.model / "saved_embeddings.pkl").read_bytes())
    damaged = payload["records"][0]
    damaged["embedding"] = damaged["embedding"].copy()
    damaged["embedding"][3] = np.nan
    base = tmp_path_factory.mktemp("again")
    tree = sagemaker_tree_class(base / "opt_ml")
    tree.add_identities(shared_data / "faces-dev", limit=PHOTOS_PER_PERSON)
    add_rejected_photos(tree)
    (tree.channel("previous") / "saved_embeddings.pkl").write_bytes(pickle.dumps(payload))
    return tree, damaged["key"], base


def test_the_default_log_counts_rejections_and_names_nobody(first) -> None:
    tree, result = first
    output = result.stdout + result.stderr
    rejected = {row["photo"] for row in tree.rejected()}
    assert {f"{BLANK[0]}/{BLANK[1]}", f"{NOT_AN_IMAGE[0]}/{NOT_AN_IMAGE[1]}", STRAY} <= rejected
    assert (
        "3 rejected (no_face: 1, not_an_image: 1, not_in_identity_folder: 1; each named in rejected.csv)"
        in output
    )
    assert " DEBUG " not in output
    assert named_in(output, identifying_words(tree)) == []


def test_an_unsound_previous_record_is_counted_not_named(with_unsound_previous) -> None:
    tree, key, base = with_unsound_previous
    result = train(tree, base / "cwd-info")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "previous embeddings: 1 record unsound, their photos are recomputed" in output
    assert key not in output
    assert named_in(output, identifying_words(tree)) == []


def test_debug_names_the_rejected_photos_and_the_unsound_record(with_unsound_previous) -> None:
    tree, key, base = with_unsound_previous
    result = train(tree, base / "cwd-debug", debug=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"DEBUG facetrain: rejected {BLANK[0]}/{BLANK[1]} (no_face)" in output
    assert f"DEBUG facetrain: rejected {NOT_AN_IMAGE[0]}/{NOT_AN_IMAGE[1]} (not_an_image)" in output
    assert f"DEBUG facetrain: rejected {STRAY} (not_in_identity_folder)" in output
    assert f"previous embeddings, unsound (first 20): record 0 ('{key}')" in output
    # Only the DEBUG lines name anyone: every line at INFO and above is as the default run writes it.
    above_debug = "\n".join(line for line in output.splitlines() if " DEBUG facetrain: " not in line)
    assert named_in(above_debug, identifying_words(tree)) == []


@pytest.fixture(scope="module")
def nothing_usable(sagemaker_tree_class, tmp_path_factory):
    """Only the rejected photos: no identity can be enrolled and the job fails naming them."""
    base = tmp_path_factory.mktemp("unusable")
    tree = sagemaker_tree_class(base / "opt_ml")
    add_rejected_photos(tree)
    return tree, base


@pytest.mark.parametrize("debug", [False, True], ids=["default", "debug"])
def test_a_failure_names_the_photo_in_the_failure_reason_not_in_the_log(nothing_usable, debug) -> None:
    tree, base = nothing_usable
    result = train(tree, base / f"cwd-{debug}", debug=debug)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    reason = tree.failure()
    assert reason.startswith("No identity could be enrolled")
    assert f"{BLANK[0]}/{BLANK[1]}" in reason  # the operator is told which photo to fix …
    assert "ERROR facetrain: job failed (JobFailure): the reason is in output/failure" in output
    if debug:  # … and, on request, the log has it too
        assert f"DEBUG facetrain: job failed: {reason}" in output
    else:
        assert named_in(output, identifying_words(tree)) == []


# ---- the parts of train.py that need no job run --------------------------------------------------------


def test_an_internal_errors_stack_at_info_leaves_its_message_out() -> None:
    from facetrain.train import _stack_without_messages

    def decode(key: str) -> None:
        raise OSError(f"cannot identify image file '/opt/ml/input/data/face_imgs/{key}'")

    key = "/".join(("person_02", "img3.jpg"))  # not written out: the frame's source line must not hold it
    try:
        decode(key)
    except OSError as exc:
        stack = _stack_without_messages(exc)
    assert "in decode" in stack and stack.endswith("builtins.OSError")
    assert "person_02" not in stack and "img3" not in stack


def test_a_reason_that_cannot_be_written_is_logged_only_at_debug(tmp_path, caplog) -> None:
    from facetrain.train import write_failure

    (tmp_path / "output").write_text("a file where the folder should be")
    with caplog.at_level(logging.DEBUG, logger="facetrain"):
        write_failure(tmp_path, "No identity could be enrolled: person_02/blank.jpg: no face found")
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert above_debug and all("cannot write" in m and "person_02" not in m for m in above_debug)
    assert any("person_02/blank.jpg" in m for m in debug)


def test_an_unknown_log_level_is_a_warning_naming_the_fix(monkeypatch, caplog) -> None:
    from facetrain.train import LOG_LEVEL_ENV, configure_logging, log

    before = log.level
    monkeypatch.setenv(LOG_LEVEL_ENV, "chatty")
    try:
        with caplog.at_level(logging.INFO, logger="facetrain"):
            configure_logging()
            assert log.level == logging.INFO
    finally:
        log.setLevel(before)
    assert "FACETRAIN_LOG_LEVEL='chatty' is not a log level: logging at INFO; use one of DEBUG, INFO" in (
        caplog.text
    )
