"""run.json (RunRecord version 3): one model for validate, which writes it, and start, publish and stop,
which read it; a record of another version is refused by every reader, naming the object."""

from __future__ import annotations

from typing import Any

import pytest
from facetrain.contract.documents import DocumentError
from facetrain_lambdas.errors import InvalidInput
from facetrain_lambdas.run_record import (
    RunPointer,
    load_run_record,
    parse_run_record,
    read_run_record_if_present,
)
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.s3_json import write_json
from facetrain_lambdas.stop import ExecutionEnded, stop_job_of
from facetrain_lambdas.validate import validate_run
from handler_fixtures import BUCKET, run_record
from support.testkit import upload_photos

KEY = "results/runs/r1/run.json"
WHERE = f"s3://{BUCKET}/{KEY}"


def _version_1(record: dict[str, Any]) -> dict[str, Any]:
    """The shape an older facetrain wrote: the request's fields at the top, hyperparameters as strings."""
    request = record.pop("request")
    return {**record, **request, "version": 1, "hyperparameters": {"batch_size": "8"}}


def _pointer() -> RunPointer:
    return RunPointer(
        run_id="r1",
        bucket=BUCKET,
        run_record_key=KEY,
        manifest_key="results/runs/r1/manifest.json",
        run_fingerprint="f",
        identities=1,
        images=1,
    )


def test_a_record_reads_back_as_written() -> None:
    record = run_record(instance_count=2, warnings=["stray file"])
    again = parse_run_record(record.model_dump(mode="json"), WHERE)
    assert again == record
    assert again.request.instance_count == 2 and again.settings.batch_size == 8
    assert again.sagemaker_hyperparameters() == {"batch_size": "8"}
    assert again.layout.run_record_key == KEY


def test_a_version_1_record_is_refused_naming_the_object_and_the_fix() -> None:
    old = _version_1(run_record().model_dump(mode="json"))
    with pytest.raises(DocumentError) as raised:
        parse_run_record(old, WHERE)
    message = str(raised.value)
    assert WHERE in message and "version 1" in message and "facetrain.run version 3" in message
    assert "start a new execution" in message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d["request"].update(instance_count="many"), "request.instance_count"),
        (lambda d: d["settings"].update(batch_size=-3), "settings.batch_size"),
        (lambda d: d.pop("dataset"), "dataset"),
    ],
)
def test_a_record_that_does_not_fit_names_the_field(change, field: str) -> None:
    data = run_record().model_dump(mode="json")
    change(data)
    with pytest.raises(DocumentError, match=field.replace(".", r"\.")):
        parse_run_record(data, WHERE)


def test_start_and_publish_refuse_an_unreadable_record_as_invalid_input(s3) -> None:
    write_json(s3, BUCKET, KEY, _version_1(run_record().model_dump(mode="json")))
    with pytest.raises(InvalidInput, match="version 1"):
        load_run_record(s3, _pointer())
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"{not json")
    with pytest.raises(InvalidInput, match=f"{WHERE} is not JSON"):
        load_run_record(s3, _pointer())


def test_a_missing_record_is_none_and_a_broken_one_an_error(s3) -> None:
    layout = run_record().layout
    assert read_run_record_if_present(s3, layout) is None
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"\xff")
    with pytest.raises(DocumentError, match="is not JSON"):
        read_run_record_if_present(s3, layout)


def test_validate_does_not_reuse_a_run_id_whose_record_it_cannot_read(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2, "bob": 2})
    write_json(s3, BUCKET, KEY, _version_1(run_record().model_dump(mode="json")))
    request = resolve_request({"run_id": "r1"}, "exec-2", StackDefaults.from_env())
    with pytest.raises(InvalidInput) as raised:
        validate_run(s3, request, 10**6)
    assert "run_id 'r1' is taken" in str(raised.value) and "version 1" in str(raised.value)


def test_stop_leaves_the_job_of_an_unreadable_record_alone(s3) -> None:
    write_json(s3, BUCKET, KEY, _version_1(run_record().model_dump(mode="json")))

    class NoCalls:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"SageMaker was called ({name}) for a record stop cannot read")

    ended = ExecutionEnded.model_validate(
        {
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:facetrain-retraining:r1",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:facetrain-retraining",
            "name": "r1",
            "status": "ABORTED",
            "input": "{}",
        }
    )
    outcome = stop_job_of(s3, NoCalls(), ended, StackDefaults(bucket=BUCKET))
    assert not outcome.stopped and outcome.run_id == "r1"
    assert "version 1" in outcome.reason and "left alone" in outcome.reason
