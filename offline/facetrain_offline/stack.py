"""Deploy template.yaml into moto: the bucket (with its EventBridge notifications), the topic, the queues,
the table, the EventBridge rules, the Lambdas (real handlers, in-process) and the state machine (the real
ASL with its DefinitionSubstitutions), all named and wired as the template says.

Each topic also gets a local SQS queue subscribed to it, so that what would have been e-mailed can be
read back (LocalStack.notifications). The functions' SQS event sources are recorded (LocalStack.
event_sources) for the local event-source poller (event_sources.py).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID

from .lambda_runtime import FunctionSpec, InProcessLambdas
from .template import Resolver, Template, TemplateError

ACCOUNT = DEFAULT_ACCOUNT_ID
_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
# Resources that have no behaviour offline (IAM is not enforced by moto, logs go to the console).
NOT_DEPLOYED = {
    "AWS::S3::BucketPolicy",
    "AWS::Serverless::LayerVersion",
    "AWS::Logs::LogGroup",
    "AWS::SNS::Subscription",
    "AWS::Scheduler::Schedule",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::KMS::Key",
    "AWS::KMS::Alias",
}


_DEPLOYED = {
    "AWS::S3::Bucket",
    "AWS::SNS::Topic",
    "AWS::SQS::Queue",
    "AWS::DynamoDB::Table",
    "AWS::Events::Rule",
    "AWS::IAM::Role",
    "AWS::Serverless::Function",
    "AWS::Serverless::StateMachine",
}


@dataclass(frozen=True)
class SqsEventSource:
    """A function's SQS event source (SAM `Events: {Type: SQS}`), as the Lambda service would poll it."""

    function: str  # physical function name
    queue_url: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool


@dataclass
class LocalStack:
    """What was deployed: physical names by logical id, and the in-process Lambda registry."""

    template: Template
    resolver: Resolver
    lambdas: InProcessLambdas
    region: str
    skipped: dict[str, str] = field(default_factory=dict)  # logical id → why it is not deployed
    topic_queues: dict[str, str] = field(default_factory=dict)  # topic logical id → URL of its SQS queue
    event_sources: list[SqsEventSource] = field(default_factory=list)

    def physical(self, logical_id: str) -> str:
        return self.resolver.physical_ids[logical_id]

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
        """The logical id of the single resource of a type (e.g. the state machine)."""
        names = [n for n in self.template.of_type(resource_type) if n not in self.skipped]
        if len(names) != 1:
            raise TemplateError(f"expected one {resource_type} in the template, found {names}")
        return names[0]


def _physical_name(stack: str, logical_id: str, kind: str) -> str:
    if kind == "bucket":
        return f"{stack}-{logical_id}-{ACCOUNT}".lower()[:63]
    return f"{stack}-{logical_id}"[:64]


def _assign_names(template: Template, resolver: Resolver, stack: str, region: str) -> None:
    """Give every resource its Ref value and attributes before anything is created."""
    arn = f"arn:aws:%s:{region}:{ACCOUNT}:%s"
    for logical_id, resource in template.resources.items():
        kind = resource["Type"]
        properties = resource.get("Properties", {})
        if kind == "AWS::S3::Bucket":
            name = _physical_name(stack, logical_id, "bucket")
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
            resolver.attributes[(logical_id, "DomainName")] = f"{name}.s3.amazonaws.com"
        elif kind == "AWS::SNS::Topic":
            name = _physical_name(stack, logical_id, "topic")
            resolver.physical_ids[logical_id] = arn % ("sns", name)
            resolver.attributes[(logical_id, "TopicArn")] = arn % ("sns", name)
            resolver.attributes[(logical_id, "TopicName")] = name
        elif kind == "AWS::Serverless::Function":
            name = _physical_name(stack, logical_id, "function")
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = arn % ("lambda", f"function:{name}")
        elif kind == "AWS::Serverless::StateMachine":
            name = _declared_name(resolver, properties.get("Name")) or _physical_name(stack, logical_id, "sm")
            resolver.physical_ids[logical_id] = arn % ("states", f"stateMachine:{name}")
            resolver.attributes[(logical_id, "Name")] = name
            resolver.attributes[(logical_id, "Arn")] = arn % ("states", f"stateMachine:{name}")
        elif kind == "AWS::IAM::Role":
            name = _physical_name(stack, logical_id, "role")
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        elif kind == "AWS::SQS::Queue":
            name = _physical_name(stack, logical_id, "queue")[:80]
            resolver.physical_ids[logical_id] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"
            resolver.attributes[(logical_id, "Arn")] = arn % ("sqs", name)
            resolver.attributes[(logical_id, "QueueName")] = name
        elif kind == "AWS::DynamoDB::Table":
            name = _physical_name(stack, logical_id, "table")
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = arn % ("dynamodb", f"table/{name}")
        elif kind == "AWS::Events::Rule":
            name = _physical_name(stack, logical_id, "rule")
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = arn % ("events", f"rule/{name}")
        elif kind == "AWS::Logs::LogGroup":
            name = f"/local/{stack}/{logical_id}"
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = arn % ("logs", f"log-group:{name}:*")
        else:
            resolver.physical_ids[logical_id] = _physical_name(stack, logical_id, "other")
            resolver.attributes[(logical_id, "Arn")] = arn % ("local", f"{logical_id}")


def _declared_name(resolver: Resolver, value: Any) -> str | None:
    """A name the template sets explicitly (it may only use parameters and pseudo parameters)."""
    return None if value is None else str(resolver.resolve(value))


def _placeholder_zip() -> bytes:
    """moto's CreateFunction wants a package; the real handler runs in-process, not from this zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "facetrain offline stack: handlers run in-process\n")
    return buffer.getvalue()


def substitute_definition(text: str, substitutions: dict[str, Any]) -> str:
    """Apply DefinitionSubstitutions (`${Name}` replaced). A name the template gives no substitution is an
    error at deploy time, not a literal `${Name}` left in the definition to fail an execution later."""
    missing = sorted(set(_SUBSTITUTION.findall(text)) - set(substitutions))
    if missing:
        raise TemplateError(f"the definition uses substitutions the template does not define: {missing}")
    return _SUBSTITUTION.sub(lambda match: str(substitutions[match.group(1)]), text)


def _sqs_event_sources(resolver: Resolver, function: str, properties: dict[str, Any]) -> list[SqsEventSource]:
    """The function's SAM SQS events (queue given by ARN, as the template does)."""
    sources = []
    for event in properties.get("Events", {}).values():
        if event.get("Type") != "SQS":
            continue
        options = event["Properties"]
        queue_name = options["Queue"].rsplit(":", 1)[-1]
        queue_url = f"https://sqs.{resolver.region}.amazonaws.com/{resolver.account}/{queue_name}"
        sources.append(
            SqsEventSource(
                function=function,
                queue_url=queue_url,
                batch_size=int(options.get("BatchSize", 10)),
                batching_window_seconds=int(options.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures"
                in options.get("FunctionResponseTypes", []),
            )
        )
    return sources


def _subscribe_queue(sqs: Any, sns: Any, topic_arn: str, queue_name: str) -> str:
    """A queue receiving the topic's messages (SNS JSON envelopes); its URL."""
    queue_url = sqs.create_queue(QueueName=queue_name[:80])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=attributes["QueueArn"])
    return queue_url


def deploy(
    template_path: Path,
    parameter_overrides: dict[str, str],
    *,
    stack_name: str = "facetrain-local",
    region: str = "eu-west-1",
    extra_environment: dict[str, str] | None = None,
) -> LocalStack:
    """Create the template's resources in moto (call inside an active mock) and register the handlers.

    Each function's environment is the template's, then the variables the Lambda runtime sets
    (AWS_REGION, AWS_DEFAULT_REGION), then extra_environment (e.g. AWS_MAX_ATTEMPTS=1 in tests).
    """
    template = Template.load(template_path)
    declared = template.body.get("Parameters", {})
    unknown = sorted(set(parameter_overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
    parameters = {**template.parameter_defaults(), **parameter_overrides}
    missing = sorted(set(declared) - set(parameters))
    if missing:
        raise TemplateError(f"template parameter(s) without a value: {', '.join(missing)}")
    resolver = Resolver(template, parameters, stack_name, region, ACCOUNT)
    _assign_names(template, resolver, stack_name, region)
    stack = LocalStack(template, resolver, InProcessLambdas(), region)
    s3 = boto3.client("s3", region_name=region)
    dynamodb = boto3.client("dynamodb", region_name=region)
    events = boto3.client("events", region_name=region)
    sns = boto3.client("sns", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    iam = boto3.client("iam", region_name=region)
    lambda_client = boto3.client("lambda", region_name=region)
    sfn = boto3.client("stepfunctions", region_name=region)
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    role_arn = iam.create_role(RoleName=f"{stack_name}-local-role", AssumeRolePolicyDocument=trust)["Role"][
        "Arn"
    ]

    for logical_id, resource in template.resources.items():
        kind = resource["Type"]
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            stack.skipped[logical_id] = f"condition {resource['Condition']} is false"
            continue
        name = resolver.physical_ids[logical_id]
        if kind in NOT_DEPLOYED or kind.startswith("Custom::") or kind not in _DEPLOYED:
            stack.skipped[logical_id] = f"{kind} is not deployed offline (no behaviour to emulate)"
            continue
        properties = resolver.resolve(resource.get("Properties", {}))
        if kind == "AWS::S3::Bucket":
            location = (
                {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            s3.create_bucket(Bucket=name, **location)
            if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            notifications = properties.get("NotificationConfiguration", {})
            if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
                s3.put_bucket_notification_configuration(
                    Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
                )
        elif kind == "AWS::SQS::Queue":
            attributes = {
                key: json.dumps(value) if isinstance(value, dict) else str(value)
                for key, value in properties.items()
                if key in ("VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy", "DelaySeconds")
            }
            sqs.create_queue(QueueName=resolver.attributes[(logical_id, "QueueName")], Attributes=attributes)
        elif kind == "AWS::DynamoDB::Table":
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=properties["AttributeDefinitions"],
                KeySchema=properties["KeySchema"],
                BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
            )
        elif kind == "AWS::Events::Rule":
            events.put_rule(
                Name=name,
                EventPattern=json.dumps(properties["EventPattern"]),
                State=properties.get("State", "ENABLED"),
                EventBusName=properties.get("EventBusName", "default"),
            )
            events.put_targets(
                Rule=name,
                EventBusName=properties.get("EventBusName", "default"),
                Targets=[
                    {"Id": target["Id"], "Arn": target["Arn"]} for target in properties.get("Targets", [])
                ],
            )
        elif kind == "AWS::SNS::Topic":
            topic_name = resolver.attributes[(logical_id, "TopicName")]
            topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
            stack.topic_queues[logical_id] = _subscribe_queue(sqs, sns, topic_arn, f"{topic_name}-deliveries")
        elif kind == "AWS::IAM::Role":
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        elif kind == "AWS::Serverless::Function":
            environment = {
                k: str(v) for k, v in properties.get("Environment", {}).get("Variables", {}).items()
            }
            environment.update(
                {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}, **(extra_environment or {})
            )
            lambda_client.create_function(
                FunctionName=name,
                Runtime=properties.get("Runtime", "python3.13"),
                Role=role_arn,
                Handler=properties["Handler"],
                Code={"ZipFile": _placeholder_zip()},
                Environment={"Variables": environment},
                Timeout=int(properties.get("Timeout", 3)),
                MemorySize=int(properties.get("MemorySize", 128)),
            )
            stack.lambdas.register(
                FunctionSpec(
                    name=name,
                    arn=resolver.attributes[(logical_id, "Arn")],
                    handler=properties["Handler"],
                    environment=environment,
                    memory_mb=int(properties.get("MemorySize", 128)),
                )
            )
            stack.event_sources.extend(_sqs_event_sources(resolver, name, properties))
        elif kind == "AWS::Serverless::StateMachine":
            definition_path = template.path.parent / properties["DefinitionUri"]
            definition = substitute_definition(
                definition_path.read_text(encoding="utf-8"), properties.get("DefinitionSubstitutions", {})
            )
            sfn.create_state_machine(
                name=resolver.physical_ids[logical_id].rsplit(":", 1)[-1],
                definition=definition,
                roleArn=role_arn,
                type=properties.get("Type", "STANDARD"),
            )
    return stack
