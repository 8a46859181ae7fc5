"""What `facetrain run` was asked to do, and what that makes of the console input and the stack's
parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facetrain.contract.counting import counted

from .local_aws import DEFAULT_TEMPLATE

LOCAL_IMAGE_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/facetrain:local"


@dataclass
class RunOptions:
    """What `facetrain run` was asked to do."""

    images_dir: Path | None  # None: a forget (`facetrain forget`), which uploads nothing
    out_dir: Path
    hyperparameters: dict[str, str] = field(default_factory=dict)
    state_dir: Path | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    template: Path = DEFAULT_TEMPLATE
    poll_seconds: int = 1
    run_id: str | None = None
    timeout_seconds: float = 3600.0
    trigger: str = "console"  # or "upload": one object at a time through the template's upload trigger
    settle_seconds: int = 2
    force: bool = False
    min_accuracy: float | None = None
    max_fpir: float | None = None  # quality gate: the FPIR's 95 % upper bound the run must stay within
    image: str | None = None  # run the job in this local image (podman), not as a `train` process
    forget: list[str] = field(default_factory=list)  # `facetrain forget`: the names, in the console input


def recorded_input(payload: dict[str, Any]) -> dict[str, Any]:
    """The console input as run.json and the terminal show it: a forget's names are not recorded (run.json
    lies in --out, which the erasure must leave without a trace of them)."""
    if "forget" not in payload:
        return payload
    return {**payload, "forget": f"<{counted(len(payload['forget']), 'name')}, not recorded>"}


def console_input(options: RunOptions, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """The documented console input for this run (stack defaults fill the rest)."""
    if options.forget:
        return {"forget": list(options.forget)}  # nothing else: the published run's settings are used
    payload: dict[str, Any] = {"hyperparameters": hyperparameters}
    if options.instance_type is not None:
        payload["instance_type"] = options.instance_type
    if options.instance_count is not None:
        payload["instance_count"] = options.instance_count
    if options.run_id is not None:
        payload["run_id"] = options.run_id
    if options.force:
        payload["force"] = True
    gate = {
        name: value
        for name, value in (
            ("min_identification_accuracy", options.min_accuracy),
            ("max_fpir", options.max_fpir),
        )
        if value is not None
    }
    if gate:
        payload["quality_gate"] = gate
    return payload


def stack_parameters(options: RunOptions) -> dict[str, str]:
    """Seconds instead of minutes for the waits; everything else as deployed."""
    return {
        "TrainingImageUri": LOCAL_IMAGE_URI,
        "PollIntervalSeconds": str(options.poll_seconds),
        "MaxPollIntervalSeconds": str(max(options.poll_seconds, 2)),
        "UploadSettleSeconds": str(options.settle_seconds),
        "UploadBatchingWindowSeconds": "1",
    }
