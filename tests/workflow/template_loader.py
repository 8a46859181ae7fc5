"""Read template.yaml as the offline stack needs it: function handlers and environments, the state
machine's definition and DefinitionSubstitutions, resolved against given physical ids.

Only the intrinsics the template uses where these values come from are resolved (Ref, Fn::GetAtt,
Fn::Sub of a plain string). Meant to move into the offline-stack package (issue 4) together with
lambda_adapter.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
_SHORT_TAGS = (
    "Ref",
    "GetAtt",
    "Sub",
    "If",
    "Not",
    "Equals",
    "Select",
    "Split",
    "Join",
    "GetAZs",
    "Condition",
)


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (!Ref X) into their long form ({"Ref": "X"})."""


def _construct(tag: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}": value}

    return construct


for _tag in _SHORT_TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data, intrinsics in long form."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)


class Resolver:
    """Resolve Ref/GetAtt/Sub against physical ids (`Logical` or `Logical.Attr`) and parameter values."""

    def __init__(
        self, template: Mapping[str, Any], physical: Mapping[str, str], parameters: Mapping[str, str]
    ):
        self.values: dict[str, str] = {
            name: str(spec["Default"])
            for name, spec in template.get("Parameters", {}).items()
            if "Default" in spec
        }
        self.values.update({name: str(value) for name, value in parameters.items()})
        self.values.update(physical)

    def _lookup(self, name: str) -> str:
        if name not in self.values:
            raise KeyError(f"no value for {name!r}: pass it as a physical id or parameter")
        return self.values[name]

    def resolve(self, value: Any) -> str:
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((kind, arg),) = value.items()
            if kind == "Ref":
                return self._lookup(arg)
            if kind == "Fn::GetAtt":
                return self._lookup(".".join(arg))
            if kind == "Fn::Sub" and isinstance(arg, str):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: self._lookup(m.group(1)), arg)
        raise ValueError(f"cannot resolve {value!r} offline")


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function as the offline stack runs it."""

    logical_id: str
    handler: str
    environment: dict[str, str]


def functions(template: Mapping[str, Any], resolver: Resolver) -> dict[str, FunctionSpec]:
    """Every function's handler and environment (Globals merged with its own variables)."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    specs = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        own = properties.get("Environment", {}).get("Variables", {})
        env = {name: resolver.resolve(value) for name, value in {**globals_env, **own}.items()}
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id, handler=properties["Handler"], environment=env
        )
    return specs


def state_machine_definition(template: Mapping[str, Any], resolver: Resolver, logical_id: str) -> str:
    """The ASL text with its DefinitionSubstitutions applied (as CloudFormation does)."""
    properties = template["Resources"][logical_id]["Properties"]
    text = (REPO / properties["DefinitionUri"]).read_text(encoding="utf-8")
    substitutions = {
        name: resolver.resolve(value) for name, value in properties["DefinitionSubstitutions"].items()
    }
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(substitutions))
    if missing:
        raise KeyError(f"the definition uses substitutions the template does not define: {missing}")
    return re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], text)
