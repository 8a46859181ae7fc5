"""template.yaml's numeric parameters at the ends of their ranges, deployed offline and held to AWS's
documented limits; values outside the declared ranges refused by the offline deploy as CloudFormation
refuses them (issue 22).

moto deploys values that AWS would refuse, so each deployed stack's actual properties (the SQS event
source, the queue, the functions' settings, the substituted state machine definition) are read back and
checked against LIMITS, a table of AWS's documented limits with the document each comes from.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from facetrain_offline.history_budget import (
    HISTORY_EVENT_QUOTA,
    events_per_poll,
    load_definition,
    minimum_max_poll_interval,
    usable_events,
    worst_case_events,
)
from facetrain_offline.local_aws import DEFAULT_TEMPLATE, local_aws
from facetrain_offline.parameter_checks import OFFLINE_SHORT_WAITS
from facetrain_offline.sam import TemplateError, load_sam
from facetrain_offline.stack import deploy
from support.testkit import FakeSageMaker, upload_photos
from support.workflow import IMAGE, REGION, WorkflowStack

PARAMETERS: dict[str, dict[str, Any]] = load_sam(DEFAULT_TEMPLATE)["Parameters"]
NUMERIC = {name: spec for name, spec in PARAMETERS.items() if spec["Type"] == "Number"}
ENDS = ("MinValue", "MaxValue")


@dataclass(frozen=True)
class Deployed:
    """What a deployed stack does with its parameters, read back from the local account."""

    batch_size: int  # the trigger's SQS event source mapping
    batching_window_seconds: int
    queue_visibility_timeout: int  # the upload events queue
    trigger_timeout: int  # the function the event source invokes
    max_runtime_seconds: (
        int  # the start function's MAX_RUNTIME_SECONDS (CreateTrainingJob's StoppingCondition)
    )
    definition: dict[str, Any]  # the state machine definition, substitutions applied

    @property
    def first_wait(self) -> int:
        return int(
            self.definition["States"]["StartTrainingJob"]["Parameters"]["Payload"]["poll_interval_seconds"]
        )

    @property
    def max_wait(self) -> int:
        payload = self.definition["States"]["PollTrainingJob"]["Parameters"]["Payload"]
        return int(payload["max_poll_interval_seconds"])


def _history_problem(deployed: Deployed) -> str | None:
    try:
        events = worst_case_events(deployed.definition, deployed.first_wait, deployed.max_wait)
    except ValueError as exc:
        return str(exc)
    if events > usable_events():
        return f"{events} events (budget {usable_events()} of the quota's {HISTORY_EVENT_QUOTA})"
    return None


def _within(value: int, low: int, high: int) -> str | None:
    return None if low <= value <= high else f"{value} is outside {low}-{high}"


@dataclass(frozen=True)
class Limit:
    """One documented AWS limit: what it says, where it is documented, and the check (None: within)."""

    says: str
    source: str
    problem: Callable[[Deployed], str | None]


LAMBDA_SQS_PARAMETERS = (
    "AWS Lambda Developer Guide, 'Lambda parameters for Amazon SQS event source mappings' "
    "(docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html)"
)
LAMBDA_ESM_API = (
    "AWS Lambda API Reference, CreateEventSourceMapping, MaximumBatchingWindowInSeconds "
    "(docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html)"
)
LAMBDA_SQS_CONFIGURE = (
    "AWS Lambda Developer Guide, 'Creating and configuring an Amazon SQS event source mapping' "
    "(docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html)"
)
SAGEMAKER_STOPPING = (
    "Amazon SageMaker API Reference, StoppingCondition, MaxRuntimeInSeconds: 'The maximum value is 28 days' "
    "(docs.aws.amazon.com/sagemaker/latest/APIReference/API_StoppingCondition.html)"
)
SFN_QUOTAS = (
    "AWS Step Functions Developer Guide, 'Step Functions service quotas', 'Maximum execution history size: "
    "25,000 events in a single state machine execution history' (standard workflows) "
    "(docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)"
)

LIMITS = (
    Limit(
        "an SQS event source of a standard queue takes batches of 1-10,000 messages",
        LAMBDA_SQS_PARAMETERS,
        lambda d: _within(d.batch_size, 1, 10_000),
    ),
    Limit(
        "MaximumBatchingWindowInSeconds is 0-300 s",
        LAMBDA_ESM_API,
        lambda d: _within(d.batching_window_seconds, 0, 300),
    ),
    Limit(
        "with BatchSize above 10, MaximumBatchingWindowInSeconds is at least 1 s",
        LAMBDA_ESM_API,
        lambda d: (
            None
            if d.batch_size <= 10 or d.batching_window_seconds >= 1
            else f"BatchSize {d.batch_size} with a {d.batching_window_seconds} s window"
        ),
    ),
    Limit(
        "the function timeout is at most the queue's visibility timeout (else Lambda refuses the mapping)",
        LAMBDA_SQS_CONFIGURE,
        lambda d: (
            None
            if d.trigger_timeout <= d.queue_visibility_timeout
            else f"timeout {d.trigger_timeout} s > visibility timeout {d.queue_visibility_timeout} s"
        ),
    ),
    Limit(
        "the queue's visibility timeout is at least six times the function timeout (recommended)",
        LAMBDA_SQS_CONFIGURE,
        lambda d: (
            None
            if d.queue_visibility_timeout >= 6 * d.trigger_timeout
            else f"visibility timeout {d.queue_visibility_timeout} s < 6 x {d.trigger_timeout} s"
        ),
    ),
    Limit(
        "a training job's MaxRuntimeInSeconds is 1 s to 28 days",
        SAGEMAKER_STOPPING,
        lambda d: _within(d.max_runtime_seconds, 1, 28 * 24 * 3600),
    ),
    Limit(
        "an execution's history stays within 25,000 events, polling for as long as it may run",
        SFN_QUOTAS,
        _history_problem,
    ),
)


@pytest.fixture
def account() -> Iterator[None]:
    """A fresh local account for the test's stacks."""
    with local_aws(REGION):
        yield


def _deploy_and_read(name: str, overrides: dict[str, str]) -> Deployed:
    """Deploy with CloudFormation's checks in full (no offline short waits) and read the stack back."""
    stack = deploy(
        DEFAULT_TEMPLATE,
        {"TrainingImageUri": IMAGE, **overrides},
        stack_name=name,
        region=REGION,
        short_waits=(),
    )
    session = boto3.Session(region_name=REGION)
    lambda_client, sqs, sfn = (session.client(n) for n in ("lambda", "sqs", "stepfunctions"))
    (source,) = stack.event_sources
    visibility = sqs.get_queue_attributes(QueueUrl=source.queue_url, AttributeNames=["VisibilityTimeout"])
    start = lambda_client.get_function_configuration(FunctionName=stack.physical("StartFunction"))
    machine = sfn.describe_state_machine(
        stateMachineArn=stack.physical(stack.only("AWS::StepFunctions::StateMachine"))
    )
    return Deployed(
        batch_size=source.batch_size,
        batching_window_seconds=source.batching_window_seconds,
        queue_visibility_timeout=int(visibility["Attributes"]["VisibilityTimeout"]),
        trigger_timeout=int(
            lambda_client.get_function_configuration(FunctionName=source.function)["Timeout"]
        ),
        max_runtime_seconds=int(start["Environment"]["Variables"]["MAX_RUNTIME_SECONDS"]),
        definition=json.loads(machine["definition"]),
    )


def _broken_limits(deployed: Deployed) -> list[str]:
    return [
        f"{limit.says}: {problem} [{limit.source}]"
        for limit in LIMITS
        if (problem := limit.problem(deployed)) is not None
    ]


def test_every_numeric_parameter_declares_both_ends_of_its_range() -> None:
    assert NUMERIC
    for name, spec in NUMERIC.items():
        assert set(ENDS) <= set(spec), name
        assert spec["MinValue"] <= spec["Default"] <= spec["MaxValue"], name


@pytest.mark.parametrize(("name", "end"), [(name, end) for name in NUMERIC for end in ENDS])
def test_each_end_of_each_range_deploys_within_awss_limits(account: None, name: str, end: str) -> None:
    value = str(NUMERIC[name][end])
    deployed = _deploy_and_read(f"limits-{name}-{end}"[:60], {name: value})
    assert _broken_limits(deployed) == [], f"{name}={value} ({end})"


@pytest.mark.parametrize("end", ENDS)
def test_all_parameters_at_the_same_end_deploy_within_awss_limits(account: None, end: str) -> None:
    overrides = {name: str(spec[end]) for name, spec in NUMERIC.items()}
    assert _broken_limits(_deploy_and_read(f"limits-all-{end}", overrides)) == [], overrides


def test_the_least_max_poll_interval_keeps_the_history_budget() -> None:
    definition = load_definition()
    least = minimum_max_poll_interval(definition)
    assert NUMERIC["MaxPollIntervalSeconds"]["MinValue"] >= least
    assert (
        worst_case_events(definition, 1, least)
        <= usable_events()
        < worst_case_events(definition, 1, least - 1)
    )


@pytest.mark.parametrize("name", sorted(NUMERIC))
@pytest.mark.parametrize(("end", "step"), [("MinValue", -1), ("MaxValue", 1)])
def test_a_value_outside_the_range_is_refused_naming_parameter_value_and_range(
    account: None, name: str, end: str, step: int
) -> None:
    spec = NUMERIC[name]
    value = str(spec[end] + step)
    with pytest.raises(TemplateError) as refused:
        deploy(
            DEFAULT_TEMPLATE,
            {"TrainingImageUri": IMAGE, name: value},
            stack_name="refused",
            region=REGION,
            short_waits=(),
        )
    message = str(refused.value)
    assert f"{name}='{value}'" in message
    assert f"allowed: {spec['MinValue']} to {spec['MaxValue']}" in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"UseSpotInstances": "yes"}, "UseSpotInstances='yes' is not one of its AllowedValues"),
        ({"TrainingImageUri": "facetrain:latest"}, "TrainingImageUri='facetrain:latest' does not match"),
        ({"TrainingInstanceCount": "two"}, "TrainingInstanceCount='two' is not a number"),
    ],
)
def test_values_cloudformation_refuses_are_refused(
    account: None, overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(TemplateError, match=expected):
        deploy(
            DEFAULT_TEMPLATE, {"TrainingImageUri": IMAGE, **overrides}, stack_name="refused", region=REGION
        )


def test_offline_short_waits_go_below_the_minimum_only_when_asked(account: None) -> None:
    short = {name: "0" for name in OFFLINE_SHORT_WAITS}
    assert all(NUMERIC[name]["MinValue"] > 0 for name in OFFLINE_SHORT_WAITS)
    with pytest.raises(TemplateError, match="below its MinValue"):
        deploy(
            DEFAULT_TEMPLATE,
            {"TrainingImageUri": IMAGE, **short},
            stack_name="short",
            region=REGION,
            short_waits=(),
        )
    with pytest.raises(TemplateError, match="below its MinValue"):  # strict unless asked
        deploy(DEFAULT_TEMPLATE, {"TrainingImageUri": IMAGE, **short}, stack_name="short", region=REGION)
    deployed = deploy(
        DEFAULT_TEMPLATE,
        {"TrainingImageUri": IMAGE, **short},
        stack_name="short",
        region=REGION,
        short_waits=OFFLINE_SHORT_WAITS,
    )
    assert deployed.parameters["PollIntervalSeconds"] == "0"
    with pytest.raises(TemplateError, match="above its MaxValue"):
        deploy(
            DEFAULT_TEMPLATE,
            {"TrainingImageUri": IMAGE, "PollIntervalSeconds": "3601"},
            region=REGION,
            short_waits=OFFLINE_SHORT_WAITS,
        )


def test_one_poll_adds_the_events_counted_from_the_asl(
    stack: WorkflowStack, fake_sagemaker: FakeSageMaker
) -> None:
    """The count history_budget makes of the ASL is what the ASL interpreter records, poll after poll."""
    upload_photos(stack.s3, stack.bucket, {"alice": 2, "bob": 2})
    fake_sagemaker.in_progress_polls = 3

    result = stack.run({}, name="exec-history")

    assert result["status"] == "SUCCEEDED", result.get("cause")
    events = stack.history(result["executionArn"])
    waits = [
        i
        for i, event in enumerate(events)
        if event.get("stateEnteredEventDetails", {}).get("name") == "WaitForTrainingJob"
    ]
    assert len(waits) == 4
    assert {later - earlier for earlier, later in itertools.pairwise(waits)} == {
        events_per_poll(load_definition())
    }
