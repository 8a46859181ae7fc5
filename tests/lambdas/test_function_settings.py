"""The functions' environment: one settings model per function, read only through FunctionSettings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from facetrain_lambdas.function_settings import StackConfigurationError
from facetrain_lambdas.training_job import TrainingSettings
from facetrain_lambdas.trigger import TriggerSettings

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas" / "facetrain_lambdas"


def test_variables_name_the_templates_variables_and_empty_ones_take_the_default() -> None:
    assert TriggerSettings.variables() == {
        "table": "UPLOAD_STATE_TABLE",
        "state_machine_arn": "STATE_MACHINE_ARN",
        "bucket": "DATA_BUCKET",
    }
    settings = TrainingSettings.from_env(
        {"TRAINING_IMAGE_URI": "img", "SAGEMAKER_ROLE_ARN": "role", "MAX_RUNTIME_SECONDS": ""}
    )
    assert (settings.training_image, settings.max_runtime_seconds) == ("img", 21600)
    assert TrainingSettings(training_image="img", role_arn="role") == settings  # fields by name too


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UPLOAD_STATE_TABLE": "t", "DATA_BUCKET": "b"}, r"STATE_MACHINE_ARN: Field required"),
    ],
)
def test_a_missing_variable_is_named_with_what_to_do(env, message) -> None:
    with pytest.raises(StackConfigurationError, match=message) as caught:
        TriggerSettings.from_env(env)
    assert "TriggerSettings" in str(caught.value) and "deploy the stack again" in str(caught.value)


def test_a_malformed_variable_is_named() -> None:
    env = {"TRAINING_IMAGE_URI": "img", "SAGEMAKER_ROLE_ARN": "role", "TRAINING_VOLUME_SIZE_GB": "lots"}
    with pytest.raises(
        StackConfigurationError, match=r"TRAINING_VOLUME_SIZE_GB: Input should be a valid integer"
    ):
        TrainingSettings.from_env(env)


def test_no_handler_reads_the_environment_past_its_settings_model() -> None:
    readers = [
        path.name
        for path in sorted(LAMBDAS.glob("*.py"))
        if path.name != "function_settings.py" and re.search(r"os\.environ|getenv\(", path.read_text())
    ]
    assert readers == []
