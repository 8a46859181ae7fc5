"""Enrollments are biometric data: the Quick start and `make run` write them outside the checkout, where
no `git add .` can commit them (issue 26), and `out/`, where older commands wrote, is ignored by git."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _quick_start() -> str:
    section = README[README.index("## Quick start") :]
    return section[: section.index("\n## ", 3)]


def _inside_checkout(folder: str) -> bool:
    return (ROOT / folder).resolve().is_relative_to(ROOT)


def test_the_quick_start_writes_and_reads_results_outside_the_checkout() -> None:
    folders = re.findall(r"--(?:out|results) (\S+)", _quick_start())
    assert folders, "the Quick start names no --out or --results folder"
    assert [f for f in folders if _inside_checkout(f)] == []


def test_make_run_writes_outside_the_checkout_by_default() -> None:
    (default,) = re.findall(r'--out "\$\(or \$\(OUT\),([^)]+)\)"', (ROOT / "Makefile").read_text())
    assert not _inside_checkout(default), default


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize(
    "path", ["out/final_mean_embeddings.csv", "out/runs/r1/saved_embeddings.pkl", ".job/model/x"]
)
def test_result_folders_inside_the_checkout_are_ignored_by_git(path: str) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{path} is not ignored by git"
