"""Delete the offline stack as CloudFormation deletes one (`sam delete`), resource by resource.

CloudFormation deletes a resource only once every resource that depends on it is gone: the dependencies
are the translated template's Ref, Fn::GetAtt and Fn::Sub references and DependsOn (`dependencies`).
`deletion_waves` orders the resources so: each wave holds what may go once the earlier waves are gone.
CloudFormation deletes a wave's resources concurrently; here they go one at a time, custom resources
first, so that a custom resource runs while its wave-mates still exist (the case where a race shows).
moto's own `delete_stack` is not used to order anything: it deletes in set order and retries failures.

What is moto's and what is the seam, per resource:
- a resource moto's CloudFormation created is deleted by moto's own per-resource delete (a rule's targets
  are removed first, as CloudFormation does); then, where moto does less than AWS: a bucket moto kept
  because it is not empty fails the deletion (CloudFormation's DELETE_FAILED, BucketNotEmpty); the
  executing state machine (moto_seams made it beside moto's) is deleted too, its running executions
  stopped (AWS terminates them at their next state transition); a function's in-process handler is
  unregistered; a topic's local delivery queue goes;
- a custom resource (never created offline, see moto_seams) gets the Delete request CloudFormation sends
  to its ServiceToken function, invoked in-process, with ResourceProperties resolved by moto and a
  stand-in PhysicalResourceId (its Create never ran). The function's answer, PUT to ResponseURL through
  http.client (crhelper, urllib), is captured on that host; anything but SUCCESS, or no answer, fails;
- an SQS event source mapping (polled by sqs_event_source, not moto) leaves the stack's list: a poller's
  poll_once (the `services` given to delete) no longer polls it; threads of a running() poller keep theirs;
- resources not deployed offline (moto_seams.NO_BEHAVIOUR_OFFLINE, false conditions) have nothing to go.

Each deletion completes before the next starts (CloudFormation waits for each to stabilise); meanwhile
the services the stack runs keep working: `services` (e.g. SqsEventPoller.poll_once) is called after each
deletion until it reports no work, so what a deletion caused (events of the bucket being emptied) is
delivered to whatever still exists. Finally moto's `delete_stack` marks the (now empty) stack deleted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.cloudformation.models import cloudformation_backends
from moto.cloudformation.parsing import ResourceMap, clean_json
from moto.core import DEFAULT_ACCOUNT_ID

from .lambda_runtime import function_name_of
from .local_stack import LocalStack
from .sam import CloudFormation, TemplateError

RESPONSE_HOST = "cloudformation-custom-resource-response.offline.invalid"
_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9_]+)(?:\.[A-Za-z0-9_.]+)?\}")


class StackDeleteFailed(RuntimeError):
    """A resource could not be deleted (CloudFormation's DELETE_FAILED): what went stays gone."""


@dataclass
class DeletedStack:
    """What `delete` did: the waves in order, and each custom resource's answer (the PUT document)."""

    waves: list[list[str]]
    deleted: list[str] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _references(value: Any, names: set[str]) -> set[str]:
    """The resources among `names` that value refers to with Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item, names)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item.split(".", 1)[0] if isinstance(item, str) else str(item[0]))
            elif key == "Fn::Sub":
                text, variables = (item, {}) if isinstance(item, str) else (item[0], item[1])
                found |= set(_SUB_NAME.findall(text)) - set(variables)
                found |= _references(variables, names)
            else:
                found |= _references(item, names)
    return found & names


def dependencies(template: CloudFormation) -> dict[str, set[str]]:
    """Each resource's dependencies: the resources it refers to, and those it names in DependsOn."""
    names = set(template.resources)
    result: dict[str, set[str]] = {}
    for name, resource in template.resources.items():
        depends_on = resource.get("DependsOn", [])
        explicit = {depends_on} if isinstance(depends_on, str) else set(depends_on)
        body = {key: value for key, value in resource.items() if key not in ("DependsOn", "Metadata")}
        result[name] = (_references(body, names) | (explicit & names)) - {name}
    return result


def deletion_waves(template: CloudFormation) -> list[list[str]]:
    """The resources in deletion order: a wave holds the resources no remaining resource depends on;
    custom resources first within a wave. A dependency cycle is an error (CloudFormation refuses it)."""
    needs = dependencies(template)
    remaining = set(needs)
    waves: list[list[str]] = []
    while remaining:
        depended_on = {dependency for name in remaining for dependency in needs[name]}
        wave = remaining - depended_on
        if not wave:
            raise TemplateError(f"circular dependency between {sorted(remaining)}")
        kind = {name: template.resources[name]["Type"] for name in wave}
        waves.append(sorted(wave, key=lambda name: (not kind[name].startswith("Custom::"), name)))
        remaining -= wave
    return waves


@contextlib.contextmanager
def _answers_captured(answers: list[dict[str, Any]]) -> Iterator[None]:
    """PUTs to RESPONSE_HOST through http.client are captured (and answered 200) instead of sent."""
    original_request = http.client.HTTPConnection.request
    original_response = http.client.HTTPConnection.getresponse

    def request(
        connection: http.client.HTTPConnection,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> None:
        if connection.host != RESPONSE_HOST:
            return original_request(connection, method, url, body, headers or {}, **kwargs)
        answers.append(json.loads(body))
        return None

    def getresponse(connection: http.client.HTTPConnection) -> Any:
        if connection.host != RESPONSE_HOST:
            return original_response(connection)
        return _Accepted()

    http.client.HTTPConnection.request = request  # type: ignore[assignment,method-assign]
    http.client.HTTPConnection.getresponse = getresponse  # type: ignore[method-assign]
    try:
        yield
    finally:
        http.client.HTTPConnection.request = original_request  # type: ignore[method-assign]
        http.client.HTTPConnection.getresponse = original_response  # type: ignore[method-assign]


class _Accepted:
    """The response CloudFormation's pre-signed URL gives to an answer."""

    status, reason = 200, "OK"

    def read(self, *_: Any) -> bytes:
        return b""


class _Deletion:
    """One stack's deletion: moto's resource map, clients, and the report being filled."""

    def __init__(self, stack: LocalStack, report: DeletedStack) -> None:
        self.stack, self.report = stack, report
        self.session = boto3.Session(region_name=stack.region)
        self.moto_stack = cloudformation_backends[DEFAULT_ACCOUNT_ID][stack.region].get_stack(stack.name)
        self.resource_map: ResourceMap = self.moto_stack.resource_map

    def delete(self, logical_id: str) -> None:
        resource = self.stack.template.resources[logical_id]
        kind = resource["Type"]
        if kind.startswith("Custom::"):
            self._custom_resource(logical_id, resource)
        elif kind == "AWS::Lambda::EventSourceMapping":
            self._event_source(resource)
        elif not isinstance(self.resource_map._parsed_resources.get(logical_id, ""), str):
            self._moto_resource(logical_id, kind)
        else:
            return  # not deployed offline: nothing to delete
        self.stack.physical_ids.pop(logical_id, None)
        self.report.deleted.append(logical_id)

    def _resolved(self, properties: dict[str, Any]) -> dict[str, Any]:
        return dict(clean_json(properties, self.resource_map))

    def _custom_resource(self, logical_id: str, resource: dict[str, Any]) -> None:
        """The Delete request CloudFormation sends; its answer must be SUCCESS."""
        properties = self._resolved(resource.get("Properties", {}))
        request_id = str(uuid.uuid4())
        event = {
            "RequestType": "Delete",
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": f"https://{RESPONSE_HOST}/{self.stack.name}/{logical_id}/{request_id}",
            "StackId": self.moto_stack.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
            "PhysicalResourceId": f"{self.stack.name}-{logical_id}-offline",
            "ResourceType": resource["Type"],
            "ResourceProperties": properties,
        }
        answers: list[dict[str, Any]] = []
        with _answers_captured(answers):
            _, error = self.stack.lambdas.call(properties["ServiceToken"], event)
        if not answers:
            raise StackDeleteFailed(f"{logical_id}: no answer from its function ({error or 'it returned'})")
        self.report.answers[logical_id] = answers[-1]
        if answers[-1].get("Status") != "SUCCESS":
            raise StackDeleteFailed(f"{logical_id}: {answers[-1].get('Reason', 'FAILED')}")

    def _event_source(self, resource: dict[str, Any]) -> None:
        properties = self._resolved(resource.get("Properties", {}))
        function = function_name_of(str(properties["FunctionName"]))
        queue_name = str(properties["EventSourceArn"]).split(":")[5]
        self.stack.event_sources[:] = [
            source
            for source in self.stack.event_sources
            if not (source.function == function and source.queue_url.rsplit("/", 1)[-1] == queue_name)
        ]

    def _moto_resource(self, logical_id: str, kind: str) -> None:
        physical_id = self.stack.physical_ids.get(logical_id)
        if kind == "AWS::StepFunctions::StateMachine" and physical_id:
            self._executing_state_machine(physical_id)
        if kind == "AWS::IAM::Role" and physical_id:  # CloudFormation detaches its ManagedPolicyArns
            self._detach_managed_policies(physical_id)
        parsed = self.resource_map._parsed_resources[logical_id]
        try:
            self.resource_map._delete_resource(parsed, self.resource_map._resource_json_map[logical_id])
        except Exception as exc:  # moto's error is the resource's failure reason
            raise StackDeleteFailed(f"{logical_id}: {exc}") from exc
        self.resource_map._parsed_resources.pop(logical_id)
        if kind == "AWS::S3::Bucket" and physical_id:
            self._bucket_gone(logical_id, physical_id)
        if kind == "AWS::Lambda::Function" and physical_id:  # an invocation now fails, as on AWS
            self.stack.lambdas.functions.pop(physical_id, None)
        if kind == "AWS::SNS::Topic" and logical_id in self.stack.topic_queues:
            self.session.client("sqs").delete_queue(QueueUrl=self.stack.topic_queues.pop(logical_id))

    def _detach_managed_policies(self, role: str) -> None:
        iam = self.session.client("iam")
        for policy in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=policy["PolicyArn"])

    def _executing_state_machine(self, arn: str) -> None:
        sfn = self.session.client("stepfunctions")
        running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
        for execution in running:
            sfn.stop_execution(executionArn=execution["executionArn"], cause="the state machine was deleted")
        sfn.delete_state_machine(stateMachineArn=arn)

    def _bucket_gone(self, logical_id: str, bucket: str) -> None:
        s3 = self.session.client("s3")
        if bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            raise StackDeleteFailed(f"{logical_id}: the bucket {bucket} is not empty (BucketNotEmpty)")


def delete(stack: LocalStack, services: Callable[[], int] | None = None) -> DeletedStack:
    """Delete the deployed stack in CloudFormation's order (see the module's docstring); call inside the
    mock that deployed it, with its functions installed. `services` runs after each deletion until it
    returns 0. Raises StackDeleteFailed at the first resource that cannot go."""
    report = DeletedStack(deletion_waves(stack.template))
    deletion = _Deletion(stack, report)
    for wave in report.waves:
        for logical_id in wave:
            deletion.delete(logical_id)
            while services is not None and services():
                pass
    deletion.session.client("cloudformation").delete_stack(StackName=stack.name)
    return report
