"""facetrain.results on S3 (Results.from_s3): one real job's results (weights=none with a seed, as
test_results_api.py) published into a moto bucket by the real validate and publish functions, then read
back with the caller's boto3 client.

It reads the run latest.json names from the run's own folder: a publish under way (the current files at the
top replaced one by one, latest.json last) never gives a mix of two runs. S3's refusals (nothing published,
access denied, a file missing, a file over its cap) are ResultsErrors naming the key and the fix."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from facetrain.contract.rules_file import MAX_RULES_BYTES
from facetrain.results import Results, ResultsError
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication
from support.handler_env import set_default_handler_env
from support.testkit import model_files, model_tar, upload_photos

# The handlers' modules are imported below: Powertools reads these when its objects are made.
set_default_handler_env()

BUCKET = "facetrain-data-test"
URI = f"s3://{BUCKET}/results/"
PHOTOS = ["faces-dev/person_02/img3.jpg", "edge-cases/multiface.jpg"]
RESULTS_FILES = ("final_mean_embeddings.csv", "rules.py", "saved_embeddings.pkl")
SECOND_RUN = {"alice": 2, "bob": 3}  # the run published while the first is being read: other people


@pytest.fixture(scope="module")
def job_output(sagemaker_tree_class, tmp_path_factory, shared_data, module_job) -> Path:
    """model/ of one real job on three people of faces-dev."""
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("s3api") / "opt_ml", {"weights": "none", "seed": "7"})
    tree.add_identities(shared_data / "faces-dev", limit=3)
    assert module_job(tree).rc == 0, tree.failure()
    return tree.model


@pytest.fixture(scope="module")
def from_folder(job_output) -> Results:
    return Results.load(job_output, device="cpu")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def publish(s3: Any, run_id: str, files: dict[str, bytes], identities: list[str]) -> None:
    """Run `run_id` through the real validate_run and publish_run: its photos (small stand-ins: validate
    does not decode them), its model.tar.gz where SageMaker puts it, its execution RUNNING."""
    from facetrain_lambdas.publish import PublishEvent, publish_run
    from facetrain_lambdas.run_request import StackDefaults, resolve_request
    from facetrain_lambdas.validate import validate_run

    execution = f"exec-{run_id}"
    upload_photos(s3, BUCKET, dict.fromkeys(identities, 2))
    pointer = validate_run(s3, resolve_request({"run_id": run_id}, execution, StackDefaults(bucket=BUCKET)))
    artifact = f"results/runs/{run_id}/training/facetrain-{run_id}/output/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=artifact, Body=model_tar(files))
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name=f"retraining-{run_id}",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name=execution)["executionArn"]
    event = {
        "execution": execution,
        "execution_arn": arn,
        "run": pointer.model_dump(),
        "job": {"training_job_name": f"facetrain-{run_id}", "model_artifacts": f"s3://{BUCKET}/{artifact}"},
    }
    publish_run(s3, sfn, PublishEvent.model_validate(event))


def real_files(job_output: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in job_output.iterdir() if path.is_file()}


@pytest.fixture
def published(s3, job_output, from_folder) -> Any:
    """run r1, the real job's results, published."""
    publish(s3, "r1", real_files(job_output), from_folder.identities)
    return s3


def test_the_published_run_answers_as_its_folder(published, from_folder, shared_data):
    results = Results.from_s3(published, URI, device="cpu")
    assert (results.run_id, results.identities) == ("r1", from_folder.identities)
    assert (results.threshold, results.not_for_production) == (from_folder.threshold, True)
    images = [(shared_data / photo).read_bytes() for photo in PHOTOS]
    answers = results.identify_many(images)
    assert [a.as_json() for a in answers] == [a.as_json() for a in from_folder.identify_many(images)]
    assert answers[1].faces_found and len(answers[1].faces) > 1  # a group photo: real faces were searched


@pytest.mark.parametrize("reads_before", [0, 1, 2], ids=["before-the-files", "after-one", "after-two"])
def test_a_publish_under_way_never_mixes_two_runs(published, from_folder, reads_before):
    """Run r2 is published, whole (its current files copied over the top, latest.json last), after
    latest.json (r1) and `reads_before` of r1's files were read: what is loaded is r1, whole."""
    publisher = boto3.client("s3", region_name="us-east-1")  # another caller: the Publish Lambda
    reads: list[str] = []

    def publish_second_run(params: dict[str, Any], **_: Any) -> None:
        if not params["Key"].endswith("latest.json"):
            if len(reads) == reads_before:
                publish(publisher, "r2", model_files(SECOND_RUN), list(SECOND_RUN))
            reads.append(params["Key"])

    published.meta.events.register("before-parameter-build.s3.GetObject", publish_second_run)
    results = Results.from_s3(published, URI, device="cpu")
    latest = json.loads(published.get_object(Bucket=BUCKET, Key="results/latest.json")["Body"].read())
    assert latest["run_id"] == "r2"  # r2 was published while r1 was read
    assert (results.run_id, results.identities) == ("r1", from_folder.identities)
    assert sorted(reads) == [f"results/runs/r1/{name}" for name in sorted(RESULTS_FILES)]
    for name in RESULTS_FILES:  # the files at the top are r2's: reading them would have mixed the runs
        current = published.get_object(Bucket=BUCKET, Key=f"results/{name}")["Body"].read()
        assert current == model_files(SECOND_RUN)[name]


def test_nothing_published_says_so(s3):
    with pytest.raises(ResultsError) as refused:
        Results.from_s3(s3, f"s3://{BUCKET}/results", device="cpu")  # the trailing / may be left out
    assert str(refused.value) == (
        f"nothing is published at {URI}: {URI}latest.json does not exist. Check the bucket and results "
        "prefix (the stack's data bucket and ResultsPrefix, e.g. s3://BUCKET/results/), or wait until a run "
        "is published (publish writes latest.json last)"
    )


def test_a_caller_without_read_access_to_the_results_is_told_the_permission(published):
    """moto's IAM enforcement: a user with the operator policy's S3 statements but for the results prefix."""
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="viewer")
    statements = [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [f"arn:aws:s3:::{BUCKET}/face_imgs/*"]},
    ]
    iam.put_user_policy(
        UserName="viewer",
        PolicyName="no-results",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    key = iam.create_access_key(UserName="viewer")["AccessKey"]
    viewer = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        aws_session_token=None,
    )
    with enable_iam_authentication(), pytest.raises(ResultsError) as refused:
        Results.from_s3(viewer, URI, device="cpu")
    message = str(refused.value)
    assert message.startswith(f"S3 refused to read {URI}latest.json (AccessDenied: ")
    assert message.endswith(
        f"the caller needs s3:GetObject on the results prefix (arn:aws:s3:::{BUCKET}/results/*), as the "
        "stack's operator policy grants (output OperatorPolicyArn, statement ReadPhotosSettingsAndResults); "
        "without s3:ListBucket on the bucket, S3 also answers AccessDenied for a key that does not exist"
    )


def test_a_file_latest_json_names_that_is_gone_is_named(published):
    key = "results/runs/r1/saved_embeddings.pkl"
    published.delete_object(Bucket=BUCKET, Key=key)  # the current copy at the top is still there
    with pytest.raises(ResultsError) as refused:
        Results.from_s3(published, URI, device="cpu")
    assert str(refused.value).startswith(
        f"s3://{BUCKET}/{key} is missing, though latest.json names it as run r1's saved_embeddings.pkl: "
    )


def test_a_file_over_its_cap_is_refused(published):
    key = "results/runs/r1/rules.py"
    published.put_object(Bucket=BUCKET, Key=key, Body=b"#" * (MAX_RULES_BYTES + 1))
    words = f"s3://{BUCKET}/{key} is over the cap of {MAX_RULES_BYTES} bytes for rules.py"
    with pytest.raises(ResultsError, match=re.escape(words)):
        Results.from_s3(published, URI, device="cpu")


def test_invalid_results_are_refused_as_a_folders_are(published, job_output, tmp_path):
    """The checks are identify's: a rules.py with code in it is refused, named by the run's S3 folder."""
    rules = (job_output / "rules.py").read_bytes() + b"\nimport os\n"
    published.put_object(Bucket=BUCKET, Key="results/runs/r1/rules.py", Body=rules)
    with pytest.raises(ResultsError) as from_s3:
        Results.from_s3(published, URI, device="cpu")
    folder = tmp_path / "r1"
    folder.mkdir()
    for name in ("final_mean_embeddings.csv", "saved_embeddings.pkl"):
        (folder / name).write_bytes((job_output / name).read_bytes())
    (folder / "rules.py").write_bytes(rules)
    with pytest.raises(ResultsError) as from_disk:
        Results.load(folder, device="cpu")
    assert str(from_s3.value) == str(from_disk.value).replace(str(folder), f"{URI}runs/r1/")
    assert str(from_s3.value).startswith(f"{URI}runs/r1/ does not hold usable results: ")


@pytest.mark.parametrize(
    ("uri", "latest", "words"),
    [
        ("results/", None, "'results/' is not an S3 results prefix: give s3://BUCKET/PREFIX/"),
        (URI, b"{", f"{URI}latest.json is not a facetrain latest.json (not JSON): check the results prefix"),
        (URI, b'{"format": "facetrain.latest", "version": 3}', "version 3, which this facetrain does not"),
    ],
    ids=["not-s3", "not-json", "newer"],
)
def test_a_prefix_that_is_not_facetrains_is_said_plainly(s3, uri, latest, words):
    if latest is not None:
        s3.put_object(Bucket=BUCKET, Key="results/latest.json", Body=latest)
    with pytest.raises(ResultsError, match=re.escape(words)):
        Results.from_s3(s3, uri, device="cpu")
