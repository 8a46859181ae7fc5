"""model.tar.gz verification, publishing order and the stop check, against moto S3 and moto's Step
Functions (its ASL interpreter running the executions whose status the stop check reads)."""

from __future__ import annotations

import io
import json
import pickle
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from facetrain.contract.enrollment_csv import parse_csv
from facetrain_lambdas import publish
from facetrain_lambdas.artifact import read_model_archive, verify_results
from facetrain_lambdas.errors import ResultsInvalid
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.validate import validate_run
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET
from moto import mock_aws
from pydantic import ValidationError
from support.hostile_rules import utf7_cookie_payload
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
    elif name == "rules-utf7":  # issue 25: `coding: utf-7` makes `import rules` run a "comment"
        files["rules.py"] = utf7_cookie_payload(files["rules.py"], 'open("marker", "w").write("ran")')
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
        ("rules-utf7", r"line 1 is a coding declaration \('utf-7'\)"),
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
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """conftest's moto account, with Step Functions' ASL interpreter running the executions."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):  # type: ignore[arg-type]
        yield


@pytest.fixture
def run_pointer(s3, function_env):
    upload_photos(s3, BUCKET, PHOTOS)
    return validate_run(s3, resolve_request({"run_id": "r1"}, "exec-1", StackDefaults(bucket=BUCKET)), 10**6)


HOLD = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 30, "End": True}}}
# How an execution comes to each status the stop check can see: the interpreter runs each definition.
DEFINITIONS = {
    "RUNNING": HOLD,
    "ABORTED": HOLD,  # then StopExecution, as the console's "Stop execution" or `facetrain run`'s Ctrl-C
    "TIMED_OUT": {**HOLD, "TimeoutSeconds": 1},
    "FAILED": {
        "StartAt": "Fail",
        "States": {"Fail": {"Type": "Fail", "Error": "States.Runtime", "Cause": "x"}},
    },
}


def _await_status(sfn: Any, arn: str, status: str) -> None:
    """Wait until moto reports the status (its interpreter's thread applies a stop a moment later; AWS
    reports ABORTED as StopExecution returns)."""
    deadline = time.monotonic() + 10
    while sfn.describe_execution(executionArn=arn)["status"] != status:
        assert time.monotonic() < deadline, f"the execution did not become {status}"
        time.sleep(0.05)


@pytest.fixture
def execution_in(aws) -> Iterator[Callable[[str], str]]:
    """Make an execution named exec-1 (the run's) of a state machine of its own that is, or ended, in the
    given status; its ARN. Executions left RUNNING are stopped afterwards."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    made: list[str] = []

    def make(status: str) -> str:
        machine = sfn.create_state_machine(
            name=f"retraining-{status.lower().replace('_', '-')}",
            definition=json.dumps(DEFINITIONS[status]),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, name="exec-1")["executionArn"]
        made.append(arn)
        if status == "ABORTED":
            sfn.stop_execution(executionArn=arn, error="Interrupted", cause="stopped while Publish ran")
        _await_status(sfn, arn, status)
        return arn

    yield make
    for arn in made:
        if sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            sfn.stop_execution(executionArn=arn)


def _event(pointer, execution_arn: str, artifact: str = f"s3://{BUCKET}/{ARTIFACT}") -> dict:
    return {
        "execution": "exec-1",
        "execution_arn": execution_arn,
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


def test_publish_writes_run_files_then_current_files_and_latest(s3, run_pointer, execution_in) -> None:
    _seed_current(s3)
    files = model_files(PHOTOS)
    s3.put_object(Bucket=BUCKET, Key=ARTIFACT, Body=model_tar(files))

    result = publish.handler(_event(run_pointer, execution_in("RUNNING")), LambdaContext("publish"))

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


@pytest.mark.parametrize("problem", ["rules-code", "rules-utf7", "pickle-global", "metrics-missing"])
def test_invalid_results_leave_current_results_untouched(s3, run_pointer, execution_in, problem: str) -> None:
    old = _seed_current(s3)
    s3.put_object(Bucket=BUCKET, Key=ARTIFACT, Body=model_tar(_broken(problem)))

    with pytest.raises(ResultsInvalid):
        publish.handler(_event(run_pointer, execution_in("RUNNING")), LambdaContext("publish"))

    for name, body in old.items():
        assert _read(s3, f"results/{name}") == body
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="results/runs/r1/rules.py").get("Contents")


def test_artifact_outside_the_run_is_refused(s3, run_pointer, execution_in) -> None:
    s3.put_object(Bucket=BUCKET, Key="elsewhere/model.tar.gz", Body=model_tar(model_files(PHOTOS)))
    event = _event(run_pointer, execution_in("RUNNING"), f"s3://{BUCKET}/elsewhere/model.tar.gz")
    with pytest.raises(ResultsInvalid, match="is not under"):
        publish.handler(event, LambdaContext("publish"))


# ------------------------------------------------------------------ the stop check (issue 25)


def _current_state(s3) -> dict[str, bytes]:
    """Every object at the results prefix root (the current files and latest.json), by key."""
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="results/", Delimiter="/").get("Contents", [])
    return {o["Key"]: _read(s3, o["Key"]) for o in listed}


@pytest.mark.parametrize("status", ["ABORTED", "TIMED_OUT", "FAILED"])
@pytest.mark.parametrize("published_before", [False, True], ids=["first-run", "a-run-published"])
def test_a_publish_whose_execution_has_stopped_changes_nothing_current(
    s3, run_pointer, execution_in, status: str, published_before: bool
) -> None:
    """StopExecution (ABORTED), the execution's timeout or a failure does not cancel the Publish Lambda
    under way: at its commit point it asks for its execution's status and publishes nothing."""
    if published_before:
        _seed_current(s3)
    before = _current_state(s3)
    files = model_files(PHOTOS)
    s3.put_object(Bucket=BUCKET, Key=ARTIFACT, Body=model_tar(files))

    expected = f"execution exec-1 is {status}: it was stopped before run r1's results became current: nothing"
    with pytest.raises(publish.ExecutionStopped, match=re.escape(expected)):
        publish.handler(_event(run_pointer, execution_in(status)), LambdaContext("publish"))

    assert _current_state(s3) == before  # no current file replaced, no latest.json written
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="results/runs/r1/published.json").get("Contents")
    for name, body in files.items():  # the run's own files are stored, as the message says
        assert _read(s3, f"results/runs/r1/{name}") == body


@pytest.mark.parametrize("stopped_on", ["the first run file", "the last run file", "the quality gate record"])
def test_a_stop_during_publish_is_seen_at_the_commit_point(
    s3, run_pointer, execution_in, stopped_on: str
) -> None:
    """The status is asked for after the run's files are stored, not when Publish starts: an execution
    RUNNING when Publish began and stopped while it stored the run's files publishes nothing."""
    _seed_current(s3)
    before = _current_state(s3)
    s3.put_object(Bucket=BUCKET, Key=ARTIFACT, Body=model_tar(model_files(PHOTOS)))
    arn = execution_in("RUNNING")
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    run_files = sorted(model_files(PHOTOS))
    key = {
        "the first run file": f"results/runs/r1/{run_files[0]}",
        "the last run file": f"results/runs/r1/{run_files[-1]}",
        "the quality gate record": "results/runs/r1/quality_gate.json",
    }[stopped_on]

    def stop_after(params: dict[str, Any], **_: Any) -> None:  # as the put of `key` is made
        if params.get("Key") == key:
            sfn.stop_execution(executionArn=arn, error="Interrupted", cause="Ctrl-C while Publish ran")
            _await_status(sfn, arn, "ABORTED")

    s3.meta.events.register("before-parameter-build.s3.PutObject", stop_after)
    event = publish.PublishEvent.model_validate(_event(run_pointer, arn))
    with pytest.raises(publish.ExecutionStopped, match="is ABORTED: it was stopped before run r1's results"):
        publish.publish_run(s3, sfn, event)
    assert _current_state(s3) == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"execution_arn": "arn:aws:states:us-east-1:123456789012:execution:retraining:exec-2"},
            "is not execution",
        ),
        ({"execution": "exec-2"}, "is not execution 'exec-2'"),
        ({"execution_arn": "exec-1"}, "execution_arn"),
        ({"execution_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:exec-1"}, "execution_arn"),
        ({"execution_arn": None}, "execution_arn"),
    ],
    ids=["other-execution", "other-name", "a-name", "a-state-machine", "missing"],
)
def test_an_event_whose_execution_arn_is_not_its_execution_is_refused(
    s3, run_pointer, execution_in, change: dict[str, Any], expected: str
) -> None:
    """The stop check must ask about the execution the event names; nothing is read or written."""
    event = {**_event(run_pointer, execution_in("RUNNING")), **change}
    event = {k: v for k, v in event.items() if v is not None}
    before = _current_state(s3)
    with pytest.raises(ValidationError, match=expected):
        publish.handler(event, LambdaContext("publish"))
    assert _current_state(s3) == before
