"""Deploy template.yaml into moto as AWS would: `sam package`, the SAM transform, then CloudFormation.

The template goes through sam.py (AWS's own SAM translator) and the CloudFormation it yields is created
by moto's CloudFormation (`create_stack`): names, Refs, GetAtts, conditions and the generated roles are
moto's, not ours. What moto cannot do is done here, each as a small named seam:

- resource types moto has no CloudFormation support for, and that have no behaviour offline (IAM and
  resource policies are not enforced, no e-mail, no scheduler), are left out: NO_BEHAVIOUR_OFFLINE;
- custom resources are left out: moto would run their function in Docker and wait for its answer on
  moto's server (the cleanup function is tested on its own, tests/lambdas/test_cleanup.py);
- SQS event source mappings are not given to moto, which would invoke the function at each SendMessage,
  one message at a time, ignoring the batching window and batchItemFailures: event_sources.SqsEventPoller
  polls them as Lambda does (SqsEventSource);
- moto's CloudFormation makes state machines in its plain Step Functions backend, not in the one that
  interprets ASL, and reads only DefinitionString: moto's (with a placeholder definition) stays as the
  target of Refs, and the executing one is created here under the same name and ARN, from the packaged
  definition with its DefinitionSubstitutions applied (substitute_definition);
- bucket properties moto's CloudFormation ignores (versioning, EventBridge notifications) are applied
  through the S3 API (BUCKET_PROPERTIES_MOTO_IGNORES).

Values those seams need (substitutions, queue ARNs, batch sizes) are resolved by moto too: they are added
to the stack as Outputs and read back, so no intrinsic function is evaluated here.

Each topic also gets a local SQS queue subscribed to it, so that what would have been e-mailed can be
read back (LocalStack.notifications). The handlers run in-process (lambda_runtime.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID

from .lambda_runtime import FunctionSpec, InProcessLambdas
from .sam import ARTIFACTS_BUCKET, CloudFormation, TemplateError, load_sam, package, translate

ACCOUNT = DEFAULT_ACCOUNT_ID
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


@dataclass(frozen=True)
class SqsEventSource:
    """A function's SQS event source mapping, as the Lambda service would poll it."""

    function: str  # physical function name
    queue_url: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool


@dataclass
class LocalStack:
    """What was deployed: physical ids by logical id, parameters, and the in-process Lambda registry."""

    name: str
    template: CloudFormation  # the translated template
    parameters: dict[str, str]
    lambdas: InProcessLambdas
    region: str
    physical_ids: dict[str, str] = field(default_factory=dict)  # logical id → physical id (Ref value)
    skipped: dict[str, str] = field(default_factory=dict)  # logical id → why it is not deployed
    topic_queues: dict[str, str] = field(default_factory=dict)  # topic logical id → URL of its SQS queue
    event_sources: list[SqsEventSource] = field(default_factory=list)

    def physical(self, logical_id: str) -> str:
        try:
            return self.physical_ids[logical_id]
        except KeyError:
            reason = self.skipped.get(logical_id, "no such resource in the translated template")
            raise TemplateError(f"{logical_id} is not deployed: {reason}") from None

    def function(self, logical_id: str) -> FunctionSpec:
        """The deployed function (handler, environment) of a logical id."""
        return self.lambdas.functions[self.physical(logical_id)]

    def notifications(self, topic: str | None = None) -> list[dict[str, str]]:
        """Messages published to a topic (default: the only one) since the last call: Subject, Message."""
        sqs = boto3.client("sqs", region_name=self.region)
        queue_url = self.topic_queues[topic or self.only("AWS::SNS::Topic")]
        messages: list[dict[str, str]] = []
        while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                body = json.loads(message["Body"])
                messages.append({"Subject": body.get("Subject", ""), "Message": body["Message"]})
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return messages

    def only(self, resource_type: str) -> str:
        """The logical id of the single deployed resource of a type (e.g. the state machine)."""
        names = [n for n in self.template.of_type(resource_type) if n in self.physical_ids]
        if len(names) != 1:
            raise TemplateError(f"expected one deployed {resource_type}, found {names}")
        return names[0]


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


def _fill(value: Any, resolved: dict[str, str]) -> Any:
    """The deferred values put back, as moto resolved them."""
    if isinstance(value, dict):
        if set(value) == {_DEFERRED}:
            return resolved[value[_DEFERRED]]
        return {key: _fill(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, resolved) for item in value]
    return value


def _for_moto(
    template: CloudFormation, skipped: dict[str, str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The template moto creates, and the properties (intrinsics deferred) of what the seams create."""
    body = json.loads(json.dumps(template.body))
    outputs = body.setdefault("Outputs", {})
    seams: dict[str, dict[str, Any]] = {}
    for logical_id, resource in list(body["Resources"].items()):
        kind = resource["Type"]
        properties = resource.get("Properties", {})
        if kind in NO_BEHAVIOUR_OFFLINE or kind.startswith("Custom::"):
            skipped[logical_id] = NO_BEHAVIOUR_OFFLINE.get(kind, CUSTOM_RESOURCE)
            del body["Resources"][logical_id]
        elif kind == "AWS::Lambda::EventSourceMapping":
            if "Condition" in resource:
                raise TemplateError(
                    f"{logical_id}: a conditional event source mapping is not supported offline"
                )
            seams[logical_id] = _defer(properties, outputs)
            skipped[logical_id] = "polled by the offline SQS event source (event_sources.SqsEventPoller)"
            del body["Resources"][logical_id]
        elif kind == "AWS::StepFunctions::StateMachine":
            moved = ("DefinitionS3Location", "DefinitionSubstitutions")
            seams[logical_id] = _defer(
                {
                    **{key: properties.pop(key, None) for key in moved},
                    **{key: properties.get(key) for key in ("RoleArn", "StateMachineType")},
                },
                outputs,
            )
            properties["DefinitionString"] = _PLACEHOLDER_DEFINITION
        elif kind == "AWS::S3::Bucket":
            seams[logical_id] = {key: properties.pop(key, None) for key in BUCKET_PROPERTIES_MOTO_IGNORES}
    return body, seams


def _create_stack(cloudformation: Any, name: str, body: dict[str, Any], parameters: dict[str, str]) -> None:
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise TemplateError(f"stack {name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")


def _apply_bucket_properties(s3: Any, bucket: str, properties: dict[str, Any]) -> None:
    if (properties.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    notifications = properties.get("NotificationConfiguration") or {}
    if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )


def _create_state_machine(s3: Any, sfn: Any, machine_arn: str, properties: dict[str, Any]) -> None:
    """The executing state machine: the packaged definition, substituted, under moto's name and ARN."""
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


def _event_source(lambda_client: Any, sqs: Any, properties: dict[str, Any]) -> SqsEventSource:
    queue_arn = properties["EventSourceArn"]
    if not queue_arn.startswith("arn:aws:sqs:"):
        raise TemplateError(f"event source {queue_arn}: only SQS event sources are polled offline")
    account, queue_name = queue_arn.split(":")[4:6]
    function = lambda_client.get_function_configuration(FunctionName=properties["FunctionName"])
    return SqsEventSource(
        function=function["FunctionName"],
        queue_url=sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"],
        batch_size=int(properties.get("BatchSize", 10)),
        batching_window_seconds=int(properties.get("MaximumBatchingWindowInSeconds", 0)),
        report_batch_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
    )


def _subscribe_queue(sqs: Any, sns: Any, topic_arn: str, queue_name: str) -> str:
    """A queue receiving the topic's messages (SNS JSON envelopes); its URL."""
    queue_url = sqs.create_queue(QueueName=queue_name[:80])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=attributes["QueueArn"])
    return queue_url


def _parameters(sam: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    declared = sam.get("Parameters", {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
    defaults = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    parameters = {**defaults, **overrides}
    missing = sorted(set(declared) - set(parameters))
    if missing:
        raise TemplateError(f"template parameter(s) without a value: {', '.join(missing)}")
    return parameters


def deploy(
    template_path: Path,
    parameter_overrides: dict[str, str],
    *,
    stack_name: str = "facetrain-local",
    region: str = "eu-west-1",
    extra_environment: dict[str, str] | None = None,
) -> LocalStack:
    """Package, translate and create the template in moto (call inside an active mock); register the
    handlers. Each function's environment is the deployed one, then the variables the Lambda runtime
    sets (AWS_REGION, AWS_DEFAULT_REGION), then extra_environment (e.g. AWS_MAX_ATTEMPTS=1 in tests)."""
    sam = load_sam(template_path)
    parameters = _parameters(sam, parameter_overrides)
    packaged = package(sam, template_path.parent)
    template = translate(packaged, parameters, region)
    session = boto3.Session(region_name=region)
    s3, sqs, sns, sfn, lambda_client, cloudformation = (
        session.client(name) for name in ("s3", "sqs", "sns", "stepfunctions", "lambda", "cloudformation")
    )
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET, **location)
    for key, data in packaged.uploads.items():
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=data)

    stack = LocalStack(stack_name, template, parameters, InProcessLambdas(), region)
    body, seams = _for_moto(template, stack.skipped)
    _create_stack(cloudformation, stack_name, body, parameters)
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0].get("Outputs", [])
    }
    for resource in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]:
        logical_id = resource.get("LogicalResourceId")
        if logical_id and resource.get("PhysicalResourceId"):
            stack.physical_ids[logical_id] = resource["PhysicalResourceId"]
        elif logical_id:  # moto's layer versions: the handlers run in-process, nothing reads the layer
            stack.skipped[logical_id] = "created by moto's CloudFormation without a physical id"
    for logical_id in template.resources:
        if logical_id not in stack.physical_ids and logical_id not in stack.skipped:
            condition = template.resources[logical_id].get("Condition")
            stack.skipped[logical_id] = (
                f"condition {condition} is false" if condition else "not created by moto"
            )

    runtime = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region, **(extra_environment or {})}
    for logical_id in template.of_type("AWS::Lambda::Function"):
        if logical_id not in stack.physical_ids:
            continue
        configuration = lambda_client.get_function_configuration(FunctionName=stack.physical_ids[logical_id])
        variables = configuration.get("Environment", {}).get("Variables", {})
        stack.lambdas.register(
            FunctionSpec(
                name=configuration["FunctionName"],
                arn=configuration["FunctionArn"],
                handler=configuration["Handler"],
                environment={**{k: str(v) for k, v in variables.items()}, **runtime},
                memory_mb=int(configuration.get("MemorySize", 128)),
                logical_id=logical_id,
            )
        )
    for logical_id, deferred in seams.items():
        properties = _fill(deferred, outputs)
        kind = template.resources[logical_id]["Type"]
        if logical_id not in stack.physical_ids and kind != "AWS::Lambda::EventSourceMapping":
            continue  # its condition is false
        if kind == "AWS::S3::Bucket":
            _apply_bucket_properties(s3, stack.physical_ids[logical_id], properties)
        elif kind == "AWS::StepFunctions::StateMachine":
            _create_state_machine(s3, sfn, stack.physical_ids[logical_id], properties)
        elif kind == "AWS::Lambda::EventSourceMapping":
            stack.event_sources.append(_event_source(lambda_client, sqs, properties))
    for logical_id in template.of_type("AWS::SNS::Topic"):
        if logical_id in stack.physical_ids:
            topic_arn = stack.physical_ids[logical_id]
            queue_name = f"{stack_name}-{logical_id}-deliveries"
            stack.topic_queues[logical_id] = _subscribe_queue(sqs, sns, topic_arn, queue_name)
    return stack
