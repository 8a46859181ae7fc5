"""Ctrl-C (or SIGTERM) at every step of `facetrain run --state` ends truthfully, and the next run works.

One state folder goes through a published run, then a run interrupted at each line the CLI prints (each
state of the state machine as it is entered, the upload, the job, the outcome, the save), then a plain
run. After each, exactly one of the two outcomes holds:
- ABORTED, exit 130: nothing published — the state's latest.json is the one from before, not re-saved;
- SUCCEEDED, exit 0: the run published — the state and OUT_DIR hold its latest.json and every file it names.
And always: the state's latest.json names only files the state holds, and no save is left half done.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from facetrain_offline import cli, photo_upload, runner
from facetrain_offline.run_summary import read_run_summary

pytestmark = pytest.mark.slow
FACETRAIN = Path(sys.executable).with_name("facetrain")
SLOW_LAMBDA_SECONDS = 1.0

# Where the interrupt comes: the start of a line the CLI prints (the first such line), and the signal.
# Every state the console input passes through on the way to a published run, plus the phases around.
INTERRUPTS = [
    ("state  restored", signal.SIGINT),  # the upload is next
    ("start  execution", signal.SIGINT),
    ("state  RouteTrigger", signal.SIGINT),
    ("state  Validate", signal.SIGINT),
    ("state  AnythingToTrain", signal.SIGINT),
    ("state  StartTrainingJob", signal.SIGINT),
    ("job    ", signal.SIGTERM),  # a plain kill, while the job starts
    ("train  ", signal.SIGINT),  # the job's container is running
    ("state  WaitForTrainingJob", signal.SIGINT),
    ("state  PollTrainingJob", signal.SIGINT),
    ("state  TrainingJobDone", signal.SIGINT),
    ("state  Publish", signal.SIGINT),
    ("state  RunEnded", signal.SIGINT),
    ("state  NotifySuccess", signal.SIGINT),
    ("notify ", signal.SIGINT),  # the outcome is being read
    ("state  saving", signal.SIGINT),  # the state is being saved
    ("state  saved", signal.SIGINT),  # the local AWS is torn down next
]


@pytest.fixture
def default_sigint():
    """Ctrl-C as a terminal delivers it (a test runner's worker may have changed SIGINT's handler)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _photos(shared_data: Path, target: Path) -> Path:
    for identity in sorted(p for p in (shared_data / "faces-small").iterdir() if p.is_dir()):
        shutil.copytree(identity, target / identity.name)
    return target


def _facetrain(monkeypatch, args: list[str], interrupts: list[tuple[str, int]]) -> tuple[int, str]:
    """`facetrain ARGS`, in-process; each (line start, signal) sends the signal to this process as the
    first line starting so is printed (in the order given). Exit code and screen."""
    screen: list[str] = []
    pending = list(interrupts)

    def print_and_interrupt(*values, file=None, flush=False):
        line = " ".join(str(v) for v in values)
        screen.append(line)
        if pending and line.startswith(pending[0][0]):
            os.kill(os.getpid(), pending.pop(0)[1])

    with monkeypatch.context() as patch:
        patch.setattr(cli, "print", print_and_interrupt, raising=False)
        code = cli.main(args)
    return code, "\n".join(screen)


@pytest.fixture
def slow_lambdas(monkeypatch):
    """Validate, start and publish take a second, as they do on thousands of photos: an interrupt lands
    while their invocation is under way (StopExecution does not cancel it; the run must wait for it)."""
    real_deploy = runner.deploy

    def slow(function: str, event: dict) -> None:
        if function in ("ValidateFunction", "StartFunction", "PublishFunction"):
            time.sleep(SLOW_LAMBDA_SECONDS)

    def deploy_with_slow_lambdas(*args, **kwargs):
        stack = real_deploy(*args, **kwargs)
        stack.lambdas.hooks.append(slow)
        return stack

    monkeypatch.setattr(runner, "deploy", deploy_with_slow_lambdas)


def _published(state: Path) -> dict | None:
    latest = state / "bucket" / "results" / "latest.json"
    return json.loads(latest.read_text()) if latest.is_file() else None


def _assert_whole(state: Path) -> None:
    """The state's latest.json names only files the state holds; no save was left half done."""
    latest = _published(state)
    assert latest is not None
    for key in [*latest["current_files"].values(), *latest["run_files"].values()]:
        assert (state / "bucket" / key).is_file(), f"latest.json names {key}, which the state does not hold"
    assert not (state / ".bucket-new").exists() and not (state / ".bucket-old").exists()


def test_an_interrupt_at_any_step_ends_truthfully_and_the_next_run_works(
    shared_data, tmp_path, monkeypatch, default_sigint, slow_lambdas
):
    images = _photos(shared_data, tmp_path / "photos")
    state = tmp_path / "state"

    def args(name: str, *more: str) -> list[str]:
        return [
            "run",
            str(images),
            "--out",
            str(tmp_path / name),
            "--state",
            str(state),
            "-p",
            "weights=none",
            *more,
        ]

    code, screen = _facetrain(monkeypatch, args("first"), [])
    assert code == 0, screen
    _assert_whole(state)
    outcomes: dict[str, str] = {}
    for at, signum in INTERRUPTS:
        before = _published(state)
        name = f"out-{len(outcomes)}"
        code, screen = _facetrain(monkeypatch, args(name, "--force"), [(at, signum)])
        summary = read_run_summary(tmp_path / name / "run.json")
        where = f"interrupted at {at!r}:\n{screen}"
        assert summary.interrupted or at in ("notify ", "state  saving", "state  saved")  # held off, where
        if code == 130:
            assert summary.status == "ABORTED" and summary.error in ("ExecutionAborted", "Interrupted"), where
            assert summary.results == [] and not (tmp_path / name / "latest.json").exists(), where
            assert _published(state) == before, where  # nothing published, the state as it was
            assert "state  not saved" in screen, where
        else:
            assert code == 0 and summary.status == "SUCCEEDED", where
            after = _published(state)
            assert after is not None and after["run_id"] != before["run_id"], where  # it published
            out_latest = json.loads((tmp_path / name / "latest.json").read_text())
            assert out_latest == after, where
            assert "state  saved" in screen, where
        assert all(e.status != "RUNNING" for e in summary.executions), where  # read once they ended
        assert "Traceback" not in screen and "a facetrain bug" not in screen, where
        _assert_whole(state)
        outcomes[at] = summary.status
    # Before the job has ended: stopped. From Publish on: finished (a publishing execution is let finish,
    # and once the executions have ended the interrupt waits for the save). Between: either, by timing.
    stopped = [at for at, _ in INTERRUPTS[: INTERRUPTS.index(("state  WaitForTrainingJob", signal.SIGINT))]]
    finished = [at for at, _ in INTERRUPTS[INTERRUPTS.index(("state  Publish", signal.SIGINT)) :]]
    assert {outcomes[at] for at in stopped} == {"ABORTED"}, outcomes
    assert {outcomes[at] for at in finished} == {"SUCCEEDED"}, outcomes

    code, screen = _facetrain(monkeypatch, args("last"), [])
    assert code == 0, screen
    _assert_whole(state)


def test_a_second_ctrl_c_ends_the_wait_and_leaves_the_state_as_it_was(
    shared_data, tmp_path, monkeypatch, default_sigint
):
    images = _photos(shared_data, tmp_path / "photos")
    state = tmp_path / "state"
    base = ["run", str(images), "--state", str(state), "-p", "weights=none"]
    assert _facetrain(monkeypatch, [*base, "--out", str(tmp_path / "a")], [])[0] == 0
    before = _published(state)

    code, screen = _facetrain(
        monkeypatch,
        [*base, "--out", str(tmp_path / "b"), "--force"],
        [("train  ", signal.SIGINT), ("stop   waiting", signal.SIGINT)],
    )
    assert code == 130, screen
    summary = read_run_summary(tmp_path / "b" / "run.json")
    assert (
        summary.status == "ABORTED"
        and summary.interrupted
        and "nothing was published" in summary.failure_reason
    )
    assert "Ctrl-C again: not waiting any longer" in screen and "state  not saved" in screen
    assert _published(state) == before
    _assert_whole(state)


def test_an_interrupt_while_the_stack_is_deployed_writes_an_aborted_run_json(
    shared_data, tmp_path, monkeypatch, default_sigint
):
    images = _photos(shared_data, tmp_path / "photos")
    real_deploy = runner.deploy

    def deploy_then_ctrl_c(*args, **kwargs):
        stack = real_deploy(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # arrives as deploy returns
        return stack

    monkeypatch.setattr(runner, "deploy", deploy_then_ctrl_c)
    code = cli.main(["run", str(images), "--out", str(tmp_path / "out"), "--state", str(tmp_path / "state")])
    assert code == 130
    summary = read_run_summary(tmp_path / "out" / "run.json")
    assert summary.status == "ABORTED" and summary.error == "Interrupted" and summary.executions_started == 0
    assert "deploying the local stack" in summary.failure_reason
    assert not (tmp_path / "state" / "bucket").exists()


def test_a_photo_that_vanishes_while_uploading_fails_the_run_with_its_name(
    shared_data, tmp_path, monkeypatch
):
    images = _photos(shared_data, tmp_path / "photos")
    state = tmp_path / "state"
    gone = sorted(images.rglob("*.*"))[-1]
    real_scan = photo_upload.scan_photo_folder

    def scan_then_delete(*args, **kwargs):
        listing = real_scan(*args, **kwargs)
        if sys._getframe(1).f_code.co_name == "sync_images":  # not the CLI's check of the names before
            gone.unlink()  # removed after the upload listed it, before it is uploaded
        return listing

    monkeypatch.setattr(photo_upload, "scan_photo_folder", scan_then_delete)
    code, screen = _facetrain(
        monkeypatch, ["run", str(images), "--out", str(tmp_path / "out"), "--state", str(state)], []
    )
    assert code == 1, screen
    summary = read_run_summary(tmp_path / "out" / "run.json")
    assert summary.status == "FAILED" and summary.error == "PhotoFolderError", summary
    assert gone.name in summary.failure_reason and summary.training_jobs_started == 0
    assert "Traceback" not in screen and "state  not saved" in screen
    assert not (state / "bucket").exists()


# Loaded by the killed `facetrain run` through PYTHONPATH: it SIGKILLs itself as the save makes its
# KILL_AT-th folder in the new copy, so that the kill lands mid-save whatever the machine's speed.
KILL_MID_SAVE = """
import os, pathlib, signal
_mkdir, _made = pathlib.Path.mkdir, [0]
def mkdir(self, *args, **kwargs):
    if ".bucket-new" in self.parts:
        _made[0] += 1
        if _made[0] == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return _mkdir(self, *args, **kwargs)
pathlib.Path.mkdir = mkdir
"""


def test_a_run_killed_while_it_saves_the_state_leaves_it_whole(shared_data, tmp_path, monkeypatch):
    """SIGKILL cannot be held off: the save it cuts is discarded by the next run, which says so."""
    images = _photos(shared_data, tmp_path / "photos")
    state = tmp_path / "state"
    base = ["run", str(images), "--state", str(state), "-p", "weights=none"]
    assert _facetrain(monkeypatch, [*base, "--out", str(tmp_path / "a")], [])[0] == 0
    before = _published(state)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_MID_SAVE)

    killed = subprocess.run(
        [str(FACETRAIN), *base, "--out", str(tmp_path / "b"), "--force"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(hook), "KILL_AT": "6"},
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert "state  saving" in killed.stdout and "state  saved" not in killed.stdout
    assert (state / ".bucket-new").exists() and _published(state) == before  # cut mid-save: old copy held

    code, screen = _facetrain(monkeypatch, [*base, "--out", str(tmp_path / "c")], [])
    assert code == 0, screen
    assert "discarded an incomplete copy left by an interrupted save" in screen
    _assert_whole(state)
