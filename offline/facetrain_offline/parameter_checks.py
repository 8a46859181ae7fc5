"""Template parameter values checked as CloudFormation checks them before it creates anything.

moto's CloudFormation takes any value; AWS's refuses a value outside its parameter's declaration:
AllowedValues, AllowedPattern (the whole value), MinLength/MaxLength (String), a number that is not one,
and MinValue/MaxValue (Number). The offline deploy refuses what AWS refuses, with one exception that is
named: offline runs compress minutes into seconds, so the waits in OFFLINE_SHORT_WAITS may go below their
MinValue there (never above MaxValue) when the caller names them: stack.deploy(short_waits=…).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

# Waits whose MinValue keeps a deployed stack within AWS's limits (history budget, Lambda's batching
# window) but which tests and `facetrain run` shorten to seconds (tests/support/workflow.py,
# run_options.stack_parameters).
OFFLINE_SHORT_WAITS = frozenset(
    {"PollIntervalSeconds", "MaxPollIntervalSeconds", "UploadBatchingWindowSeconds"}
)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _range(spec: Mapping[str, Any], low: str, high: str) -> str:
    return f"{spec.get(low, 'no minimum')} to {spec.get(high, 'no maximum')}"


def value_problems(name: str, spec: Mapping[str, Any], value: str, short_wait: bool = False) -> list[str]:
    """Why CloudFormation would refuse `value` for the parameter `name` declared as `spec` (none: [])."""
    shown = f"{name}={value!r}"
    problems: list[str] = []
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        problems.append(f"{shown} is not one of its AllowedValues {[str(v) for v in allowed]}")
    if spec.get("Type") == "Number":
        number = _number(value)
        if number is None:
            return [*problems, f"{shown} is not a number (Type: Number)"]
        allowed_range = _range(spec, "MinValue", "MaxValue")
        if "MinValue" in spec and number < float(spec["MinValue"]) and not short_wait:
            problems.append(f"{shown} is below its MinValue {spec['MinValue']} (allowed: {allowed_range})")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            problems.append(f"{shown} is above its MaxValue {spec['MaxValue']} (allowed: {allowed_range})")
    elif spec.get("Type") == "String":
        pattern = spec.get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, value) is None:
            hint = f" ({spec['ConstraintDescription']})" if "ConstraintDescription" in spec else ""
            problems.append(f"{shown} does not match its AllowedPattern {pattern}{hint}")
        lengths = _range(spec, "MinLength", "MaxLength")
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            problems.append(f"{shown} is shorter than its MinLength {spec['MinLength']} (allowed: {lengths})")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            problems.append(f"{shown} is longer than its MaxLength {spec['MaxLength']} (allowed: {lengths})")
    return problems


def parameter_problems(
    declared: Mapping[str, Mapping[str, Any]],
    values: Mapping[str, str],
    short_waits: Collection[str] = (),
) -> list[str]:
    """Every problem of every value (declared: the template's Parameters); the parameters in short_waits
    may go below their MinValue."""
    return [
        problem
        for name, value in values.items()
        for problem in value_problems(name, declared[name], value, short_wait=name in short_waits)
    ]
