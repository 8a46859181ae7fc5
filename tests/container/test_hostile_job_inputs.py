"""Hostile inputs and faults against the training job (and identify): each class ends in a per-photo
rejection or a clear job failure naming the file, key or signal — never an internal error, a traceback,
exit 0 after SIGTERM, or unbounded time and memory. Inputs are derived from the real photos at test time.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.cli import identify
from support.hostile import HOSTILE_CONFIG_FILES
from support.jpeg_bombs import progressive_jpeg, repeat_last_scan, repeat_smallest_scan
from test_train_subprocess import TRAIN, sigterm_after, train_env

KATE = "faces-small/kate_siegel/1.jpg"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_chunk(photo: Path, kind: bytes, payload: bytes) -> bytes:
    """A real photo as PNG with one more chunk inserted after IHDR."""
    buffer = io.BytesIO()
    Image.open(photo).convert("RGB").resize((400, 400)).save(buffer, "PNG")
    data = buffer.getvalue()
    ihdr_end = 8 + 8 + 13 + 4
    return data[:ihdr_end] + _chunk(kind, payload) + data[ihdr_end:]


def _thin(photo: Path, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.open(photo).convert("RGB").resize(size).save(buffer, "PNG")
    return buffer.getvalue()


BOMB = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)  # 64 MiB of zeros in ~64 KiB
# The hostile run's decode budget: real photos decode in milliseconds, the 64-scan 8000 x 8000 one in seconds.
DECODE_BUDGET_SECONDS = 0.5


def _smooth_progressive(photo: Path, side: int) -> bytes:
    """A side x side progressive JPEG of a blurred face: tiny refinement scans, each over every pixel."""
    blurred = Image.open(photo).convert("RGB").resize((400, 400))
    image = blurred.resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75, progressive=True)
    return buffer.getvalue()


@functools.cache  # made once per session: the fixture and both tests read them
def hostile_photos(shared_data: Path) -> dict[str, tuple[bytes | None, str]]:
    """name → (content, expected reason); None content: made in place (FIFO, broken link)."""
    kate = shared_data / KATE
    big = _smooth_progressive(kate, 8000)
    return {
        # decode-time bombs: more scans than a photo has (counted before decoding), or past the budget
        "repeated-last-scan.jpg": (repeat_last_scan(progressive_jpeg(kate), 200), "too_many_scans"),
        "tiny-scans-8000px.jpg": (repeat_smallest_scan(big, 3000), "too_many_scans"),
        "64-scans-8000px.jpg": (repeat_last_scan(big, 54), "decode_budget"),
        "huge-2gib.jpg": (None, "too_large"),  # sparse: over the byte cap, never read
        "ztxt-bomb.png": (_png_with_chunk(kate, b"zTXt", b"Comment\0\0" + BOMB), "unreadable"),
        "itxt-bomb.png": (_png_with_chunk(kate, b"iTXt", b"Comment\0\1\0\0\0" + BOMB), "unreadable"),
        "iccp-bomb.png": (_png_with_chunk(kate, b"iCCP", b"icc\0\0" + BOMB), "unreadable"),
        "thin-tall.png": (_thin(kate, (30, 40000)), "too_small"),
        "thin-wide.png": (_thin(kate, (40000, 30)), "too_small"),
        "fifo.jpg": (None, "not_an_image"),
        "broken-link.jpg": (None, "unreadable"),
    }


def _place(folder: Path, name: str, content: bytes | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if content is not None:
        target.write_bytes(content)
    elif name.startswith("fifo"):
        os.mkfifo(target)
    elif name.startswith("huge"):
        with target.open("wb") as handle:
            handle.truncate(2 * 1024**3)
    else:
        target.symlink_to(folder / "no-such-photo.jpg")
    return target


@pytest.fixture(scope="module")
def hostile_run(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("hostile") / "opt_ml")
    tree.add_photo("kate", "good.jpg", shared_data / KATE)
    tree.update_hyperparameters(decode_budget_seconds=str(DECODE_BUDGET_SECONDS))
    for name, (content, _) in hostile_photos(shared_data).items():
        _place(tree.images / "kate", name, content)
    _place(tree.images, "top-level-broken-link.jpg", None)
    run = module_job(tree)
    return tree, run


def test_every_hostile_photo_is_a_rejection_and_the_job_succeeds(hostile_run, shared_data):
    tree, run = hostile_run
    assert run.rc == 0, tree.failure()
    rows = tree.rejected_by_photo()
    for name, (_, reason) in hostile_photos(shared_data).items():
        row = rows[f"kate/{name}"]
        assert row["reason"] == reason, (name, row)
        assert len(row["message"]) < 400 and "Traceback" not in row["message"]
    assert rows["top-level-broken-link.jpg"]["reason"] == "not_in_identity_folder"
    assert "symbolic link to a file that does not exist" in rows["kate/broken-link.jpg"]["message"]
    assert "not a regular file" in rows["kate/fifo.jpg"]["message"]
    assert "too thin" in rows["kate/thin-tall.png"]["message"]
    assert "more than 64 scans" in rows["kate/tiny-scans-8000px.jpg"]["message"]
    assert f"decode_budget_seconds={DECODE_BUDGET_SECONDS}" in rows["kate/64-scans-8000px.jpg"]["message"]
    assert "over the 20971520 bytes" in rows["kate/huge-2gib.jpg"]["message"]
    assert tree.metrics()["images_accepted"] == 1


def test_identify_answers_for_every_hostile_photo_without_a_traceback(hostile_run, shared_data, capsys):
    tree, _ = hostile_run
    photos = [tree.images / "kate" / name for name in hostile_photos(shared_data)]

    code, answers, err = identify(capsys, *photos, "--results", tree.model)

    assert code == 1  # unreadable photos: their lines say why
    assert "Traceback" not in err
    reasons = {Path(answer["photo"]).name: answer["reason"] for answer in answers}
    assert reasons == {name: reason for name, (_, reason) in hostile_photos(shared_data).items()}


# --- the previous channel: values are validated once the fingerprint matches -----------------------


def _tamper(payload: dict, how: str) -> int:
    """Damage records of a saved_embeddings payload in one way; return how many records were damaged."""
    records = payload["records"]
    first = records[0]
    if how == "nan":
        first["embedding"] = first["embedding"].copy()
        first["embedding"][3] = np.nan
    elif how == "zero":
        first["embedding"] = np.zeros_like(first["embedding"])
    elif how == "short":
        first["embedding"] = first["embedding"][:100].copy()
    elif how == "mixed":
        for record in records[::2]:
            record["embedding"] = np.concatenate([record["embedding"], record["embedding"]])
        return len(records[::2])
    elif how == "sha-not-string":
        first["sha256"] = 12345
    elif how == "probability":
        first["probability"] = "high"
    elif how == "box":
        first["box"] = [10.0, 10.0, 5.0]
    elif how == "box-inverted":
        first["box"] = [50.0, 50.0, 10.0, 10.0]
    elif how == "float64":
        first["embedding"] = first["embedding"].astype(np.float64)
        return 0  # refused by the loader's structural check: the whole file is unusable
    return 1


@pytest.fixture(scope="module")
def published(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("published") / "opt_ml")
    tree.add_identities(shared_data / "faces-dev", limit=2)
    assert module_job(tree).rc == 0, tree.failure()
    return tree


@pytest.mark.parametrize(
    "how", ["nan", "zero", "short", "mixed", "sha-not-string", "probability", "box", "box-inverted"]
)
def test_unsound_previous_records_are_recomputed_not_trusted(
    how, published, sagemaker_tree_class, tmp_path, shared_data, run_job
):
    import pickle

    payload = pickle.loads((published.model / "saved_embeddings.pkl").read_bytes())
    damaged = _tamper(payload, how)
    tree = sagemaker_tree_class(tmp_path / "opt_ml")
    tree.add_identities(shared_data / "faces-dev", limit=2)
    (tree.channel("previous") / "saved_embeddings.pkl").write_bytes(pickle.dumps(payload))

    assert run_job(tree).rc == 0, tree.failure()

    metrics = tree.metrics()
    assert (metrics["embeddings_computed"], metrics["embeddings_reused"]) == (damaged, 8 - damaged)
    expected = {identity: values for identity, _, values in published.enrollment()}
    for identity, _, values in tree.enrollment():  # as if nothing had been damaged (recomputed: float noise)
        np.testing.assert_allclose(values, expected[identity], atol=1e-5)


# --- config files and hyperparameters: bounded parsing, short messages ------------------------------


@pytest.mark.parametrize(
    ("name", "content", "words"), list(HOSTILE_CONFIG_FILES.values()), ids=list(HOSTILE_CONFIG_FILES)
)
def test_hostile_config_files_fail_fast_naming_the_file(
    name, content, words, sagemaker_tree, shared_data, run_job
):
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / KATE)
    (sagemaker_tree.channel("cfg") / name).write_bytes(content)
    started = time.perf_counter()

    run = run_job(sagemaker_tree)

    failure = sagemaker_tree.failure()
    assert run.rc == 1 and failure is not None
    assert words in failure and "Internal error" not in failure
    assert name in failure or words.startswith("'")
    assert len(failure) < 2000  # the value is shortened, not echoed
    assert time.perf_counter() - started < 60  # bounded: no expansion, no deep recursion
    assert sagemaker_tree.model_files() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", "[" * 1500 + "]" * 1500),
        ("seed", '{"a":' * 2000 + "1" + "}" * 2000),
        ("device", "x" * 10**6),
    ],
    ids=["deep-list", "deep-object", "10MB-ish"],
)
def test_hostile_hyperparameters_fail_naming_the_key(key, value, sagemaker_tree, shared_data, run_job):
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / KATE)
    sagemaker_tree.update_hyperparameters(**{key: value})

    run = run_job(sagemaker_tree)

    failure = sagemaker_tree.failure()
    assert run.rc == 1 and f"'{key}'" in failure and "Internal error" not in failure
    assert len(failure) < 2000


# --- the disk fills up while the outputs are written -------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_failed_write_names_the_file_and_disk_and_leaves_no_output(
    code, sagemaker_tree, shared_data, run_job, monkeypatch
):
    from facetrain import outputs

    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / KATE)
    real_fdopen = os.fdopen

    def failing(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        handle.write = lambda data: (_ for _ in ()).throw(OSError(code, os.strerror(code)))
        return handle

    monkeypatch.setattr(outputs.os, "fdopen", failing)
    run = run_job(sagemaker_tree)

    failure = sagemaker_tree.failure()
    assert run.rc == 1 and "facetrain bug" not in failure
    if code == errno.EIO:
        assert f"could not be written to {sagemaker_tree.model}" in failure and os.strerror(code) in failure
    else:
        assert failure.startswith(f"The disk holding {sagemaker_tree.model} is full")
        assert "TrainingVolumeSizeGB" in failure
    assert sagemaker_tree.model_files() == []


# --- SIGTERM at any moment of start-up ----------------------------------------------------------------


# A moment is a delay after the process starts (the interpreter and the imports) or a line of the job's
# log: the photos now take about 2 s in all, so a later delay could arrive after the job has finished.
START_UP_MOMENTS = [0.05, 0.5, 1.0, "embeddings:", "first photo examined"]


@pytest.mark.slow
@pytest.mark.parametrize("moment", START_UP_MOMENTS)
def test_sigterm_at_any_moment_of_start_up_exits_143_with_nothing_in_model(
    moment, sagemaker_tree, shared_data, tmp_path
):
    sagemaker_tree.add_identities(shared_data / "faces-dev")
    if isinstance(moment, str):
        rc, output = sigterm_after(sagemaker_tree, tmp_path / "train.log", moment, timeout=120)
    else:
        process = subprocess.Popen(
            [str(TRAIN), "train"],
            env=train_env(sagemaker_tree),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        time.sleep(moment)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0].decode()
        rc = process.returncode

    # Before Python has run facetrain's first line, SIGTERM's default action ends the process: the
    # container's exit status is 143 all the same (128 + 15), subprocess reports it as -15.
    if rc == -signal.SIGTERM:
        assert sagemaker_tree.failure() is None
    else:
        assert rc == 143, output[-2000:]
        assert sagemaker_tree.failure().startswith("Stopped: the job received SIGTERM")
    assert [p for p in sagemaker_tree.model_files() if not p.startswith(".")] == []
    if sagemaker_tree.model.exists():
        assert list(sagemaker_tree.model.iterdir()) == []
