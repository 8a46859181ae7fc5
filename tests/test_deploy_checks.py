"""tools/deploy_checks.py: the one region of `make image`, `make deploy` and `make delete`, and what
`make deploy` refuses (an image of another region, poll waits out of order) — also through the Makefile."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import deploy_checks
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / "tools" / "deploy_checks.py"
IMAGE_EU = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/facetrain:1a2b3c4"


def _never_asked() -> str | None:
    raise AssertionError("the AWS CLI is asked only when neither variable is set")


@pytest.mark.parametrize(
    ("environ", "configured", "expected"),
    [
        ({"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-east-1"}, _never_asked, "eu-central-1"),
        ({"AWS_DEFAULT_REGION": "us-east-1"}, _never_asked, "us-east-1"),
        ({"AWS_REGION": " "}, lambda: "ap-south-1", "ap-south-1"),
        ({}, lambda: None, None),
    ],
)
def test_the_region_is_aws_region_then_aws_default_region_then_the_cli(environ, configured, expected) -> None:
    assert deploy_checks.resolve_region(environ, configured) == expected


def test_an_image_of_another_region_is_refused_naming_both() -> None:
    defaults = deploy_checks.template_defaults()
    assert deploy_checks.deploy_problems("eu-west-1", {"TrainingImageUri": IMAGE_EU}, defaults) == []
    (problem,) = deploy_checks.deploy_problems("us-east-1", {"TrainingImageUri": IMAGE_EU}, defaults)
    assert "region eu-west-1" in problem and "region us-east-1" in problem


def test_a_max_poll_interval_below_the_first_is_refused_with_template_defaults_for_the_other() -> None:
    defaults = deploy_checks.template_defaults()
    assert int(defaults["PollIntervalSeconds"]) <= int(defaults["MaxPollIntervalSeconds"])
    overrides = deploy_checks.parse_overrides(f"TrainingImageUri={IMAGE_EU} PollIntervalSeconds=1800")
    (problem,) = deploy_checks.deploy_problems("eu-west-1", overrides, defaults)
    assert "MaxPollIntervalSeconds 900 is below PollIntervalSeconds 1800" in problem


def test_overrides_are_read_as_sam_reads_them() -> None:
    text = f"TrainingImageUri={IMAGE_EU} ScheduleExpression='rate(7 days)' TrainingImageUri=x"
    assert deploy_checks.parse_overrides(text) == {
        "TrainingImageUri": "x",
        "ScheduleExpression": "rate(7 days)",
    }
    with pytest.raises(ValueError, match="NAME=VALUE"):
        deploy_checks.parse_overrides("NotificationEmail")


def _stub_aws(tmp_path: Path, region: str | None) -> dict[str, str]:
    """An environment whose `aws configure get region` answers `region` (exit 1 without one)."""
    stub = tmp_path / "bin" / "aws"
    stub.parent.mkdir(parents=True)
    answer = f"print({region!r})" if region else "sys.exit(1)"
    stub.write_text(
        f"#!{sys.executable}\nimport sys\nassert sys.argv[1:] == ['configure', 'get', 'region']\n{answer}\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    environ = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    return {**environ, "PATH": f"{stub.parent}{os.pathsep}{environ['PATH']}"}


def test_the_command_line_prints_the_configured_region_or_says_how_to_set_one(tmp_path: Path) -> None:
    environ = _stub_aws(tmp_path, "eu-north-1")
    found = subprocess.run([sys.executable, TOOL, "region"], env=environ, capture_output=True, text=True)
    assert (found.returncode, found.stdout) == (0, "eu-north-1\n")
    os.remove(tmp_path / "bin" / "aws")
    missing = subprocess.run(
        [sys.executable, TOOL, "region"], env=_stub_aws(tmp_path / "x", None), capture_output=True, text=True
    )
    assert missing.returncode == 1 and "AWS_REGION" in missing.stderr and missing.stdout == ""


def test_make_deploy_refuses_an_image_of_another_region_before_building(tmp_path: Path) -> None:
    """The Makefile's deploy-check (deploy's first prerequisite) with the region only from `aws configure`."""
    environ = _stub_aws(tmp_path, "us-east-1")
    uri_file = REPO_ROOT / "container" / "image_uri.txt"
    if uri_file.exists():
        pytest.skip("container/image_uri.txt exists in this checkout: not overwritten by a test")
    uri_file.write_text(IMAGE_EU + "\n")
    try:
        result = subprocess.run(
            ["make", "--no-print-directory", "deploy-check", f"BIN={Path(sys.executable).parent}"],
            cwd=REPO_ROOT,
            env=environ,
            capture_output=True,
            text=True,
        )
    finally:
        uri_file.unlink()
    assert result.returncode != 0
    assert "region eu-west-1, but the stack deploys to region us-east-1" in result.stderr
