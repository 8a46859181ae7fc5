"""The seams: what moto's CloudFormation does not do for a resource type, done around create_stack.

- resource types moto has no CloudFormation support for, and that have no behaviour offline (IAM and
  resource policies are not enforced, no e-mail, no scheduler), are left out: NO_BEHAVIOUR_OFFLINE;
- custom resources are left out: moto would run their function in Docker and wait for its answer on
  moto's server (the cleanup function is tested on its own, tests/lambdas/test_cleanup.py);
- SEAMS, one entry per resource type:
  - SQS event source mappings are not given to moto, which would invoke the function at each
    SendMessage, one message at a time, ignoring the batching window and batchItemFailures:
    sqs_event_source.SqsEventPoller polls them as Lambda does (SqsEventSource);
  - moto's CloudFormation makes state machines in its plain Step Functions backend, not in the one that
    interprets ASL, and reads only DefinitionString: moto's (with a placeholder definition) stays as the
    target of Refs, and the executing one is created under the same name and ARN, from the packaged
    definition with its DefinitionSubstitutions applied (substitute_definition);
  - bucket properties moto's CloudFormation ignores (versioning, EventBridge notifications) are applied
    through the S3 API (BUCKET_PROPERTIES_MOTO_IGNORES);
  - each topic gets a local SQS queue subscribed to it, so that what would have been e-mailed can be
    read back (LocalStack.notifications);
  - roles' ManagedPolicyArns are ignored by moto's CloudFormation: they are attached through the IAM API,
    an AWS managed policy (the ones SAM adds: AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess,
    AWSLambdaSQSQueueExecutionRole for the SQS pollers) made first from moto's copy of its document.

Values the seams need (substitutions, queue ARNs, batch sizes) are resolved by moto too: split_for_moto
defers them to stack Outputs, read back after create_stack, so no intrinsic function is evaluated here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy, iam_backends

from .local_stack import LocalStack, SqsEventSource
from .sam import CloudFormation, TemplateError

_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_DEFERRED = "OfflineSeamValue"
NO_BEHAVIOUR_OFFLINE = {
    "AWS::S3::BucketPolicy": "bucket policies are not enforced offline (moto has no CloudFormation for it)",
    "AWS::SQS::QueuePolicy": "queue policies are not enforced offline (moto has no CloudFormation for it)",
    "AWS::Lambda::Permission": "resource policies are not enforced offline",
    "AWS::SNS::Subscription": "no e-mail offline: notifications are read from a queue on the topic",
    "AWS::Scheduler::Schedule": "moto has no EventBridge Scheduler: schedules do not run offline",
}
CUSTOM_RESOURCE = "moto runs custom resources in Docker and waits for their answer on moto's server"
BUCKET_PROPERTIES_MOTO_IGNORES = ("VersioningConfiguration", "NotificationConfiguration")
_PLACEHOLDER_DEFINITION = json.dumps(
    {"StartAt": "Placeholder", "States": {"Placeholder": {"Type": "Succeed"}}}
)


def substitute_definition(text: str, substitutions: dict[str, Any]) -> str:
    """Apply DefinitionSubstitutions (`${Name}` replaced). A name the template gives no substitution is an
    error at deploy time, not a literal `${Name}` left in the definition to fail an execution later."""
    missing = sorted(set(_SUBSTITUTION.findall(text)) - set(substitutions))
    if missing:
        raise TemplateError(f"the definition uses substitutions the template does not define: {missing}")
    return _SUBSTITUTION.sub(lambda match: str(substitutions[match.group(1)]), text)


def _is_intrinsic(value: Any) -> bool:
    """`{"Ref": …}`, `{"Fn::…": …}` or `{"Condition": …}`."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key,) = value
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def _defer(value: Any, outputs: dict[str, Any]) -> Any:
    """value with each intrinsic function replaced by the name of a stack output that moto resolves."""
    if _is_intrinsic(value):
        name = f"{_DEFERRED}{len(outputs)}"
        outputs[name] = {"Value": value}
        return {_DEFERRED: name}
    if isinstance(value, dict):
        return {key: _defer(item, outputs) for key, item in value.items()}
    if isinstance(value, list):
        return [_defer(item, outputs) for item in value]
    return value


def fill(value: Any, resolved: dict[str, str]) -> Any:
    """The deferred values put back, as moto resolved them."""
    if isinstance(value, dict):
        if set(value) == {_DEFERRED}:
            return resolved[value[_DEFERRED]]
        return {key: fill(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, resolved) for item in value]
    return value


@dataclass(frozen=True)
class Seam:
    """What moto's CloudFormation does not do for one resource type, done here around create_stack.

    `take(resource)` removes from the resource what moto would ignore or mishandle and returns it (its
    intrinsics are deferred to stack outputs, so moto resolves them); `apply(session, stack, logical_id,
    properties)` does it once the stack exists, with those values resolved. A seam with `replaces` set
    takes the whole resource: moto never sees it, and `replaces` says why.
    """

    take: Callable[[dict[str, Any]], dict[str, Any]]
    apply: Callable[[boto3.Session, LocalStack, str, dict[str, Any]], None]
    replaces: str | None = None


def _take_properties(*names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def take(resource: dict[str, Any]) -> dict[str, Any]:
        properties = resource.setdefault("Properties", {})
        return {name: properties.pop(name, None) for name in names}

    return take


def _take_definition(resource: dict[str, Any]) -> dict[str, Any]:
    """The definition's location and substitutions (moto reads only DefinitionString: a placeholder)."""
    properties = resource.setdefault("Properties", {})
    taken = {key: properties.pop(key, None) for key in ("DefinitionS3Location", "DefinitionSubstitutions")}
    properties["DefinitionString"] = _PLACEHOLDER_DEFINITION
    return {**taken, **{key: properties.get(key) for key in ("RoleArn", "StateMachineType")}}


def _take_all(resource: dict[str, Any]) -> dict[str, Any]:
    if "Condition" in resource:
        raise TemplateError(f"a conditional {resource['Type']} is not supported offline")
    return dict(resource.get("Properties", {}))


def _nothing(resource: dict[str, Any]) -> dict[str, Any]:
    return {}


def _apply_bucket_properties(
    session: boto3.Session, stack: LocalStack, logical_id: str, properties: dict[str, Any]
) -> None:
    """Versioning and EventBridge notifications, through the S3 API."""
    s3, bucket = session.client("s3"), stack.physical(logical_id)
    if (properties.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    notifications = properties.get("NotificationConfiguration") or {}
    if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )


def _create_state_machine(
    session: boto3.Session, stack: LocalStack, logical_id: str, properties: dict[str, Any]
) -> None:
    """The executing state machine: the packaged definition, substituted, under moto's name and ARN."""
    s3, sfn, machine_arn = session.client("s3"), session.client("stepfunctions"), stack.physical(logical_id)
    location = properties["DefinitionS3Location"]
    text = s3.get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"].read().decode("utf-8")
    definition = substitute_definition(text, properties.get("DefinitionSubstitutions") or {})
    created = sfn.create_state_machine(
        name=machine_arn.rsplit(":", 1)[-1],
        definition=definition,
        roleArn=properties["RoleArn"],
        type=properties.get("StateMachineType") or "STANDARD",
    )
    if created["stateMachineArn"] != machine_arn:
        raise TemplateError(f"state machine {created['stateMachineArn']} is not moto's {machine_arn}")


def _add_event_source(
    session: boto3.Session, stack: LocalStack, logical_id: str, properties: dict[str, Any]
) -> None:
    """The mapping, for sqs_event_source.SqsEventPoller to poll as the Lambda service would."""
    queue_arn = properties["EventSourceArn"]
    if not queue_arn.startswith("arn:aws:sqs:"):
        raise TemplateError(f"event source {queue_arn}: only SQS event sources are polled offline")
    account, queue_name = queue_arn.split(":")[4:6]
    sqs = session.client("sqs")
    function = session.client("lambda").get_function_configuration(FunctionName=properties["FunctionName"])
    stack.event_sources.append(
        SqsEventSource(
            function=function["FunctionName"],
            queue_url=sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"],
            batch_size=int(properties.get("BatchSize", 10)),
            batching_window_seconds=int(properties.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures"
            in properties.get("FunctionResponseTypes", []),
            maximum_concurrency=int((properties.get("ScalingConfig") or {}).get("MaximumConcurrency", 0))
            or None,
        )
    )


def _subscribe_queue(session: boto3.Session, stack: LocalStack, logical_id: str, _: dict[str, Any]) -> None:
    """A queue receiving the topic's messages (SNS JSON envelopes), read by LocalStack.notifications."""
    sqs = session.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"{stack.name}-{logical_id}-deliveries"[:80])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    session.client("sns").subscribe(
        TopicArn=stack.physical(logical_id), Protocol="sqs", Endpoint=attributes["QueueArn"]
    )
    stack.topic_queues[logical_id] = queue_url


def _attach_managed_policies(
    session: boto3.Session, stack: LocalStack, logical_id: str, properties: dict[str, Any]
) -> None:
    """ManagedPolicyArns attached to the role (IAM is enforced offline: the SQS pollers need theirs)."""
    iam, role = session.client("iam"), stack.physical(logical_id)
    for arn in properties.get("ManagedPolicyArns") or []:
        aws_managed_policy(arn)
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)


@functools.cache
def _aws_managed_policy_documents() -> dict[str, Any]:
    """moto's copy of every AWS managed policy (a few MB of JSON: read once)."""
    return dict(json.loads(aws_managed_policies_data))


def aws_managed_policy(arn: str) -> None:
    """An AWS managed policy in moto's IAM (it loads none by default), from moto's copy of its document."""
    backend = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    if arn in backend.managed_policies or not arn.startswith("arn:aws:iam::aws:policy/"):
        return
    name = arn.rsplit("/", 1)[-1]
    data = _aws_managed_policy_documents()
    if name not in data:
        raise TemplateError(f"{arn}: moto has no copy of this AWS managed policy")
    policy = AWSManagedPolicy.from_data(name, DEFAULT_ACCOUNT_ID, "us-east-1", data[name])
    backend.managed_policies[policy.arn] = policy


# Resource type -> what is done here for it (every other type is moto's, or in NO_BEHAVIOUR_OFFLINE).
SEAMS: dict[str, Seam] = {
    "AWS::S3::Bucket": Seam(_take_properties(*BUCKET_PROPERTIES_MOTO_IGNORES), _apply_bucket_properties),
    "AWS::StepFunctions::StateMachine": Seam(_take_definition, _create_state_machine),
    "AWS::Lambda::EventSourceMapping": Seam(
        _take_all,
        _add_event_source,
        replaces="polled by the offline SQS event source (sqs_event_source.SqsEventPoller)",
    ),
    "AWS::SNS::Topic": Seam(_nothing, _subscribe_queue),
    "AWS::IAM::Role": Seam(_take_properties("ManagedPolicyArns"), _attach_managed_policies),
}


def split_for_moto(
    template: CloudFormation, skipped: dict[str, str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The template moto creates, and what each seam took from it (intrinsics deferred to outputs)."""
    body = json.loads(json.dumps(template.body))
    outputs = body.setdefault("Outputs", {})
    taken: dict[str, dict[str, Any]] = {}
    for logical_id, resource in list(body["Resources"].items()):
        kind = resource["Type"]
        if kind in NO_BEHAVIOUR_OFFLINE or kind.startswith("Custom::"):
            skipped[logical_id] = NO_BEHAVIOUR_OFFLINE.get(kind, CUSTOM_RESOURCE)
            del body["Resources"][logical_id]
        elif kind in SEAMS:
            try:
                taken[logical_id] = _defer(SEAMS[kind].take(resource), outputs)
            except TemplateError as exc:
                raise TemplateError(f"{logical_id}: {exc}") from None
            if SEAMS[kind].replaces:
                skipped[logical_id] = str(SEAMS[kind].replaces)
                del body["Resources"][logical_id]
    return body, taken
