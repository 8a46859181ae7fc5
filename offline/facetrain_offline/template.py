"""Read template.yaml as CloudFormation would: parameters, conditions, Globals and intrinsic functions.

The offline stack deploys from the template itself, so the handler paths, environment variables and
DefinitionSubstitutions that run locally are the ones `sam deploy` would use. Only the intrinsic
functions the template uses are supported; any other one is a clear error, not a silent guess.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(ValueError):
    """The template cannot be read or uses something the offline stack does not support."""


@dataclass
class Template:
    """A decoded SAM template with its Globals merged into each function."""

    path: Path
    body: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Template:
        body, problems = decode_str(path.read_text(encoding="utf-8"))
        if problems or body is None:
            raise TemplateError(f"{path}: {'; '.join(str(p) for p in problems) or 'cannot be decoded'}")
        body = copy.deepcopy(dict(body))
        function_globals = body.get("Globals", {}).get("Function", {})
        for resource in body.get("Resources", {}).values():
            if resource.get("Type") == "AWS::Serverless::Function":
                resource["Properties"] = _merge_globals(function_globals, resource.get("Properties", {}))
        return cls(path=path, body=body)

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


def _merge_globals(globals_: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge (the resource wins), everything else is replaced by the resource."""
    merged = copy.deepcopy(globals_)
    for key, value in properties.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_globals(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class Resolver:
    """Evaluates intrinsic functions against parameter values and the local physical ids of resources."""

    template: Template
    parameters: dict[str, str]
    stack_name: str
    region: str
    account: str
    physical_ids: dict[str, str] = field(default_factory=dict)  # logical id → Ref value
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical id, attr) → value

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/local"
            ),
        }
        try:
            return values[name]
        except KeyError:
            raise TemplateError(f"pseudo parameter {name} is not supported offline") from None

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise TemplateError(f"Ref to {name}: no such parameter or (deployed) resource")

    def get_att(self, name: str, attribute: str) -> str:
        try:
            return self.attributes[(name, attribute)]
        except KeyError:
            raise TemplateError(f"Fn::GetAtt {name}.{attribute} is not available offline") from None

    def condition(self, name: str) -> bool:
        try:
            return bool(self.resolve(self.template.body["Conditions"][name]))
        except KeyError:
            raise TemplateError(f"unknown condition {name}") from None

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute)
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def resolve(self, value: Any) -> Any:
        """Evaluate every intrinsic function inside value."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                if isinstance(argument, list):
                    text, variables = argument
                    return self._sub(text, {k: self.resolve(v) for k, v in variables.items()})
                return self._sub(argument, {})
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.condition(name) else when_false)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in argument)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(argument[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in argument)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in argument)
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic function {key} is not supported offline")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}
