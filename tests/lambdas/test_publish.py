"""model.tar.gz verification and publishing order, against moto S3."""

from __future__ import annotations

import io
import json
import pickle
import re
import tarfile

import pytest
from facetrain.contract.enrollment_csv import parse_csv
from facetrain_lambdas import publish
from facetrain_lambdas.artifact import read_model_archive, verify_results
from facetrain_lambdas.errors import ResultsInvalid
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.validate import validate_run
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET
from support.testkit import model_files, model_tar, upload_photos

PHOTOS = {"alice": 2, "bob": 3}
CURRENT = ("final_mean_embeddings.csv", "rules.py", "saved_embeddings.pkl")
ARTIFACT = "results/runs/r1/training/facetrain-r1/output/model.tar.gz"


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo owned",))


def _broken(name: str) -> dict[str, bytes]:
    files = model_files(PHOTOS)
    if name == "csv-width":
        files["final_mean_embeddings.csv"] = files["final_mean_embeddings.csv"].replace(b"\n", b',"x"\n', 2)
    elif name == "rules-code":
        files["rules.py"] += b"\nimport os\n"
    elif name == "rules-identities":
        files["rules.py"] = files["rules.py"].replace(b"'bob'", b"'eve'")
    elif name == "pickle-global":
        files["saved_embeddings.pkl"] = pickle.dumps(_Evil())
    elif name == "metrics-missing":
        del files["metrics.json"]
    elif name == "metrics-keys":
        files["metrics.json"] = json.dumps(
            {"format": "facetrain.metrics", "version": 1, "identities": 2}
        ).encode()
    elif name == "metrics-format":
        files["metrics.json"] = json.dumps({"identities": 2}).encode()
    elif name == "metrics-count":
        metrics = json.loads(files["metrics.json"])
        files["metrics.json"] = json.dumps({**metrics, "identities": 5}).encode()
    return files


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("csv-width", "does not match the header"),
        ("rules-code", "statements other than RULES"),
        ("rules-identities", "lists other identities"),
        ("pickle-global", "posix.system, which is not allowed"),
        ("metrics-missing", "lacks metrics.json"),
        (
            "metrics-keys",
            "metrics.json does not fit facetrain.metrics version 1: .*images_total: Field required",
        ),
        ("metrics-format", "metrics.json is format None version None, not facetrain.metrics version 1"),
        ("metrics-count", "counts 5 identities"),
    ],
)
def test_verification_refuses_broken_results(name: str, expected: str) -> None:
    with pytest.raises(ResultsInvalid, match=expected):
        verify_results(read_model_archive(io.BytesIO(model_tar(_broken(name)))))


def test_good_results_in_either_member_naming() -> None:
    for dot_slash in (False, True):
        results = verify_results(read_model_archive(io.BytesIO(model_tar(model_files(PHOTOS), dot_slash))))
        assert results.identities == ["alice", "bob"] and results.not_for_production


def test_results_of_either_embedder_verify_with_their_own_dimension() -> None:
    for embedder, dimension in (("facenet", 512), ("dlib-resnet", 128)):
        verified = verify_results(model_files(PHOTOS, embedder=embedder))
        assert verified.identities == list(PHOTOS)
        assert len(parse_csv(verified.files["final_mean_embeddings.csv"].decode())[0][2]) == dimension


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("pickle-embedder", "says embedder 'dlib-resnet', saved_embeddings.pkl 'facenet'"),
        ("rules-embedder", "unknown embedder 'arcface'"),
        ("dimension", "embedder dlib-resnet makes 128"),
    ],
)
def test_results_whose_embedder_disagrees_are_refused(tamper: str, expected: str) -> None:
    files = model_files(PHOTOS, embedder="dlib-resnet")
    if tamper == "pickle-embedder":
        files["saved_embeddings.pkl"] = model_files(PHOTOS, embedder="facenet")["saved_embeddings.pkl"]
    elif tamper == "rules-embedder":
        files["rules.py"] = files["rules.py"].replace(b"'dlib-resnet'", b"'arcface'")
        payload = pickle.loads(files["saved_embeddings.pkl"])
        payload["metadata"]["embedder"] = "arcface"
        files["saved_embeddings.pkl"] = pickle.dumps(payload)
    else:  # facenet-sized files that claim to be dlib-resnet's
        facenet = model_files(PHOTOS, embedder="facenet")
        files = {**facenet, "rules.py": facenet["rules.py"].replace(b"'facenet'", b"'dlib-resnet'")}
        payload = pickle.loads(files["saved_embeddings.pkl"])
        payload["metadata"]["embedder"] = "dlib-resnet"
        files["saved_embeddings.pkl"] = pickle.dumps(payload)
    with pytest.raises(ResultsInvalid, match=re.escape(expected)):
        verify_results(files)


def test_links_and_garbage_are_refused() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("rules.py")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ResultsInvalid, match="not a regular file"):
        read_model_archive(io.BytesIO(buffer.getvalue()))
    with pytest.raises(ResultsInvalid, match="cannot be read"):
        read_model_archive(io.BytesIO(b"not a tarball"))


@pytest.fixture
def run_pointer(s3, function_env):
    upload_photos(s3, BUCKET, PHOTOS)
    return validate_run(s3, resolve_request({"run_id": "r1"}, "exec-1", StackDefaults(bucket=BUCKET)), 10**6)


def _event(pointer, artifact: str = f"s3://{BUCKET}/{ARTIFACT}") -> dict:
    return {
        "execution": "exec-1",
        "run": pointer.model_dump(),
        "job": {"training_job_name": "facetrain-r1", "model_artifacts": artifact, "billable_seconds": 99},
    }


def _seed_current(s3) -> dict[str, bytes]:
    old = {name: f"old {name}".encode() for name in (*CURRENT, "latest.json")}
    for name, body in old.items():
        s3.put_object(Bucket=BUCKET, Key=f"results/{name}", Body=body)
    return old


def _read(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_publish_writes_run_files_then_current_files_and_latest(s3, run_pointer) -> None:
    _seed_current(s3)
    files = model_files(PHOTOS)
    s3.put_object(Bucket=BUCKET, Key=ARTIFACT, Body=model_tar(files))

    result = publish.handler(_event(run_pointer), LambdaContext("publish"))

    for name, body in files.items():
        assert _read(s3, f"results/runs/r1/{name}") == body
    for name in CURRENT:
        assert _read(s3, f"results/{name}") == files[name]
    latest = json.loads(_read(s3, "results/latest.json"))
    assert latest["run_id"] == "r1" and latest["identities"] == 2 and latest["not_for_production"] is True
    assert latest["current_files"]["rules.py"] == "results/rules.py"
    assert result["latest_key"] == "results/latest.json"
    assert "published 2 identities" in result["summary"] and "NOT FOR PRODUCTION" in result["summary"]
    assert "99 billable seconds" in result["summary"]


@pytest.mark.parametrize("problem", ["rules-code", "pickle-global", "metrics-missing"])
def test_invalid_results_leave_current_results_untouched(s3, run_pointer, problem: str) -> None:
    old = _seed_current(s3)
    s3.put_object(Bucket=BUCKET, Key=ARTIFACT, Body=model_tar(_broken(problem)))

    with pytest.raises(ResultsInvalid):
        publish.handler(_event(run_pointer), LambdaContext("publish"))

    for name, body in old.items():
        assert _read(s3, f"results/{name}") == body
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="results/runs/r1/rules.py").get("Contents")


def test_artifact_outside_the_run_is_refused(s3, run_pointer) -> None:
    s3.put_object(Bucket=BUCKET, Key="elsewhere/model.tar.gz", Body=model_tar(model_files(PHOTOS)))
    with pytest.raises(ResultsInvalid, match="is not under"):
        publish.handler(
            _event(run_pointer, f"s3://{BUCKET}/elsewhere/model.tar.gz"), LambdaContext("publish")
        )
