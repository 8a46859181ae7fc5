"""template.yaml and the ASL: external linters, and the properties the issue asks for checked directly.

The external tools live in their own environments (see docs/workflow.md, "Checks"): a missing tool skips
its test with the reason locally and fails under CI (environment variable CI set).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import locks
import pytest
from facetrain_lambdas.run_request import StackDefaults
from facetrain_lambdas.training_job import JOB_NAME_PREFIX, TrainingSettings
from facetrain_offline.local_aws import DEFAULT_TEMPLATE as TEMPLATE
from facetrain_offline.local_aws import REPO_ROOT as REPO
from facetrain_offline.local_aws import local_aws
from facetrain_offline.sam import load_sam, package, translate, translated
from facetrain_offline.stack import deploy
from support.workflow import IMAGE

ASL = REPO / "state_machine" / "retraining.asl.json"
SAM = REPO / ".venv-sam" / "bin" / "sam"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
SAM_DATA = load_sam(TEMPLATE)  # the SAM template as written (intrinsics in long form)
TEMPLATE_DATA = translated(TEMPLATE).body  # what deploys: the SAM translator's CloudFormation
DEFINITION = json.loads(ASL.read_text())
# Actions without resource-level permissions: "*" is the narrowest resource they accept.
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
}


def _require(path: Path | str | None, what: str, install: str) -> str:
    if path and Path(path).exists():
        return str(path)
    message = f"{what} is not installed ({install})"
    if os.environ.get("CI"):
        pytest.fail(message + " - CI must install it")
    pytest.skip(message)


def _run(command: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0", **(extra_env or {})}
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env, check=False
    )


# ------------------------------------------------------------------------------------------ linters


def test_cfn_lint_reports_nothing() -> None:
    cfn_lint = _require(Path(sys.executable).with_name("cfn-lint"), "cfn-lint", "pip install -e '.[dev]'")
    result = _run([cfn_lint, str(TEMPLATE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint() -> None:
    sam = _require(
        SAM, "SAM CLI (.venv-sam)", "python3 -m venv .venv-sam && .venv-sam/bin/pip install aws-sam-cli"
    )
    result = _run([sam, "validate", "--lint", "--template-file", str(TEMPLATE)])
    assert result.returncode == 0 and "is a valid SAM Template" in result.stdout, (
        result.stdout + result.stderr
    )


def test_checkov_fails_nothing_and_every_skip_is_justified() -> None:
    checkov = _require(
        CHECKOV,
        "checkov (.venv-checkov)",
        "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov",
    )
    result = _run(
        [checkov, "--skip-download", "-f", str(TEMPLATE), "--framework", "cloudformation", "-o", "json"]
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and report["summary"]["failed"] == 0
    for name, resource in SAM_DATA["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "").split()) >= 8, (
                f"{name} skips {skip['id']} without a justification"
            )


def test_asl_validator() -> None:
    npx = _require(shutil.which("npx"), "npx (Node.js)", "apt-get install nodejs npm")
    result = _run([npx, "--yes", "asl-validator@4.0.0", "--json-path", str(ASL)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_build_makes_the_layer_for_python_3_13(tmp_path: Path) -> None:
    sam = _require(
        SAM, "SAM CLI (.venv-sam)", "python3 -m venv .venv-sam && .venv-sam/bin/pip install aws-sam-cli"
    )
    python = _require(shutil.which("python3.13"), "python3.13", "e.g. pyenv install 3.13")
    env = {}
    if _run([python, "--version"]).returncode != 0 and shutil.which("pyenv"):
        # A pyenv shim: select an installed 3.13 for sam build's runtime check and the layer's pip.
        versions = _run(["pyenv", "versions", "--bare"]).stdout.split()
        env["PYENV_VERSION"] = max((v for v in versions if v.startswith("3.13")), default="3.13")
    build = tmp_path / "build"
    result = _run([sam, "build", "--build-dir", str(build), "--template-file", str(TEMPLATE)], extra_env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    layer = build / "FacetrainLayer" / "python"
    # the contract package whole, and no other facetrain module
    contract = REPO / "container" / "facetrain" / "contract"
    assert {p.name for p in (layer / "facetrain").glob("*.py")} == {"__init__.py"}
    assert {p.name for p in (layer / "facetrain" / "contract").glob("*.py")} == {
        p.name for p in contract.glob("*.py")
    }
    assert {"__init__.py", "names.py", "hyperparameters.py", "rules_file.py", "enrollment_csv.py"} <= {
        p.name for p in contract.glob("*.py")
    }
    assert list(layer.glob("pydantic_core/_pydantic_core.cpython-313-x86_64-linux-gnu.so"))
    assert (layer / "yaml").is_dir() and (layer / "numpy").is_dir()
    code = build / "ValidateFunction"
    assert (code / "facetrain_lambdas" / "validate.py").is_file() and (
        code / "aws_lambda_powertools"
    ).is_dir()
    assert not list(code.glob("torch*")) and not list(layer.glob("torch*"))
    # exactly the locked versions (container/layer-requirements.txt, lambdas/requirements.txt)
    for built, lock in ((layer, "container/layer-requirements.txt"), (code, "lambdas/requirements.txt")):
        installed = dict(
            (locks.canonical(name), version)
            for name, _, version in (
                p.name.removesuffix(".dist-info").rpartition("-") for p in built.glob("*.dist-info")
            )
        )
        assert installed == locks.pins(TEMPLATE.parent / lock), lock


# ------------------------------------------------------------------------------------------ ASL


def _tasks() -> dict[str, dict]:
    return {name: state for name, state in DEFINITION["States"].items() if state["Type"] == "Task"}


RETRAIN_TASKS = ("Validate", "StartTrainingJob", "PollTrainingJob", "Publish")


def _after_failure_choice(after_failure: str | None) -> str:
    """Where AfterFailure sends a failure whose $.after_failure is this (None: absent), its rules read in
    order as Step Functions reads them."""
    choice = DEFINITION["States"]["AfterFailure"]
    for rule in choice["Choices"]:
        assert rule["Variable"] == "$.after_failure", rule
        if "IsPresent" in rule and rule["IsPresent"] == (after_failure is not None):
            return rule["Next"]
        if "StringEquals" in rule and rule["StringEquals"] == after_failure:
            return rule["Next"]
    return choice["Default"]


def _after_failure(catch: dict) -> str:
    """Where a caught failure goes on once ReadFailure has made its Cause plain: through ReadFailure,
    directly or after a Pass that names where it continues (in $.after_failure)."""
    assert catch["ResultPath"] == "$.failure", catch
    first = DEFINITION["States"][catch["Next"]]
    if first["Type"] == "Pass":
        assert first["ResultPath"] == "$.after_failure" and first["Next"] == "ReadFailure", catch
        return _after_failure_choice(first["Result"])
    assert catch["Next"] == "ReadFailure", catch
    return _after_failure_choice(None)


def test_a_failed_retrain_is_notified_unless_a_forget_must_purge_first() -> None:
    choice = DEFINITION["States"]["FailedWhileForgetting"]
    assert choice["Default"] == "NotifyFailure"
    [purge] = choice["Choices"]
    assert purge["Next"] == "PurgeForgotten"
    assert {"Variable": "$.forgotten", "IsPresent": False} in purge["And"]  # never a second purge
    assert _after_failure(DEFINITION["States"]["PurgeForgotten"]["Catch"][0]) == "NotifyFailure"
    assert DEFINITION["States"]["TrainingJobFailed"]["Next"] == "FailedWhileForgetting"


def test_every_task_retries_and_catches_into_the_failure_notification() -> None:
    for name, state in _tasks().items():
        assert state["Retry"], name
        for retrier in state["Retry"]:
            assert retrier["JitterStrategy"] == "FULL" and retrier["BackoffRate"] > 1, name
        catch_all = [c for c in state["Catch"] if c["ErrorEquals"] == ["States.ALL"]]
        # After the failure notification (and after the last upload-batch step) no second notification:
        # RunEnded routes to the Fail state; a failing FinishUploadBatch goes there directly (no loop).
        # The retrain's tasks fail through FailedWhileForgetting: a forget still purges, then notifies.
        # A failing forget notification ends the forget (ForgetEnded), never loops into RunEnded.
        expected = {
            "NotifyFailure": "RunEnded",
            "FinishUploadBatch": "Failed",
            "NotifyForgotten": "ForgetEnded",
            **dict.fromkeys(RETRAIN_TASKS, "FailedWhileForgetting"),
        }.get(name, "NotifyFailure")
        assert catch_all, name
        caught = catch_all[0]
        # Failures caught into $.failure pass ReadFailure (the Cause made plain), then go on to `expected`.
        goes_on = caught["Next"] if caught["ResultPath"] != "$.failure" else _after_failure(caught)
        assert goes_on == expected, name
        if state["Resource"] == "arn:aws:states:::lambda:invoke":
            errors = state["Retry"][0]["ErrorEquals"]
            assert {"TransientError", "Lambda.ServiceException", "Lambda.TooManyRequestsException"} <= set(
                errors
            )
            assert (
                "ResultSelector" in state
                and state["Parameters"]["Payload"]["execution.$"] == "$$.Execution.Name"
            )


def test_every_failure_reaches_the_notification_and_the_fail_state_as_plain_text() -> None:
    """A Lambda's error document (JSON with errorMessage, errorType and stackTrace) is cut to its message
    before anything reads $.failure: NotifyFailure, the Fail state, the forget's purge."""
    states = DEFINITION["States"]
    read = states["ReadFailure"]
    # a Cause that is absent or no string is left as it is (StringMatches on it would fail the execution)
    assert read["Choices"][:2] == [
        {"Variable": "$.failure.Cause", "IsPresent": False, "Next": "AfterFailure"},
        {"Variable": "$.failure.Cause", "IsString": False, "Next": "AfterFailure"},
    ]
    lambda_error = read["Choices"][2]
    # With or without a space after the colon: Lambda writes '{"errorMessage": ', json.dumps's default.
    # errorMessage anywhere in the document (not only first), parsed inside a Parallel whose Catch keeps a
    # cause that only looked like JSON as it was: the failure's reporting never fails the execution.
    assert (
        lambda_error["StringMatches"] == '{*"errorMessage"*}' and lambda_error["Next"] == "PlainLambdaError"
    )
    assert read["Default"] == "AfterFailure"
    guard = states["PlainLambdaError"]
    assert guard["Type"] == "Parallel" and guard["Next"] == "AfterFailure"
    assert guard["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure_unparsed", "Next": "AfterFailure"}
    ]
    assert guard["ResultPath"] == "$.failure"
    assert guard["ResultSelector"] == {"Error.$": "$[0].failure.Error", "Cause.$": "$[0].failure.Cause"}
    [branch] = guard["Branches"]
    parse = branch["States"]["ParseLambdaError"]
    assert branch["StartAt"] == "ParseLambdaError"
    assert parse["Parameters"]["document.$"] == "States.StringToJson($.failure.Cause)"
    assert parse["ResultPath"] == "$.failure" and parse["Next"] == "FailureFromLambda"
    plain = branch["States"]["FailureFromLambda"]
    assert plain["Parameters"] == {"Error.$": "$.failure.Error", "Cause.$": "$.failure.document.errorMessage"}
    assert plain["ResultPath"] == "$.failure" and plain["End"] is True
    # every catch into $.failure passes ReadFailure; nothing else leads to the states that read $.failure
    catches = [c for s in states.values() for c in s.get("Catch", []) if c["ResultPath"] == "$.failure"]
    assert len(catches) == len(_tasks()) - 2  # all but the two notifications' own catches
    for catch in catches:
        _after_failure(catch)
    routes = {after: _after_failure_choice(after) for after in (None, "NotifyFailure", "Failed")}
    assert routes == {None: "FailedWhileForgetting", "NotifyFailure": "NotifyFailure", "Failed": "Failed"}
    assert states["Failed"]["CausePath"] == "$.failure.Cause"
    message = states["NotifyFailure"]["Parameters"]["Message.$"]
    assert message == (
        "States.Format('facetrain execution {} failed ({}): {}', $$.Execution.Name, $.failure.Error, "
        "$.failure.Cause)"
    )


def test_no_sync_integrations_and_a_standard_timeout() -> None:
    assert not any(".sync" in state.get("Resource", "") for state in DEFINITION["States"].values())
    parameters = TEMPLATE_DATA["Parameters"]
    longest_job = (
        2 * parameters["MaxRuntimeSeconds"]["MaxValue"] + parameters["MaxPollIntervalSeconds"]["MaxValue"]
    )
    assert DEFINITION["TimeoutSeconds"] > longest_job
    assert (
        TEMPLATE_DATA["Resources"]["RetrainingStateMachine"]["Properties"]["StateMachineType"] == "STANDARD"
    )


def test_poll_loop_shape() -> None:
    states = DEFINITION["States"]
    assert states["WaitForTrainingJob"]["SecondsPath"] == "$.job.wait_seconds"
    choice = states["TrainingJobDone"]
    assert choice["Default"] == "WaitForTrainingJob"
    assert states["Failed"] == {
        "Type": "Fail",
        "ErrorPath": "$.failure.Error",
        "CausePath": "$.failure.Cause",
    }


def test_substitutions_are_exactly_those_the_definition_uses() -> None:
    import re

    used = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    given = set(TEMPLATE_DATA["Resources"]["RetrainingStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert used == given


# ------------------------------------------------------------------------------------------ template


def _statements(resource: dict) -> list[dict]:
    properties = resource.get("Properties", {})
    documents = [p["PolicyDocument"] for p in properties.get("Policies", []) if "PolicyDocument" in p]
    documents += [p for p in properties.get("Policies", []) if isinstance(p, dict) and "Statement" in p]
    return [statement for document in documents for statement in document["Statement"]]


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_iam_is_least_privilege() -> None:
    pass_role = []
    for name, resource in TEMPLATE_DATA["Resources"].items():
        for statement in _statements(resource):
            actions = _as_list(statement["Action"])
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), name
            if "*" in _as_list(statement.get("Resource")):
                assert set(actions) <= STAR_RESOURCE_ACTIONS, (name, actions)
            if "iam:PassRole" in actions:
                pass_role.append((name, statement))
    ((owner, statement),) = pass_role
    assert owner == "StartFunctionRole"
    assert statement["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_sagemaker_job_names_match_the_policies() -> None:
    for name in ("StartFunctionRole", "PollFunctionRole"):
        for statement in _statements(TEMPLATE_DATA["Resources"][name]):
            if any(a.startswith("sagemaker:") for a in _as_list(statement["Action"])):
                assert statement["Resource"]["Fn::Sub"].endswith(f":training-job/{JOB_NAME_PREFIX}*")


def test_data_bucket_is_private_encrypted_versioned_tls_only_with_eventbridge() -> None:
    resources = TEMPLATE_DATA["Resources"]
    bucket = resources["DataBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert (
        all(bucket["PublicAccessBlockConfiguration"].values())
        and len(bucket["PublicAccessBlockConfiguration"]) == 4
    )
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    (deny,) = resources["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert resources["NotificationTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    machine = resources["RetrainingStateMachine"]["Properties"]
    assert (
        machine["TracingConfiguration"] == {"Enabled": True}
        and machine["LoggingConfiguration"]["Level"] == "ALL"
    )


def test_functions_get_every_variable_their_handlers_read() -> None:
    with local_aws():
        stack = deploy(TEMPLATE, {"TrainingImageUri": IMAGE})
    specs = {name: stack.function(name) for name in stack.template.of_type("AWS::Lambda::Function")}
    validate_env, start_env = specs["ValidateFunction"].environment, specs["StartFunction"].environment
    assert set(StackDefaults.variables().values()) <= set(validate_env)
    assert set(TrainingSettings.variables().values()) <= set(start_env)
    read = {}
    for name, spec in specs.items():
        module = importlib.import_module(spec.handler.rpartition(".")[0])
        for settings in getattr(module, "SETTINGS", ()):
            required = {
                str(field.validation_alias) for field in settings.model_fields.values() if field.is_required()
            }
            assert required <= set(spec.environment), (
                name,
                settings.__name__,
                required - set(spec.environment),
            )
            settings.from_env(spec.environment)  # every value the template sets fits the model
            read[name] = [*read.get(name, []), settings.__name__]
    assert read == {
        "ValidateFunction": ["StackDefaults"],
        "StartFunction": ["TrainingSettings"],
        "TriggerFunction": ["TriggerSettings"],
        "UploadBatchFunction": ["UploadBatchSettings"],
        "StopFunction": ["StackDefaults", "NotificationSettings"],
        "RetentionSweepFunction": ["RetentionSettings"],
        "ForgetFunction": ["ForgetSettings"],
        "PublishFunction": ["PublishSettings"],
    }
    assert (
        StackDefaults.from_env(validate_env).images_prefix
        == TEMPLATE_DATA["Parameters"]["ImagesPrefix"]["Default"]
    )
    assert TrainingSettings.from_env(start_env).max_runtime_seconds == 21600
    for spec in specs.values():
        module, _, attribute = spec.handler.rpartition(".")
        assert callable(getattr(__import__(module, fromlist=[attribute]), attribute))
        assert spec.environment["POWERTOOLS_METRICS_NAMESPACE"] == "facetrain"


def test_sam_rules_apply_a_function_with_its_own_layers_keeps_the_globals_layer() -> None:
    # SAM concatenates lists such as Layers with the Globals' (a plain override would drop the shared
    # layer): the offline stack gets this from AWS's translator, not from a merge of its own.
    sam = load_sam(TEMPLATE)
    sam["Resources"]["ExtraLayer"] = {
        "Type": "AWS::Serverless::LayerVersion",
        "Properties": {"ContentUri": "container/", "CompatibleRuntimes": ["python3.13"]},
    }
    sam["Resources"]["ValidateFunction"]["Properties"]["Layers"] = [{"Ref": "ExtraLayer"}]
    resources = translate(package(sam, TEMPLATE.parent), {"TrainingImageUri": IMAGE}, "eu-west-1").resources
    layers = {logical for logical, r in resources.items() if r["Type"] == "AWS::Lambda::LayerVersion"}
    shared = next(name for name in layers if name.startswith("FacetrainLayer"))
    extra = next(name for name in layers if name.startswith("ExtraLayer"))
    assert resources["ValidateFunction"]["Properties"]["Layers"] == [{"Ref": shared}, {"Ref": extra}]
    assert resources["StartFunction"]["Properties"]["Layers"] == [{"Ref": shared}]
    # The environment maps merge the same way: the function's variables beside the Globals'.
    variables = resources["ValidateFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == "facetrain" and variables["IMAGES_PREFIX"] == {
        "Ref": "ImagesPrefix"
    }


def test_only_the_stop_function_may_stop_training_jobs_and_only_for_this_state_machines_ended_runs() -> None:
    resources = TEMPLATE_DATA["Resources"]
    stoppers = [
        name
        for name, resource in resources.items()
        for statement in _statements(resource)
        if "sagemaker:StopTrainingJob" in _as_list(statement["Action"])
    ]
    assert stoppers == ["StopFunctionRole"]
    for statement in _statements(resources["StopFunctionRole"]):
        if "sagemaker:StopTrainingJob" in _as_list(statement["Action"]):
            assert statement["Resource"]["Fn::Sub"].endswith(f":training-job/{JOB_NAME_PREFIX}*")
    (rule,) = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule"
        and r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["StopFunction", "Arn"]}
    ]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"] == {
        "status": ["ABORTED", "TIMED_OUT", "FAILED"],
        "stateMachineArn": [{"Ref": "RetrainingStateMachine"}],
    }
    function = resources["StopFunction"]["Properties"]
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["StopEventsDeadLetterQueue", "Arn"]}}


# ------------------------------------------------------------------------------------------ retention

# CloudWatch Logs' retention values (CloudWatch Logs API Reference, PutRetentionPolicy, retentionInDays).
CLOUDWATCH_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192]
CLOUDWATCH_RETENTION_DAYS += [2557, 2922, 3288, 3653]


def test_every_log_group_keeps_its_events_for_log_retention_days() -> None:
    parameter = TEMPLATE_DATA["Parameters"]["LogRetentionDays"]
    assert parameter["AllowedValues"] == CLOUDWATCH_RETENTION_DAYS
    assert parameter["Default"] in CLOUDWATCH_RETENTION_DAYS
    groups = {n: r for n, r in TEMPLATE_DATA["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert len(groups) >= 10  # the Lambdas' and the state machine's
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    # every function logs to a group of the stack (none to a group Lambda would create, kept for ever)
    for name, resource in TEMPLATE_DATA["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            (group,) = resource["Properties"]["LoggingConfig"]["LogGroup"].values()
            assert group in groups, name


def test_the_lifecycle_rules_apply_the_retention_parameters() -> None:
    rules = {
        rule["Id"]: rule
        for rule in TEMPLATE_DATA["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert set(rules) == {"expire-old-versions", "expire-erasure-records"}
    versions = rules["expire-old-versions"]
    assert "Prefix" not in versions and "Filter" not in versions  # the whole bucket
    assert versions["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "NoncurrentVersionDays"}}
    assert versions["ExpiredObjectDeleteMarker"] is True
    receipts = rules["expire-erasure-records"]
    assert receipts["Prefix"] == {"Ref": "ErasureRecordsPrefix"}
    assert receipts["ExpirationInDays"] == {"Ref": "ErasureRecordDays"}
    assert receipts["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    parameters = TEMPLATE_DATA["Parameters"]
    prefixes = [name for name in parameters if name.endswith("Prefix")]
    assert "ErasureRecordsPrefix" in prefixes
    assert {parameters[name]["AllowedPattern"] for name in prefixes} == {
        parameters["ResultsPrefix"]["AllowedPattern"]
    }
    assert parameters["ErasureRecordDays"]["Default"] == 3 * 365  # BIPA's 3 years


def test_the_retention_sweep_runs_daily_keeps_running_executions_runs_and_deletes_only_runs() -> None:
    from facetrain_lambdas.retention_sweep import MIN_RUN_HISTORY_DAYS

    resources = TEMPLATE_DATA["Resources"]
    parameter = TEMPLATE_DATA["Parameters"]["RunHistoryDays"]
    assert parameter["MinValue"] == MIN_RUN_HISTORY_DAYS
    assert DEFINITION["TimeoutSeconds"] < MIN_RUN_HISTORY_DAYS * 86400  # no run of a running execution
    function = resources["RetentionSweepFunction"]["Properties"]
    assert function["Environment"]["Variables"]["RUN_HISTORY_DAYS"] == {"Ref": "RunHistoryDays"}
    (schedule,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Scheduler::Schedule"
        and r["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": ["RetentionSweepFunction", "Arn"]}
    ]
    assert schedule["ScheduleExpression"] == "rate(1 day)" and "Name" not in schedule
    statements = _statements(resources["RetentionSweepFunctionRole"])
    (delete,) = [s for s in statements if any("Delete" in a for a in _as_list(s["Action"]))]
    assert delete["Action"] == "s3:DeleteObjectVersion"  # by version id only: never a delete marker added
    assert delete["Resource"] == {"Fn::Sub": "${DataBucket.Arn}/${ResultsPrefix}runs/*"}
    actions = {a for s in statements for a in _as_list(s["Action"])}
    assert actions == {"s3:ListBucketVersions", "s3:ListBucket", "s3:GetObject", "s3:DeleteObjectVersion"}
