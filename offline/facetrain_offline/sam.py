"""template.yaml as AWS deploys it: packaged as `sam package` does, transformed by AWS's own SAM translator.

`package` points every local artifact (CodeUri, ContentUri, DefinitionUri) at an object in an artifacts
bucket, as `sam package` does, and returns what to upload there: the state machine definition as it is,
and a placeholder for code packages (the handlers run in-process from this checkout, see
lambda_runtime.py). `translate` runs `aws-sam-translator`, the code behind CloudFormation's
AWS::Serverless transform: Globals, generated roles, policies, event source mappings and rules are what
AWS would make of the template, not a home-made imitation.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from cfnlint.decode import decode_str
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ARTIFACTS_BUCKET = "facetrain-offline-artifacts"  # stands in for the bucket `sam deploy` packages into
CODE_PACKAGE_KEY = "code/in-process.zip"


class TemplateError(ValueError):
    """The template cannot be read, translated or deployed offline."""


@dataclass(frozen=True)
class CloudFormation:
    """A CloudFormation template (the translator's output), read by resource type."""

    body: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.body.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.resources.items() if r.get("Type") == resource_type}

    def parameter_defaults(self) -> dict[str, str]:
        return {
            name: str(spec["Default"])
            for name, spec in self.body.get("Parameters", {}).items()
            if "Default" in spec
        }


@dataclass(frozen=True)
class Packaged:
    """A SAM template whose artifacts are S3 objects, and the objects to upload (key → bytes)."""

    body: dict[str, Any]
    uploads: dict[str, bytes] = field(default_factory=dict)


def load_sam(path: Path) -> dict[str, Any]:
    """The SAM template as data (YAML short forms such as !Ref in their long form)."""
    body, problems = decode_str(path.read_text(encoding="utf-8"))
    if problems or body is None:
        raise TemplateError(f"{path}: {'; '.join(str(p) for p in problems) or 'cannot be decoded'}")
    return json.loads(json.dumps(body))  # plain dicts and lists, as the translator expects


def _placeholder_package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "facetrain offline stack: handlers run in-process from the checkout\n")
    return buffer.getvalue()


def package(sam: dict[str, Any], template_dir: Path) -> Packaged:
    """What `sam package` does to the template: local artifact paths become S3 locations."""
    body = copy.deepcopy(sam)
    uploads: dict[str, bytes] = {}
    s3_uri = f"s3://{ARTIFACTS_BUCKET}/{CODE_PACKAGE_KEY}"
    containers = [body.get("Globals", {}).get("Function", {})]
    containers += [r.get("Properties", {}) for r in body.get("Resources", {}).values()]
    for properties in containers:
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = s3_uri
                uploads[CODE_PACKAGE_KEY] = _placeholder_package()
        definition = properties.get("DefinitionUri")
        if isinstance(definition, str) and not definition.startswith("s3://"):
            path = template_dir / definition
            if not path.is_file():
                raise TemplateError(f"DefinitionUri {definition}: no such file next to the template")
            key = f"definitions/{path.name}"
            uploads[key] = path.read_bytes()
            properties["DefinitionUri"] = {"Bucket": ARTIFACTS_BUCKET, "Key": key}
    return Packaged(body, uploads)


class _NoManagedPolicyLookup:
    """The translator looks managed policies up by name through IAM; the template names none by name
    (only ARNs and SAM policy templates), and offline there is no IAM to ask."""

    def load(self) -> dict[str, str]:
        raise TemplateError("the template names a managed policy by name; give its ARN instead")


def translate(packaged: Packaged, parameters: dict[str, str], region: str) -> CloudFormation:
    """The CloudFormation that the AWS::Serverless transform makes of the packaged template."""
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region))
    policies = _NoManagedPolicyLookup()
    try:
        body = translator.translate(
            copy.deepcopy(packaged.body),
            parameter_values=dict(parameters),
            get_managed_policy_map=policies.load,
        )
    except TemplateError:
        raise
    except Exception as exc:  # the translator's InvalidDocumentException lists every problem
        raise TemplateError(f"the SAM transform refused the template: {exc}") from exc
    return CloudFormation(body)


def translated(
    path: Path, parameters: dict[str, str] | None = None, region: str = "eu-west-1"
) -> CloudFormation:
    """template.yaml packaged and translated (what `sam deploy` hands to CloudFormation)."""
    return translate(package(load_sam(path), path.parent), parameters or {}, region)
