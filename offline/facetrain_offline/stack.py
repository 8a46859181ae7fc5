"""Deploy template.yaml into moto as AWS would: `sam package`, the SAM transform, then CloudFormation.

The template goes through sam.py (AWS's own SAM translator) and the CloudFormation it yields is created
by moto's CloudFormation (`create_stack`): names, Refs, GetAtts, conditions and the generated roles are
moto's, not ours. What moto cannot do is done around it by the seams, one per resource type
(moto_seams.SEAMS; the types left out, and why, are there too). The handlers run in-process
(lambda_runtime.py).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import boto3
from facetrain.contract.counting import counted
from moto.core import DEFAULT_ACCOUNT_ID

from .identities import active_account
from .lambda_runtime import FunctionSpec, InProcessLambdas
from .local_stack import LocalStack
from .moto_seams import SEAMS, fill, split_for_moto
from .parameter_checks import parameter_problems
from .sam import ARTIFACTS_BUCKET, TemplateError, load_sam, package, translate

ACCOUNT = DEFAULT_ACCOUNT_ID


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


def _parameters(
    sam: dict[str, Any], overrides: dict[str, str], short_waits: Collection[str] = ()
) -> dict[str, str]:
    """Every parameter's value (the overrides over the defaults), refused as CloudFormation refuses it
    (parameter_problems); the parameters in short_waits may go below their MinValue."""
    declared = sam.get("Parameters", {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"{counted(len(unknown), 'unknown template parameter')}: {', '.join(unknown)}")
    defaults = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    parameters = {**defaults, **overrides}
    missing = sorted(set(declared) - set(parameters))
    if missing:
        raise TemplateError(
            f"{counted(len(missing), 'template parameter')} without a value: {', '.join(missing)}"
        )
    problems = parameter_problems(declared, parameters, short_waits)
    if problems:
        raise TemplateError("CloudFormation would refuse these parameters:\n- " + "\n- ".join(problems))
    return parameters


def deploy(
    template_path: Path,
    parameter_overrides: dict[str, str],
    *,
    stack_name: str = "facetrain-local",
    region: str = "eu-west-1",
    extra_environment: dict[str, str] | None = None,
    short_waits: Collection[str] = (),
) -> LocalStack:
    """Package, translate and create the template in moto (call inside an active mock); register the
    handlers. Each function's environment is the deployed one, then the variables the Lambda runtime
    sets (AWS_REGION, AWS_DEFAULT_REGION), then extra_environment (e.g. AWS_MAX_ATTEMPTS=1 in tests).
    Parameter values CloudFormation would refuse are refused (TemplateError naming each), except that
    the waits named in short_waits (e.g. parameter_checks.OFFLINE_SHORT_WAITS: tests and `facetrain run`
    compress minutes into seconds) may go below their MinValue."""
    sam = load_sam(template_path)
    parameters = _parameters(sam, parameter_overrides, short_waits)
    packaged = package(sam, template_path.parent)
    template = translate(packaged, parameters, region)
    session = boto3.Session(region_name=region)
    s3, lambda_client, cloudformation = (session.client(name) for name in ("s3", "lambda", "cloudformation"))
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET, **location)
    for key, data in packaged.uploads.items():
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=data)

    stack = LocalStack(stack_name, template, parameters, InProcessLambdas(), region)
    body, taken = split_for_moto(template, stack.skipped)
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
        stack.function_roles[configuration["FunctionName"]] = configuration["Role"]
        role = active_account().roles.credentials(configuration["Role"], configuration["FunctionName"])
        stack.lambdas.register(
            FunctionSpec(
                name=configuration["FunctionName"],
                arn=configuration["FunctionArn"],
                handler=configuration["Handler"],
                environment={**{k: str(v) for k, v in variables.items()}, **role.environment(), **runtime},
                memory_mb=int(configuration.get("MemorySize", 128)),
                logical_id=logical_id,
            )
        )
    for logical_id, deferred in taken.items():
        seam = SEAMS[template.resources[logical_id]["Type"]]
        if seam.replaces or logical_id in stack.physical_ids:  # else its condition is false
            seam.apply(session, stack, logical_id, fill(deferred, outputs))
    return stack
