"""The `shared_data` fixture of tests/conftest.py: skip with a reason without the photos, fail under CI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SUITE_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """Run a one-test pytest session whose shared_data fixture looks in an empty folder."""
    probe = tmp_path / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "conftest.py").write_text(
        textwrap.dedent(
            f"""\
            import importlib.util
            from pathlib import Path

            spec = importlib.util.spec_from_file_location("suite_conftest", {str(SUITE_CONFTEST)!r})
            suite = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(suite)
            suite.SHARED_DATA = Path({str(tmp_path / "no_shared_data")!r})
            shared_data = suite.shared_data
            """
        ),
        encoding="utf-8",
    )
    (probe / "test_probe.py").write_text("def test_uses_photos(shared_data):\n    pass\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist", str(probe)],
        cwd=probe,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_missing_photos_skip_with_a_reason(tmp_path, ci):
    result = run_probe(tmp_path, ci)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "the real test photos are missing" in result.stdout
    assert "no_shared_data" in result.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_photos_fail_under_ci(tmp_path, ci):
    result = run_probe(tmp_path, ci)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "CI is set and the real test photos are missing" in result.stdout


def test_present_photos_are_given(shared_data):
    assert shared_data.resolve() == (Path(__file__).resolve().parents[2].parent / "shared" / "data").resolve()
    assert (shared_data / "faces-small").is_dir()
