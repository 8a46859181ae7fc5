"""Every environment the project makes, locked: which inputs each lock file resolves, for which Python and
platform, and the commands that write, check and verify them.

    python tools/locks.py write [--upgrade-package NAME ...]  re-resolve every lock (`make lock`)
    python tools/locks.py check                               fail on a lock out of date (`make lock-check`)
    python tools/locks.py installed LOCK [LOCK ...]           fail unless this interpreter's environment is
                                                              exactly the LOCKs (plus the facetrain project)

Resolving is uv's (`uv pip compile --generate-hashes`); installing is pip's (`pip install --require-hashes`):
the torch/torchvision wheels lie on the machines' disk where pip finds them and uv does not look (a fresh
set-up would download ~3 GB). A lock that names another lock as a constraint gets the same versions for
the packages they share: the image, the Lambda layer and the functions run what the tests ran.

`check` re-resolves each lock into a copy of itself (uv keeps the versions a lock already has unless its
inputs rule them out, exactly as `write` does) and compares; it needs the package index, as `write` does.
`installed` is ours: neither pip nor uv compares an environment with a requirements file both ways
(missing, different and extra distributions).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPILE_COMMAND = "make lock"  # what each lock's header says regenerates it
LINUX_GLIBC_2_28 = "x86_64-manylinux_2_28"  # this machine kind, CI and the training image (Debian 12)
LAMBDA_PYTHON_3_13 = "x86_64-manylinux_2_34"  # the python3.13 Lambda runtime (Amazon Linux 2023, x86_64)
PROJECT = "facetrain"  # installed from the checkout itself, never from a lock


@dataclass(frozen=True)
class Lock:
    """One lock file: `inputs` (pyproject.toml with `extras`, or .in files) resolved for one Python and
    platform, with `constraints` (pins or other locks) applied."""

    output: str
    inputs: tuple[str, ...]
    python: str = "3.11"
    platform: str = LINUX_GLIBC_2_28
    extras: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    purpose: str = ""

    def compile_args(self, output: Path) -> list[str]:
        """The `uv pip compile` arguments that write this lock to `output`."""
        args = ["pip", "compile", *self.inputs]
        for extra in self.extras:
            args += ["--extra", extra]
        for constraint in self.constraints:
            args += ["--constraint", constraint]
        return [
            *args,
            "--generate-hashes",
            "--python-version",
            self.python,
            "--python-platform",
            self.platform,
            "--custom-compile-command",
            COMPILE_COMMAND,
            "--quiet",
            "--output-file",
            str(output),
        ]


# In dependency order: a lock used as a constraint comes before the locks that use it.
LOCKS: tuple[Lock, ...] = (
    Lock(
        "requirements/build.txt",
        ("requirements/build.in",),
        purpose="pip and setuptools, installed first (builds run without isolation, on these)",
    ),
    Lock(
        "requirements/dev.txt",
        ("pyproject.toml", "requirements/build.in"),
        extras=("job", "torch", "dlib", "lambdas", "offline", "dev"),
        constraints=("requirements/pins.in", "requirements/build.txt"),
        purpose="the main .venv (make setup)",
    ),
    Lock(
        "requirements/job.txt",
        ("pyproject.toml", "requirements/build.in"),
        extras=("job", "dlib"),
        constraints=("requirements/dev.txt",),
        purpose="the training image's final stage (container/Dockerfile), no torch: the tests' versions",
    ),
    Lock(
        "requirements/job-gpu.txt",
        ("pyproject.toml", "requirements/build.in"),
        extras=("gpu", "dlib"),
        constraints=("requirements/dev.txt",),
        purpose="the GPU training image's final stage (ACCELERATOR=gpu): onnxruntime-gpu, CUDA 12",
    ),
    Lock(
        "requirements/export.txt",
        ("pyproject.toml", "requirements/build.in"),
        extras=("job", "torch"),
        constraints=("requirements/dev.txt",),
        purpose="the training image's export stage: torch makes the ONNX models, as in the tests",
    ),
    Lock(
        "requirements/launch.txt",
        ("pyproject.toml", "requirements/build.in"),
        extras=("launch",),
        constraints=("requirements/build.txt",),  # not dev.txt: graphql-core differs (pyproject.toml)
        purpose="`facetrain launch` with the SageMaker SDK (.venv-launch)",
    ),
    Lock(
        "container/layer-requirements.txt",
        ("container/layer-requirements.in",),
        python="3.13",
        platform=LAMBDA_PYTHON_3_13,
        constraints=("requirements/dev.txt",),
        purpose="the Lambda layer (container/Makefile, sam build)",
    ),
    Lock(
        "lambdas/requirements.txt",
        ("lambdas/requirements.in",),
        python="3.13",
        platform=LAMBDA_PYTHON_3_13,
        constraints=("requirements/dev.txt",),
        purpose="the Lambda functions (sam build)",
    ),
    Lock(
        "container/lambda-runtime/requirements.txt",
        ("container/lambda-runtime/requirements.in",),
        python="3.13",
        platform=LAMBDA_PYTHON_3_13,
        constraints=("requirements/dev.txt",),
        purpose="the python3.13 Lambda runtime stand-in (awslambdaric, boto3; make invoke)",
    ),
    Lock(
        "requirements/sam-cli.txt",
        ("requirements/sam-cli.in",),
        constraints=("requirements/build.txt",),
        purpose="the SAM CLI (.venv-sam)",
    ),
    Lock(
        "requirements/checkov.txt",
        ("requirements/checkov.in",),
        constraints=("requirements/build.txt",),
        purpose="checkov (.venv-checkov)",
    ),
)


def _uv(args: Sequence[str]) -> None:
    """Run this interpreter's uv (the dev lock installs it) from the repository root."""
    subprocess.run([sys.executable, "-m", "uv", *args], cwd=ROOT, check=True)  # noqa: S603 (our own args)


def write(upgrade: Sequence[str] = ()) -> None:
    """Re-resolve every lock in place, keeping its versions except for the `upgrade` packages."""
    for lock in LOCKS:
        extra = [arg for name in upgrade for arg in ("--upgrade-package", name)]
        _uv([*lock.compile_args(ROOT / lock.output), *extra])
        print(f"wrote {lock.output} ({lock.purpose})")


def check() -> list[str]:
    """The locks whose re-resolution differs from the committed file (each with a unified diff)."""
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for lock in LOCKS:
            committed = ROOT / lock.output
            fresh = Path(scratch) / committed.name
            if committed.is_file():
                shutil.copyfile(committed, fresh)  # its versions are uv's preferences, as in `write`
            _uv(lock.compile_args(fresh))
            old = committed.read_text().splitlines(keepends=True) if committed.is_file() else []
            new = fresh.read_text().splitlines(keepends=True)
            diff = "".join(difflib.unified_diff(old, new, lock.output, f"{lock.output} (re-resolved)"))
            if diff:
                stale.append(diff)
    return stale


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    """A distribution name normalised as PEP 503 says."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock_file: Path) -> dict[str, str]:
    """{canonical name: version} of a lock file's `name==version` lines."""
    found: dict[str, str] = {}
    for line in lock_file.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def installed_distributions() -> dict[str, str]:
    """{canonical name: version} of every distribution this interpreter's environment holds."""
    return {
        canonical(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }


def environment_problems(locked: dict[str, str], present: dict[str, str]) -> list[str]:
    """How `present` differs from `locked`: missing, other versions and unlocked extras (the project
    itself excepted). Empty when the environment is exactly the lock."""
    problems = [
        f"{name}=={version} is locked but not installed"
        for name, version in locked.items()
        if name not in present
    ]
    problems += [
        f"{name} is {present[name]}, the lock says {version}"
        for name, version in locked.items()
        if name in present and present[name] != version
    ]
    problems += [
        f"{name}=={version} is installed but not in the lock"
        for name, version in present.items()
        if name not in locked and name != PROJECT
    ]
    return sorted(problems)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/locks.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write_cmd = commands.add_parser("write", help="re-resolve every lock file")
    write_cmd.add_argument(
        "--upgrade-package",
        action="append",
        default=[],
        metavar="NAME",
        help="let this package move to its newest allowed version (repeatable)",
    )
    commands.add_parser("check", help="fail when a lock file is out of date with its inputs")
    verify = commands.add_parser("installed", help="fail unless this environment is exactly the LOCKs")
    verify.add_argument("locks", type=Path, nargs="+", metavar="LOCK")
    args = parser.parse_args(argv)

    if args.command == "write":
        write(args.upgrade_package)
        return 0
    if args.command == "check":
        stale = check()
        for diff in stale:
            sys.stdout.write(diff)
        if stale:
            print(
                f"{len(stale)} lock file(s) out of date with pyproject.toml or their .in files:"
                " run `make lock` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"all {len(LOCKS)} lock files are up to date")
        return 0
    locked: dict[str, str] = {}
    for lock_file in args.locks:
        locked.update(pins(lock_file))
    names = " + ".join(str(lock_file) for lock_file in args.locks)
    problems = environment_problems(locked, installed_distributions())
    for problem in problems:
        print(f"{names}: {problem}", file=sys.stderr)
    if problems:
        print(f"this environment ({sys.prefix}) is not {names}: recreate it (make setup)", file=sys.stderr)
        return 1
    print(f"{sys.prefix} holds exactly {names} ({len(locked)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
