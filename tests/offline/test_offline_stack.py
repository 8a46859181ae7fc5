"""facetrain_offline's in-process Lambdas and template deployment, without the training job (fast)."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from facetrain_offline.lambda_runtime import FunctionSpec, InProcessLambdas, LambdaContext
from facetrain_offline.local_aws import DEFAULT_TEMPLATE, local_aws
from facetrain_offline.moto_seams import substitute_definition
from facetrain_offline.sam import TemplateError
from facetrain_offline.stack import deploy

REGION = "eu-west-1"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/facetrain:test"
_bound_at_first_call: list[IO[str]] = []  # like a Powertools Logger, which binds sys.stdout at import


class QuotaExceeded(Exception):
    """An error class the state machine would match by name."""


def failing_handler(event: Any, context: Any) -> Any:
    raise QuotaExceeded(f"no room for {event['what']}")


def not_json_handler(event: Any, context: Any) -> Any:
    return {"when": object()}


def environment_handler(event: Any, context: Any) -> Any:
    return {"value": os.environ.get("OFFLINE_TEST_VARIABLE"), "arn": context.invoked_function_arn}


def printing_handler(event: Any, context: Any) -> Any:
    import sys

    if not _bound_at_first_call:
        _bound_at_first_call.append(sys.stdout)
    print(f"print {event['n']}")
    _bound_at_first_call[0].write(f"bound {event['n']}\n")
    return None


def _lambdas(handler: str, log: IO[str] | None = None, **environment: str) -> InProcessLambdas:
    lambdas = InProcessLambdas(log_stream=log)
    arn = f"arn:aws:lambda:{REGION}:123456789012:function:fn"
    lambdas.register(FunctionSpec("fn", arn, f"{__name__}.{handler}", dict(environment)))
    return lambdas


def test_a_raised_exception_is_an_unhandled_error_named_after_its_class() -> None:
    with local_aws(REGION):
        client = boto3.client("lambda", region_name=REGION)
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("x.py", "")
        client.create_function(
            FunctionName="fn",
            Runtime="python3.13",
            Role=role,
            Handler="x.y",
            Code={"ZipFile": package.getvalue()},
        )
        lambdas = _lambdas("failing_handler")
        with lambdas.installed():
            response = client.invoke(FunctionName="fn", Payload=json.dumps({"what": "photos"}))
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "QuotaExceeded" and error["errorMessage"] == "no room for photos"
    assert any("failing_handler" in frame for frame in error["stackTrace"])
    assert lambdas.invocations == [("fn", "QuotaExceeded")]


def test_a_result_that_is_not_json_is_a_marshal_error() -> None:
    payload, error_type = _lambdas("not_json_handler").call("fn", {})
    assert error_type == "Runtime.MarshalError"
    assert json.loads(payload)["errorMessage"].startswith("Unable to marshal response")


def test_the_function_environment_applies_during_the_call_only() -> None:
    payload, error_type = _lambdas("environment_handler", OFFLINE_TEST_VARIABLE="set").call("fn", {})
    assert error_type is None
    assert json.loads(payload) == {"value": "set", "arn": f"arn:aws:lambda:{REGION}:123456789012:function:fn"}
    assert "OFFLINE_TEST_VARIABLE" not in os.environ


def test_output_goes_to_the_current_registry_log_even_from_streams_bound_earlier() -> None:
    first, second = io.StringIO(), io.StringIO()
    _lambdas("printing_handler", first).call("fn", {"n": 1})
    _lambdas("printing_handler", second).call("fn", {"n": 2})  # a later run in the same process
    assert first.getvalue() == "print 1\nbound 1\n"
    assert second.getvalue() == "print 2\nbound 2\n"


def test_context_without_an_arn_gets_the_function_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    context = LambdaContext("validate")
    assert context.invoked_function_arn == "arn:aws:lambda:eu-central-1:123456789012:function:validate"


def test_a_substitution_the_template_does_not_define_is_an_error() -> None:
    assert substitute_definition('{"R": "${A}"}', {"A": "x"}) == '{"R": "x"}'
    with pytest.raises(TemplateError, match=r"\['B'\]"):
        substitute_definition('{"R": "${A}", "S": "${B}"}', {"A": "x"})


def test_deployed_functions_and_topic_deliveries(tmp_path: Path) -> None:
    with local_aws(REGION):
        stack = deploy(
            DEFAULT_TEMPLATE,
            {"TrainingImageUri": IMAGE},
            region=REGION,
            extra_environment={"AWS_MAX_ATTEMPTS": "1"},
        )
        environment = stack.function("ValidateFunction").environment
        topic = stack.physical(stack.only("AWS::SNS::Topic"))
        sns = boto3.client("sns", region_name=REGION)
        sns.publish(TopicArn=topic, Subject="one", Message="first")
        sns.publish(TopicArn=topic, Subject="two", Message="second")
        delivered = stack.notifications()
        again = stack.notifications()
    assert environment["AWS_REGION"] == environment["AWS_DEFAULT_REGION"] == REGION
    assert environment["AWS_MAX_ATTEMPTS"] == "1"  # extra_environment wins over the template's "5"
    assert delivered == [{"Subject": "one", "Message": "first"}, {"Subject": "two", "Message": "second"}]
    assert again == []


def test_environment_copies_are_never_torn_by_invocations_in_other_threads():
    """The training backend copies os.environ while in-process Lambdas set and restore their variables
    in other threads; each copy sees all of an invocation's variables or none of them."""
    import threading

    from facetrain_offline.lambda_runtime import environment, environment_snapshot

    variables = {f"FACETRAIN_TEST_VAR_{i}": str(i) for i in range(40)}
    stop = threading.Event()

    def invocations() -> None:
        while not stop.is_set():
            with environment(variables):
                pass

    worker = threading.Thread(target=invocations)
    worker.start()
    try:
        for _ in range(3000):
            present = {key for key in environment_snapshot() if key.startswith("FACETRAIN_TEST_VAR_")}
            assert present in (set(), set(variables)), sorted(present)
    finally:
        stop.set()
        worker.join()
    assert not any(key.startswith("FACETRAIN_TEST_VAR_") for key in environment_snapshot())


def test_concurrent_invocations_each_see_their_own_environment_and_others_the_process_one():
    """Invocations run concurrently (as Lambda runs them in separate environments): each thread sees its
    function's variables over the process environment; no other thread sees them, during or after."""
    import os
    import threading

    from facetrain_offline.lambda_runtime import environment_snapshot, invocation_environment

    barrier = threading.Barrier(3)
    seen: dict[str, list[str | None]] = {}

    def invocation(name: str) -> None:
        with invocation_environment({"FACETRAIN_TEST_FUNCTION": name, "AWS_MAX_ATTEMPTS": name}):
            barrier.wait()  # all three inside at once
            os.environ["FACETRAIN_TEST_WRITTEN"] = name  # the invocation's own, discarded at its end
            seen[name] = [os.environ.get("FACETRAIN_TEST_FUNCTION"), os.getenv("FACETRAIN_TEST_WRITTEN")]
            barrier.wait()

    threads = [threading.Thread(target=invocation, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    barrier.wait()
    outside = dict(environment_snapshot())
    barrier.wait()
    for thread in threads:
        thread.join()

    assert seen == {"one": ["one", "one"], "two": ["two", "two"]}
    assert "FACETRAIN_TEST_FUNCTION" not in outside and "FACETRAIN_TEST_WRITTEN" not in os.environ
    assert type(os.environ) is os._Environ  # the overlay is gone once no invocation runs


def test_a_second_run_on_the_same_state_folder_is_refused(tmp_path, capsys):
    """Two `facetrain run --state DIR` at once would each restore the bucket and save it at the end,
    the last save losing the other run's objects: the second is refused while the first holds DIR."""
    import fcntl

    from facetrain_offline.cli import main

    state, images = tmp_path / "state", tmp_path / "photos"
    (images / "ann").mkdir(parents=True)
    state.mkdir()
    with (state / ".lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242\n")
        held.flush()
        code = main(["run", str(images), "--out", str(tmp_path / "out"), "--state", str(state)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{state} is in use by another facetrain run (pid 4242)" in err and "another --state" in err
    assert not (state / "bucket").exists()
