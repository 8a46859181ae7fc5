"""What `stack.deploy` deployed into moto: physical ids, parameters, the in-process functions, and the
local stand-ins (SQS event sources to poll, a queue on each topic to read notifications back from)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import boto3

from .identities import active_account
from .lambda_runtime import FunctionSpec, InProcessLambdas, function_name_of
from .sam import CloudFormation, TemplateError


@dataclass(frozen=True)
class SqsEventSource:
    """A function's SQS event source mapping, as the Lambda service would poll it."""

    function: str  # physical function name
    queue_url: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency; None: Lambda's default


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
    function_roles: dict[str, str] = field(default_factory=dict)  # function name → execution role ARN

    def physical(self, logical_id: str) -> str:
        try:
            return self.physical_ids[logical_id]
        except KeyError:
            reason = self.skipped.get(logical_id, "no such resource in the translated template")
            raise TemplateError(f"{logical_id} is not deployed: {reason}") from None

    def function(self, logical_id: str) -> FunctionSpec:
        """The deployed function (handler, environment) of a logical id."""
        return self.lambdas.functions[self.physical(logical_id)]

    def function_session(self, function: str) -> boto3.Session:
        """A session with a function's execution role (as the Lambda service, e.g. its SQS pollers)."""
        name = function_name_of(function)
        return active_account().roles.session(self.function_roles[name], name)

    def operator_session(self) -> boto3.Session:
        """A session of the operator: a user with only the template's OperatorPolicy (identities.py)."""
        return active_account().operator(self.physical("OperatorPolicy")).session(self.region)

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
