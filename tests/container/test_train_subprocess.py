"""The real `.venv/bin/train` console script in a subprocess: as SageMaker runs it, and stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TRAIN = Path(sys.executable).with_name("train")  # the console script of the venv running the tests


def train_env(tree) -> dict[str, str]:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tree.base), "PYTHONUNBUFFERED": "1"}
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # share the cores with the other xdist workers instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env


@pytest.mark.parametrize("argv", [[], ["train"]], ids=["no-argument", "train-argument"])
def test_train_script_enrolls(sagemaker_tree, shared_data, tmp_path, argv):
    assert TRAIN.is_file(), f"{TRAIN} is missing: install the project into .venv (pip install -e '.[job]')"
    sagemaker_tree.add_identities(shared_data / "faces-small")
    result = subprocess.run(
        [str(TRAIN), *argv],
        env=train_env(sagemaker_tree),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 photos of 4 identities and 0 known stranger photos on host algo-1 (1 of 1); weights=none" in (
        result.stdout
    )
    assert "NOT FOR PRODUCTION" in result.stdout
    assert "enrolled 4 identities from 4 of 4 photos" in result.stdout
    assert sagemaker_tree.model_files() == [
        "final_mean_embeddings.csv",
        "metrics.json",
        "rejected.csv",
        "report.html",
        "rules.py",
        "saved_embeddings.pkl",
    ]
    assert [name for name, _, _ in sagemaker_tree.enrollment()] == sorted(
        p.name for p in (shared_data / "faces-small").iterdir() if p.is_dir()
    )
    assert sagemaker_tree.failure() is None


def test_train_script_failure_goes_to_output_failure(sagemaker_tree, shared_data, tmp_path):
    sagemaker_tree.add_identities(shared_data / "faces-small")
    sagemaker_tree.update_hyperparameters(learning_rate="0.1")
    result = subprocess.run(
        [str(TRAIN), "train"],
        env={**train_env(sagemaker_tree), "FACETRAIN_LOG_LEVEL": "DEBUG"},  # the reason is logged at DEBUG
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "ERROR facetrain: job failed (SettingsError): the reason is in output/failure" in result.stdout
    assert "DEBUG facetrain: job failed: Invalid settings: unknown key 'learning_rate'" in result.stdout
    assert sagemaker_tree.failure().startswith("Invalid settings: unknown key 'learning_rate'")


def wait_for(path, text: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text(encoding="utf-8", errors="replace")
        if text in log:
            return log
        if process.poll() is not None:
            pytest.fail(f"train ended (rc {process.returncode}) before logging {text!r}:\n{log}")
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"train did not log {text!r} within {timeout} s:\n{path.read_text(encoding='utf-8')}")


def sigterm_after(tree, log_path: Path, text: str, timeout: float) -> tuple[int, str]:
    """Run `train train` on `tree` (output to `log_path`), SIGTERM it once its log shows `text`; return
    its exit code and its whole log."""
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [str(TRAIN), "train"],
            env=train_env(tree),
            cwd=log_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(log_path, text, process, timeout=timeout)
            process.send_signal(signal.SIGTERM)
            rc = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return rc, log_path.read_text(encoding="utf-8")


def test_sigterm_stops_the_job_cleanly(sagemaker_tree, shared_data, tmp_path):
    copies = 4  # faces-dev 4 times over (96 photos) plus faces-small (4): 100 photos
    for copy in range(copies):
        for photo in sorted((shared_data / "faces-dev").glob("*/*.jpg")):
            sagemaker_tree.add_photo(photo.parent.name, f"copy{copy}_{photo.name}", photo)
    sagemaker_tree.add_identities(shared_data / "faces-small")
    total = sum(1 for p in sagemaker_tree.images.rglob("*.jpg"))
    assert total == 100

    log_path = tmp_path / "train.log"
    rc, output = sigterm_after(sagemaker_tree, log_path, f"progress: 25/{total} photos processed", 240)
    assert rc == 143, output
    assert f"progress: {total}/{total}" not in output  # it really was stopped mid-way
    assert "Stopped: the job received SIGTERM" in output
    failure = sagemaker_tree.failure()
    assert failure is not None
    assert failure.startswith("Stopped: the job received SIGTERM")
    # no enrollment, no partial or temporary file in model/
    assert not (sagemaker_tree.model / "final_mean_embeddings.csv").exists()
    assert sagemaker_tree.model_files() == []
