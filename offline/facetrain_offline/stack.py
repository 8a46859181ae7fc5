"""Deploy template.yaml into moto: the bucket, the topic, the Lambdas (real handlers, in-process) and the
state machine (the real ASL with its DefinitionSubstitutions), all named and wired as the template says.
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

from .lambda_runtime import FunctionSpec, InProcessLambdas
from .template import Resolver, Template, TemplateError

ACCOUNT = "123456789012"  # moto's default account
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
    "AWS::IAM::Role",
    "AWS::Serverless::Function",
    "AWS::Serverless::StateMachine",
}


@dataclass
class LocalStack:
    """What was deployed: physical names by logical id, and the in-process Lambda registry."""

    template: Template
    resolver: Resolver
    lambdas: InProcessLambdas
    region: str
    skipped: dict[str, str] = field(default_factory=dict)  # logical id → why it is not deployed

    def physical(self, logical_id: str) -> str:
        return self.resolver.physical_ids[logical_id]

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
            name = _physical_name(stack, logical_id, "statemachine")
            resolver.physical_ids[logical_id] = arn % ("states", f"stateMachine:{name}")
            resolver.attributes[(logical_id, "Name")] = name
            resolver.attributes[(logical_id, "Arn")] = arn % ("states", f"stateMachine:{name}")
        elif kind == "AWS::IAM::Role":
            name = _physical_name(stack, logical_id, "role")
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        elif kind == "AWS::Logs::LogGroup":
            name = f"/local/{stack}/{logical_id}"
            resolver.physical_ids[logical_id] = name
            resolver.attributes[(logical_id, "Arn")] = arn % ("logs", f"log-group:{name}:*")
        else:
            resolver.physical_ids[logical_id] = _physical_name(stack, logical_id, "other")
            resolver.attributes[(logical_id, "Arn")] = arn % ("local", f"{logical_id}")
        del properties


def _placeholder_zip() -> bytes:
    """moto's CreateFunction wants a package; the real handler runs in-process, not from this zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "facetrain offline stack: handlers run in-process\n")
    return buffer.getvalue()


def substitute_definition(text: str, substitutions: dict[str, Any]) -> str:
    """Apply DefinitionSubstitutions as Step Functions does (`${Name}` replaced, unknown names kept)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(substitutions[name]) if name in substitutions else match.group(0)

    return _SUBSTITUTION.sub(replace, text)


def deploy(
    template_path: Path,
    parameter_overrides: dict[str, str],
    *,
    stack_name: str = "facetrain-local",
    region: str = "eu-west-1",
    extra_environment: dict[str, str] | None = None,
) -> LocalStack:
    """Create the template's resources in moto (call inside an active mock) and register the handlers."""
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
    sns = boto3.client("sns", region_name=region)
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
        elif kind == "AWS::SNS::Topic":
            sns.create_topic(Name=resolver.attributes[(logical_id, "TopicName")])
        elif kind == "AWS::IAM::Role":
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        elif kind == "AWS::Serverless::Function":
            environment = {
                k: str(v) for k, v in properties.get("Environment", {}).get("Variables", {}).items()
            }
            environment.update(extra_environment or {})
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
        elif kind == "AWS::Serverless::StateMachine":
            definition_path = template.path.parent / properties["DefinitionUri"]
            definition = substitute_definition(
                definition_path.read_text(encoding="utf-8"), properties.get("DefinitionSubstitutions", {})
            )
            sfn.create_state_machine(
                name=resolver.attributes[(logical_id, "Name")],
                definition=definition,
                roleArn=role_arn,
                type=properties.get("Type", "STANDARD"),
            )
    return stack
