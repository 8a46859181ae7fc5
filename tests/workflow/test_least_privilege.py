"""Least privilege, proven offline with IAM enforced (facetrain_offline.iam_enforcement): the template as it
is runs every path of the workflow without one request refused, and removing any one statement of any
policy from a copy of it makes the path that needs it fail with an AccessDenied naming an action of that
statement and the role (or user) that lost it.

Every statement of every policy in template.yaml is a case, parametrised from the template itself, so a
statement added later is tested too; the few that no offline path can exercise are listed in
NOT_EXERCISED_OFFLINE with the reason, and a test checks that list names only statements that exist.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from facetrain_offline.execution_follower import HistoryFollower
from facetrain_offline.execution_status_events import ExecutionStatusEvents
from facetrain_offline.identities import Denial, LocalAccount
from facetrain_offline.local_aws import DEFAULT_TEMPLATE, local_aws
from facetrain_offline.parameter_checks import OFFLINE_SHORT_WAITS
from facetrain_offline.results_copy import copy_results
from facetrain_offline.sam import load_sam
from facetrain_offline.sqs_event_source import SqsEventPoller
from facetrain_offline.stack import deploy
from facetrain_offline.stack_delete import delete
from facetrain_offline.training_backend import LocalTrainingBackend
from support.testkit import FakeSageMaker, upload_photos
from support.workflow import REGION, STACK_NAME, TEST_ENVIRONMENT, TEST_PARAMETERS, WorkflowStack

PHOTOS = {"alice": 2, "bob": 2}
# Upload-triggered runs start a second after the last upload (the default waits 2 minutes).
PARAMETERS = {**TEST_PARAMETERS, "UploadSettleSeconds": "1"}
# SAM policy templates this template uses, and the actions each grants.
POLICY_TEMPLATE_ACTIONS = {
    "LambdaInvokePolicy": ["lambda:InvokeFunction"],
    "SNSPublishMessagePolicy": ["sns:Publish"],
}
# (resource, first action of the statement) -> why no offline path needs it.
NOT_EXERCISED_OFFLINE = {
    ("StopFunction", "states:DescribeExecution"): "only for an execution input too large for its status "
    "event (over 248 KiB); the events offline carry the input",
    (
        "RetrainingStateMachine",
        "logs:CreateLogDelivery",
    ): "CloudWatch Logs delivery of the execution history: moto's Step Functions writes no logs",
    ("SageMakerExecutionRole", "s3:ListBucket"): "SageMaker lists only the checkpoint prefix, to resume a "
    "Spot job; the local training backend writes no checkpoints (the channels are manifest files)",
    ("SageMakerExecutionRole", "ecr:BatchCheckLayerAvailability"): "no image is pulled offline: `train` runs "
    "as a local process",
    ("SageMakerExecutionRole", "ecr:GetAuthorizationToken"): "no image is pulled offline",
    ("SageMakerExecutionRole", "cloudwatch:PutMetricData"): "the job publishes no CloudWatch metrics offline",
    ("RetrainingScheduleRole", "states:StartExecution"): "the schedule is not deployed offline (moto has no "
    "EventBridge Scheduler; the role exists only with ScheduleExpression)",
}

# Stand-ins for `train`: one writes a model file and succeeds, one runs until SIGTERM.
FINISHING_TRAIN = textwrap.dedent(
    """
    import os, pathlib
    base = pathlib.Path(os.environ["SAGEMAKER_BASE_DIR"])
    assert any((base / "input/data/face_imgs").rglob("*.jpg"))
    (base / "model" / "done.txt").write_text("trained")
    print("trained", flush=True)
    """
)
STOPPABLE_TRAIN = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print("running", flush=True)
    time.sleep(60)
    """
)


@dataclass(frozen=True)
class Statement:
    """One statement of one policy of template.yaml (or one SAM policy template)."""

    resource: str  # logical id of the function, state machine, role or managed policy
    path: tuple[str | int, ...]  # where it lies under the resource's Properties
    actions: tuple[str, ...]

    @property
    def principal(self) -> str:
        """What names the identity that uses it in a denial's principal ARN."""
        kind = RESOURCE_TYPES[self.resource]
        if kind == "AWS::IAM::ManagedPolicy":
            return "facetrain-operator"  # the operator user (identities.py) has OperatorPolicy alone
        return self.resource if kind == "AWS::IAM::Role" else f"{self.resource}Role"

    @property
    def case_id(self) -> str:
        return f"{self.resource}-{'-'.join(str(p) for p in self.path[1:])}-{self.actions[0]}"


SAM = load_sam(DEFAULT_TEMPLATE)
RESOURCES = SAM["Resources"]
RESOURCE_TYPES = {name: resource["Type"] for name, resource in RESOURCES.items()}


def _actions(statement: dict[str, Any]) -> tuple[str, ...]:
    action = statement["Action"]
    return tuple([action] if isinstance(action, str) else action)


def template_statements() -> list[Statement]:
    """Every statement of every identity policy in template.yaml."""
    found: list[Statement] = []
    for name, resource in RESOURCES.items():
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for i, policy in enumerate(properties.get("Policies", [])):
                if "Statement" in policy:
                    for j, statement in enumerate(policy["Statement"]):
                        found.append(Statement(name, ("Policies", i, "Statement", j), _actions(statement)))
                else:
                    (template,) = policy
                    found.append(Statement(name, ("Policies", i), tuple(POLICY_TEMPLATE_ACTIONS[template])))
        elif kind == "AWS::IAM::Role":
            for i, policy in enumerate(properties.get("Policies", [])):
                for j, statement in enumerate(policy["PolicyDocument"]["Statement"]):
                    path = ("Policies", i, "PolicyDocument", "Statement", j)
                    found.append(Statement(name, path, _actions(statement)))
        elif kind == "AWS::IAM::ManagedPolicy":
            for j, statement in enumerate(properties["PolicyDocument"]["Statement"]):
                found.append(Statement(name, ("PolicyDocument", "Statement", j), _actions(statement)))
    return found


STATEMENTS = template_statements()
EXERCISED = [s for s in STATEMENTS if (s.resource, s.actions[0]) not in NOT_EXERCISED_OFFLINE]


def template_without(statement: Statement, directory: Path) -> Path:
    """A copy of template.yaml (as JSON, beside a copy of the ASL it packages) without the statement; an
    inline policy left with no statement goes with it (IAM refuses an empty policy)."""
    sam = copy.deepcopy(SAM)
    properties = sam["Resources"][statement.resource]["Properties"]
    *parent_path, index = statement.path
    parent: Any = properties
    for step in parent_path:
        parent = parent[step]
    del parent[index]
    if not parent and parent_path[-1] == "Statement" and parent_path[0] == "Policies":
        del properties["Policies"][parent_path[1]]
    shutil.copytree(DEFAULT_TEMPLATE.parent / "state_machine", directory / "state_machine")
    variant = directory / "template.json"
    variant.write_text(json.dumps(sam), encoding="utf-8")
    return variant


# ------------------------------------------------------------------ the paths of the workflow


@dataclass
class Offline:
    """A deployed variant with what the paths need: the account (its denials), the stack, a scratch dir."""

    account: LocalAccount
    stack: WorkflowStack
    scratch: Path
    fake_sagemaker: FakeSageMaker

    def until(self, condition: Callable[[], bool], timeout: float = 60) -> bool:
        """Whether the condition came true within the timeout; False at once when IAM refused a request
        (the path has failed: waiting longer proves nothing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.account.denials:
            if condition():
                return True
            time.sleep(0.05)
        return False


@contextmanager
def deployed(template: Path, scratch: Path, train_script: str | None = None) -> Iterator[Offline]:
    """The template deployed offline; with train_script, the local training backend runs it as `train`,
    else FakeSageMaker stands in for training."""
    fake = FakeSageMaker()
    with local_aws(REGION) as account:
        local = deploy(
            template,
            PARAMETERS,
            stack_name=STACK_NAME,
            region=REGION,
            extra_environment=TEST_ENVIRONMENT,
            short_waits=OFFLINE_SHORT_WAITS,
        )
        if train_script is None:
            training: Any = fake.installed()
        else:
            script = scratch / "train.py"
            script.write_text(train_script)
            command = [sys.executable, str(script)]
            training = LocalTrainingBackend(
                scratch / "jobs", train_command=command, stop_grace_seconds=1
            ).installed()
        with local.lambdas.installed(), training, ExecutionStatusEvents(local).running():
            yield Offline(account, WorkflowStack(local, fake), scratch, fake)


def console_run(offline: Offline) -> bool:
    """Photos and settings uploaded, a console execution trains (FakeSageMaker), publishes, notifies."""
    stack = offline.stack
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    stack.s3.put_object(Bucket=stack.bucket, Key="config/constants.py", Body=b"BATCH_SIZE = 16\n")
    result = stack.run({"run_id": "console-1"}, name="console-1")
    subjects = [n["Subject"] for n in stack.notifications()]
    return result["status"] == "SUCCEEDED" and subjects == ["facetrain retraining succeeded"]


def upload_run(offline: Offline) -> bool:
    """Photos uploaded: the rule, queue and trigger start a retraining; a photo uploaded while it trains
    finds the bucket owned by a live execution, and the upload-batch steps hand over to one follow-up."""
    stack, fake = offline.stack, offline.fake_sagemaker
    fake.hold = threading.Event()  # the first job trains until the late photo is counted
    poller = SqsEventPoller(stack.local)
    with poller.running(interval=0.05):
        try:
            upload_photos(stack.s3, stack.bucket, PHOTOS)
            if not offline.until(lambda: len(fake.created) == 1):
                return False
            triggered = _trigger_invocations(stack)
            upload_photos(stack.s3, stack.bucket, {"carol": 1})
            counted = offline.until(lambda: _trigger_invocations(stack) > triggered and not poller.pending())
        finally:
            fake.hold.set()
        settled = offline.until(lambda: _executions_ended(stack, 2))
    executions = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    failed_batches = [error for name, error in stack.lambdas.invocations if error is not None]
    statuses = [e["status"] for e in executions]
    return counted and settled and statuses == ["SUCCEEDED", "SUCCEEDED"] and not failed_batches


def _trigger_invocations(stack: WorkflowStack) -> int:
    return sum(1 for name, _ in stack.lambdas.invocations if name == "TriggerFunction")


def _executions_ended(stack: WorkflowStack, count: int) -> bool:
    executions = stack.sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    return len(executions) == count and all(e["status"] != "RUNNING" for e in executions)


def refused_run(offline: Offline) -> bool:
    """An input validation refuses: the stop function learns there is no run record, and says so."""
    stack = offline.stack
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    result = stack.run({"run_id": "refused-1", "hyperparameters": {"no_such_setting": 1}}, name="refused-1")
    return result["status"] == "FAILED" and stack.wait_for_invocations("StopFunction") == [None]


def trained_run(offline: Offline) -> bool:
    """The training job downloads its channels, runs, writes its logs and uploads its model."""
    stack = offline.stack
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    stack.s3.put_object(Bucket=stack.bucket, Key="config/constants.py", Body=b"BATCH_SIZE = 16\n")
    stack.run({"run_id": "trained-1"}, name="trained-1")
    job = stack.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    return [j["TrainingJobStatus"] for j in job] == ["Completed"]


def stopped_run(offline: Offline) -> bool:
    """Stop execution while the job trains: the stop function stops the job and tells the operator."""
    stack = offline.stack
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    arn = stack.sfn.start_execution(
        stateMachineArn=stack.state_machine_arn, name="stopped-1", input=json.dumps({"run_id": "stopped-1"})
    )["executionArn"]
    if not offline.until(lambda: _job_secondary_status(stack) == "Training"):
        return False
    stack.sfn.stop_execution(executionArn=arn, error="Interrupted", cause="test")
    messages: list[str] = []

    def told() -> bool:  # moto's interpreter may end a stopped execution FAILED: either is told
        messages.extend(n["Message"] for n in stack.notifications())
        return any(
            "Its training job facetrain-stopped-1 was InProgress: it has been stopped" in m for m in messages
        )

    return offline.until(lambda: _job_status(stack) == "Stopped") and offline.until(told)


def deleted_stack(offline: Offline) -> bool:
    """`sam delete`: the cleanup custom resource empties the versioned bucket, and the stack goes."""
    stack = offline.stack
    upload_photos(stack.s3, stack.bucket, PHOTOS)
    stack.s3.delete_object(Bucket=stack.bucket, Key="face_imgs/alice/000.jpg")  # a delete marker too
    bucket = stack.bucket
    delete(stack.local)  # StackDeleteFailed when the cleanup or any deletion fails
    return bucket not in {b["Name"] for b in stack.s3.list_buckets()["Buckets"]}


def operator_day(offline: Offline) -> bool:
    """What an operator does, as the operator user (OperatorPolicy alone): mirror a folder of photos (a
    stale one deleted), set a setting, start and follow a retraining, read its job and results, list
    executions, and stop a second one."""
    stack, scratch = offline.stack, offline.scratch
    stack.s3.put_object(Bucket=stack.bucket, Key="face_imgs/left/000.jpg", Body=b"gone")  # as the admin
    operator = stack.local.operator_session()
    s3, sfn, sagemaker = (operator.client(n) for n in ("s3", "stepfunctions", "sagemaker"))
    folder = scratch / "photos"
    for person, count in PHOTOS.items():
        (folder / person).mkdir(parents=True)
        for i in range(count):
            (folder / person / f"{i:03d}.jpg").write_bytes(f"{person} {i}".encode())
    from facetrain_offline.photo_upload import sync_images

    sync_images(s3, stack.bucket, "face_imgs/", folder)
    s3.put_object(Bucket=stack.bucket, Key="config/settings.json", Body=b"{}")
    arn = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn, name="operator-1", input=json.dumps({"run_id": "operator-1"})
    )["executionArn"]
    follower = HistoryFollower(sfn, arn, lambda line: None)

    def ended() -> bool:
        follower.poll()
        return bool(sfn.describe_execution(executionArn=arn)["status"] != "RUNNING")

    if not offline.until(ended):
        return False
    sagemaker.describe_training_job(TrainingJobName="facetrain-operator-1")
    copied = copy_results(s3, stack.bucket, "results/", scratch / "out")
    sfn.list_executions(stateMachineArn=stack.state_machine_arn)
    offline.fake_sagemaker.hold = threading.Event()
    second = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn,
        name="operator-2",
        input=json.dumps({"run_id": "operator-2", "force": True}),
    )["executionArn"]
    polling = offline.until(lambda: len(offline.fake_sagemaker.created) == 2)  # it polls its training job
    sfn.stop_execution(executionArn=second, error="Stopped", cause="by the operator")
    offline.fake_sagemaker.hold.set()
    stopped = offline.until(lambda: sfn.describe_execution(executionArn=second)["status"] != "RUNNING")
    first = sfn.describe_execution(executionArn=arn)["status"]
    return polling and stopped and "latest.json" in copied and first == "SUCCEEDED"


def swept_runs(offline: Offline) -> bool:
    """The daily retention sweep (invoked with the schedule's input), nothing published yet: a run older
    than RunHistoryDays goes with every version and delete marker, a new one stays."""
    stack = offline.stack
    old, new = "results/runs/old-1/", "results/runs/new-1/"
    record = {"created_at": "2020-01-01T00:00:00+00:00"}
    stack.s3.put_object(Bucket=stack.bucket, Key=f"{old}run.json", Body=json.dumps(record).encode())
    for body in (b"first", b"second"):  # a noncurrent version
        stack.s3.put_object(Bucket=stack.bucket, Key=f"{old}saved_embeddings.pkl", Body=body)
    stack.s3.delete_object(Bucket=stack.bucket, Key=f"{old}saved_embeddings.pkl")  # and a delete marker
    stack.s3.put_object(Bucket=stack.bucket, Key=f"{new}problems.json", Body=b"{}")
    event = (DEFAULT_TEMPLATE.parent / "events" / "retention-sweep.json").read_bytes()
    function = stack.local.physical("RetentionSweepFunction")
    response = boto3.client("lambda", region_name=REGION).invoke(FunctionName=function, Payload=event)
    result = json.loads(response["Payload"].read())
    left = stack.s3.list_object_versions(Bucket=stack.bucket, Prefix="results/runs/")
    keys = {v["Key"] for v in [*left.get("Versions", []), *left.get("DeleteMarkers", [])]}
    swept = "FunctionError" not in response and result["swept"] == ["old-1"]
    return swept and keys == {f"{new}problems.json"}


def forgotten_person(offline: Offline) -> bool:
    """bob and carol enrolled, then alice with them; then the console input {"forget": ["alice"]} while
    training fails: her photos go (every version), the retrain that republishes without her fails, and
    the stored results are purged all the same (the current CSV rewritten, the current report.html that
    names her deleted with the earlier version that does not kept behind a delete marker), the receipt
    written, and the operator told."""
    stack, fake = offline.stack, offline.fake_sagemaker
    upload_photos(stack.s3, stack.bucket, {"bob": 2, "carol": 1})
    before = stack.run({"run_id": "before-0"}, name="before-0")
    upload_photos(stack.s3, stack.bucket, {"alice": 2})
    with_her = stack.run({"run_id": "before-1"}, name="before-1")
    fake.fail_with = "no capacity"
    result = stack.run({"forget": ["alice"]}, name="forget-1")
    left = stack.s3.list_object_versions(Bucket=stack.bucket, Prefix="face_imgs/alice/")
    subjects = [n["Subject"] for n in stack.notifications()]
    receipts = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="erasures/").get("KeyCount", 0)
    csv = stack.s3.get_object(Bucket=stack.bucket, Key="results/final_mean_embeddings.csv")["Body"].read()
    report = stack.s3.list_object_versions(Bucket=stack.bucket, Prefix="results/report.html")
    return (
        before["status"] == with_her["status"] == "SUCCEEDED"
        and result["status"] == "FAILED"
        and not left.get("Versions")
        and subjects[-1] == "facetrain forget: erased, but the republish failed"
        and receipts == 1
        and b"alice" not in csv
        and len(report.get("DeleteMarkers", [])) == 1
    )


Path_ = Callable[[Offline], bool]
# The path each identity's statements are needed on, and the stand-in for `train` it needs (None: fake).
PATHS: dict[str, list[tuple[Path_, str | None]]] = {
    "ValidateFunction": [(console_run, None)],
    "StartFunction": [(console_run, None)],
    "PollFunction": [(console_run, None)],
    "PublishFunction": [(console_run, None), (forgotten_person, None)],
    "RetrainingStateMachine": [(console_run, None), (upload_run, None), (forgotten_person, None)],
    "TriggerFunction": [(upload_run, None)],
    "UploadBatchFunction": [(upload_run, None)],
    "StopFunction": [(refused_run, None), (stopped_run, STOPPABLE_TRAIN)],
    "CleanupFunction": [(deleted_stack, None)],
    "SageMakerExecutionRole": [(trained_run, FINISHING_TRAIN)],
    "OperatorPolicy": [(operator_day, None)],
    "RetentionSweepFunction": [(swept_runs, None)],
    "ForgetFunction": [(forgotten_person, None)],
}


def _job_status(stack: WorkflowStack) -> str | None:
    jobs = stack.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    return jobs[0]["TrainingJobStatus"] if jobs else None


def _job_secondary_status(stack: WorkflowStack) -> str | None:
    jobs = stack.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    if not jobs:
        return None
    return stack.sagemaker.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])[
        "SecondaryStatus"
    ]


def _walk(template: Path, scratch: Path, path: Path_, train_script: str | None) -> tuple[bool, list[Denial]]:
    """Run one path on a deployment of the template: (whether it worked, the requests IAM refused)."""
    scratch.mkdir(parents=True, exist_ok=True)
    with deployed(template, scratch, train_script) as offline:
        try:
            worked = path(offline)
        except Exception:  # a refused request may surface as any error of the path
            worked = False
        return worked, list(offline.account.denials)


# ------------------------------------------------------------------ the tests


def test_every_identity_with_statements_has_a_path_and_the_exceptions_exist() -> None:
    identities = {s.resource for s in STATEMENTS}
    assert identities - set(PATHS) == {"RetrainingScheduleRole"}  # listed in NOT_EXERCISED_OFFLINE
    listed = {(s.resource, s.actions[0]) for s in STATEMENTS}
    assert set(NOT_EXERCISED_OFFLINE) <= listed, set(NOT_EXERCISED_OFFLINE) - listed


@pytest.mark.parametrize(
    "path",
    sorted({p for paths in PATHS.values() for p in paths}, key=lambda p: p[0].__name__),
    ids=lambda p: p[0].__name__,
)
def test_the_template_as_it_is_runs_every_path_with_nothing_refused(
    path: tuple[Path_, str | None], tmp_path: Path
) -> None:
    walk, train_script = path
    worked, denials = _walk(DEFAULT_TEMPLATE, tmp_path, walk, train_script)
    assert denials == []
    assert worked


@pytest.mark.parametrize("statement", EXERCISED, ids=lambda s: s.case_id)
def test_removing_a_statement_fails_its_path_with_access_denied_naming_action_and_role(
    statement: Statement, tmp_path: Path
) -> None:
    template = template_without(statement, tmp_path / "template")
    outcomes = [
        _walk(template, tmp_path / walk.__name__, walk, script) for walk, script in PATHS[statement.resource]
    ]
    denied = [
        d
        for _, denials in outcomes
        for d in denials
        if statement.principal in d.principal and d.action in statement.actions
    ]
    assert denied, f"no request of {statement.principal} for {statement.actions} was refused"
    assert not all(worked for worked, _ in outcomes), f"the paths of {statement.resource} still worked"
