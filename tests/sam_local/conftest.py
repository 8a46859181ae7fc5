"""`sam local invoke` for real: the tools it needs, the stand-in image and the `sam build` output, and one
local AWS (moto and a podman API service, container/lambda-runtime/) shared by the suite's invocations.

Missing podman, SAM CLI or the Python 3.13 pyenv skip the suite, naming the missing piece; under CI (env
var CI set) they fail it. A missing image or build is made (container/lambda-runtime/build.sh, make build).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDA_RUNTIME = REPO_ROOT / "container" / "lambda-runtime"
sys.path.insert(0, str(LAMBDA_RUNTIME))  # its modules are scripts of a folder, not a package

import local_invoke  # noqa: E402
import services  # noqa: E402


def _running_in_ci() -> bool:
    """As tests/conftest.py says it (CI=true; an explicit false/0 does not count)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _running_in_ci():
        pytest.fail(f"CI is set and {reason}; CI must run sam local invoke", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sam_local_aws() -> Iterator[local_invoke.LocalAws]:
    """The seeded local AWS and podman service, with the image and the SAM build in place."""
    missing = services.missing_tools()
    if missing:
        _unavailable("sam local invoke needs " + "; ".join(missing))
    os.environ.setdefault("CONTAINERS_CONF", str(services.PROJECT_CONTAINERS_CONF))
    image = local_invoke.DEFAULT_IMAGE
    if subprocess.run(["podman", "image", "exists", image], check=False).returncode != 0:
        subprocess.run([str(LAMBDA_RUNTIME / "build.sh"), image], check=True)
    if not local_invoke.build_is_fresh():  # missing, or older than the handlers and contract it holds
        subprocess.run(["make", "build"], cwd=REPO_ROOT, check=True)
    with local_invoke.local_aws() as aws:
        yield aws
