"""IAM enforced offline: moto's own access control, with named seams where it is weaker than AWS.

`iam_enforced` turns on moto's IAM enforcement (`enable_iam_authentication`: every request is checked
against the policies of the identity that signed it; identities.py says who signs what) and, for the
block's duration, closes these gaps of moto's (each a seam, each below):

- **Resources.** moto checks only S3, SQS, IAM and STS requests against the resource they name; every
  other service is checked against `*`, which no resource-scoped statement matches. `RESOURCES` gives
  each service this stack calls the ARN (and, where the IAM action differs from the API operation, the
  action) that AWS authorizes, from the Service Authorization Reference: Lambda's Invoke is
  `lambda:InvokeFunction` on the function; a DynamoDB transaction is authorized as each of its items'
  actions (PutItem, UpdateItem, ConditionCheckItem, DeleteItem) on the table; Logs' log-group actions on
  `log-group:NAME:*`, stream writes on `log-group:NAME:log-stream:STREAM`; SageMaker's training jobs by
  their lower-cased ARN. moto's CloudFormation stores a role's inline policies as dicts, which its
  own evaluation cannot read: they are read as the JSON documents they are.
- **iam:PassRole.** CreateTrainingJob also needs `iam:PassRole` on its RoleArn, with
  `iam:PassedToService` = sagemaker.amazonaws.com; moto does not check it.
- **Conditions.** moto evaluates no `Condition` of an identity policy (it has no request context for
  them). The keys this template's identity policies use are given where the request makes them:
  `iam:PassedToService` (StringEquals) and `sagemaker:NetworkIsolation` (Bool, which moto's condition
  table lacks and gets here). A statement whose condition fails counts as a deny, as moto evaluates it.
  A condition on a key the request does not supply counts as met (moto's rule). Not evaluated offline:
  resource policies (the bucket's `aws:SecureTransport`, the queue's `aws:SourceArn`), trust policies
  (`aws:SourceAccount`), `s3:prefix` (the SageMaker role's checkpoint listing: an Allow offline) and
  `cloudwatch:namespace` (nothing offline calls PutMetricData).
- **Missing keys.** S3 answers a GetObject or HeadObject of a key that does not exist with 403
  AccessDenied, not 404, when the caller may not `s3:ListBucket` the bucket (S3 API reference,
  GetObject, "Permissions"); moto answers NoSuchKey.
- **DeleteObjects.** AWS authorizes each key of a batch delete as `s3:DeleteObject` (or
  `s3:DeleteObjectVersion` with a version id) on that key; moto first checks `s3:DeleteObject` on the
  bucket ARN, which a key-scoped statement never matches, and then refuses every key.
- **Messages.** AccessDenied names the principal, the action and the resource, as AWS's messages do
  ("User: … is not authorized to perform: … on resource: …"); moto's S3 says only "Access Denied", and
  services with a JSON protocol get AWS's AccessDeniedException document, not moto's XML.
- **Signatures.** moto recomputes each request's SigV4 signature from the request as it parsed it, which
  differs from what botocore signed for REST-JSON requests (every Lambda API call is refused with
  SignatureDoesNotMatch); the check is skipped. The identity still comes from the access key id and,
  for a role, its session token, both checked; signing is botocore's, not ours to prove.
- **The state machine's role.** moto's Step Functions interpreter calls Lambda and SNS with fixed
  credentials; here it signs with its state machine's role (`RoleSessions`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import boto3
import moto.iam.policy_conditions
import xmltodict
from botocore.config import Config
from moto import settings
from moto.awslambda.responses import LambdaResponse
from moto.core.authorization import ActionAuthenticatorMixin, enable_iam_authentication
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.models import botocore_stubber
from moto.core.responses import ActionResult, BaseResponse
from moto.dynamodb.responses import DynamoHandler
from moto.iam.access_control import (
    REQUIRE_RESOURCE_ACCESS_POLICIES_CHECK,
    IAMPolicy,
    IAMRequest,
    IAMRequestBase,
    PermissionResult,
    S3IAMRequest,
)
from moto.logs.responses import LogsResponse
from moto.s3.exceptions import (
    BucketAccessDeniedError,
    HeadOnDeleteMarker,
    MalformedXML,
    MissingBucket,
    MissingKey,
    S3AccessDeniedError,
)
from moto.s3.responses import S3Response
from moto.sagemaker.responses import SageMakerResponse
from moto.sns.responses import SNSResponse
from moto.stepfunctions.responses import StepFunctionResponse

from .identities import Denial, RoleSessions

# (IAM action, resource ARN, condition keys and values of the request)
Authorization = tuple[str, str, dict[str, str]]
Resolver = Callable[[Any], list[Authorization]]


def _arn(response: Any, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{response.region}:{response.current_account}:{resource}"


def _lambda(response: Any) -> list[Authorization]:
    operation = response._get_action()
    action = {"Invoke": "InvokeFunction"}.get(operation, operation)
    match = re.search(r"/functions/([^/]+)", response.path)
    if not match:
        return [(f"lambda:{action}", "*", {})]
    name = unquote(match.group(1))
    if not name.startswith("arn:"):
        name = _arn(response, "lambda", f"function:{name}")
    return [(f"lambda:{action}", name, {})]


def _training_job_arn(response: Any, name: str) -> str:
    return _arn(response, "sagemaker", f"training-job/{name.lower()}")


def _sagemaker(response: Any) -> list[Authorization]:
    operation = response._get_action()
    name = response._get_param("TrainingJobName")
    resource = _training_job_arn(response, name) if name else response._get_param("ResourceArn") or "*"
    if operation != "CreateTrainingJob":
        return [(f"sagemaker:{operation}", resource, {})]
    isolation = str(bool(response._get_param("EnableNetworkIsolation"))).lower()
    return [
        ("sagemaker:CreateTrainingJob", resource, {"sagemaker:NetworkIsolation": isolation}),
        ("iam:PassRole", response._get_param("RoleArn"), {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ]


def _stepfunctions(response: Any) -> list[Authorization]:
    resource = response._get_param("executionArn") or response._get_param("stateMachineArn") or "*"
    return [(f"states:{response._get_action()}", resource, {})]


def _sns(response: Any) -> list[Authorization]:
    resource = response._get_param("TopicArn") or response._get_param("TargetArn") or "*"
    return [(f"sns:{response._get_action()}", resource, {})]


_TRANSACTION_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb(response: Any) -> list[Authorization]:
    operation = response._get_action()

    def table(name: str) -> str:
        return _arn(response, "dynamodb", f"table/{name}")

    if operation in ("TransactWriteItems", "TransactGetItems"):
        authorizations = []
        for item in response._get_param("TransactItems") or []:
            for kind, request in item.items():
                action = f"dynamodb:{_TRANSACTION_ITEM_ACTIONS[kind]}"
                authorizations.append((action, table(request["TableName"]), {}))
        return authorizations
    if operation in ("BatchWriteItem", "BatchGetItem"):
        tables = response._get_param("RequestItems") or {}
        return [(f"dynamodb:{operation}", table(name), {}) for name in tables]
    name = response._get_param("TableName")
    return [(f"dynamodb:{operation}", table(name) if name else "*", {})]


_LOG_STREAM_ACTIONS = ("PutLogEvents", "GetLogEvents")


def _logs(response: Any) -> list[Authorization]:
    operation = response._get_action()
    group, stream = response._get_param("logGroupName"), response._get_param("logStreamName")
    if not group:
        return [(f"logs:{operation}", "*", {})]
    if operation in _LOG_STREAM_ACTIONS and stream:
        return [(f"logs:{operation}", _arn(response, "logs", f"log-group:{group}:log-stream:{stream}"), {})]
    return [(f"logs:{operation}", _arn(response, "logs", f"log-group:{group}:*"), {})]


# Response class -> what AWS authorizes for its requests (moto's own: S3, SQS, IAM, STS).
RESOURCES: dict[type[BaseResponse], Resolver] = {
    LambdaResponse: _lambda,
    SageMakerResponse: _sagemaker,
    StepFunctionResponse: _stepfunctions,
    SNSResponse: _sns,
    DynamoHandler: _dynamodb,
    LogsResponse: _logs,
}


def _bool_equals(expected: list[str] | str, actual: str) -> bool:
    values = [expected] if isinstance(expected, str) else expected
    return actual.lower() in [str(value).lower() for value in values]


def _authorized(authorization: Authorization, base: type[IAMRequestBase]) -> type[IAMRequestBase]:
    """An IAM request class of moto's that checks this action and these condition values."""
    action, _, conditions = authorization
    return type("Authorization", (base,), {"_fixed_action": action, "_conditions": conditions})


def _check_action_permitted(request: IAMRequestBase, resource: str) -> None:
    """moto's IAMRequestBase.check_action_permitted, with the request's condition values and the resource
    kept for the message (and the fixed action of an `_authorized` class)."""
    request._action = getattr(request, "_fixed_action", request._action)
    request._resource = resource  # type: ignore[attr-defined]
    if request._action == "sts:GetCallerIdentity":
        return
    conditions = getattr(request, "_conditions", None) or None
    permitted = False
    for policy in request._access_key.collect_policies():
        if isinstance(policy, dict) and "policy_document" not in policy:
            policy = json.dumps(policy)  # a role's inline policy as moto's CloudFormation stores it
        result = IAMPolicy(policy).is_action_permitted(request._action, resource, None, conditions)
        if result == PermissionResult.DENIED:
            request._raise_access_denied()
        permitted = permitted or result == PermissionResult.PERMITTED
    if request._action in REQUIRE_RESOURCE_ACCESS_POLICIES_CHECK and request._is_assuming_role_operation(
        resource
    ):
        permitted = permitted and request._check_role_trust_relationship(resource)
    if not permitted:
        request._raise_access_denied()


def _denied_reason(request: IAMRequestBase) -> str:
    """What follows "is not authorized to perform: " in AWS's AccessDenied message."""
    action, resource = request._action, getattr(request, "_resource", "*")
    return f"{action} on resource: {resource} because no identity-based policy allows the {action} action"


# Services (by signing name) whose protocol is JSON: AWS refuses with an AccessDeniedException document,
# which botocore reads as the error code; moto's XML AccessDenied would reach the caller as "403".
_JSON_PROTOCOL_SERVICES = frozenset({"dynamodb", "events", "lambda", "logs", "sagemaker", "sqs", "states"})


def _denier(
    denials: list[Denial],
) -> tuple[Callable[[IAMRequestBase], None], Callable[[IAMRequestBase], None]]:
    """moto's AccessDenied errors (its IAM one, and its two S3 ones: DeleteObjects tells them apart),
    with AWS's message; each denial is recorded."""

    def record(request: IAMRequestBase) -> str:
        principal = request._access_key.arn
        denials.append(Denial(principal, request._action, getattr(request, "_resource", "*")))
        return principal

    def raise_iam_denied(request: IAMRequestBase) -> None:
        principal = record(request)
        if request._service in _JSON_PROTOCOL_SERVICES:
            message = f"User: {principal} is not authorized to perform: {_denied_reason(request)}"
            error = JsonRESTError("AccessDeniedException", message)
            error.code = 403 if request._service == "lambda" else 400
            raise error
        raise AccessDeniedError(user_arn=principal, action=_denied_reason(request))

    def raise_s3_denied(request: IAMRequestBase) -> None:
        principal = record(request)
        bucket = request._data.get("BucketName")
        error = BucketAccessDeniedError(bucket) if bucket else S3AccessDeniedError()
        error.message = f"User: {principal} is not authorized to perform: {_denied_reason(request)}"
        raise error

    return raise_iam_denied, raise_s3_denied


def _enforcing() -> bool:
    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def _authorize_with_resources(resolver: Resolver) -> Callable[[Any, str], None]:
    def authorize(response: Any, resource: str = "*") -> None:
        for authorization in resolver(response):
            response._authenticate_and_authorize_action(
                _authorized(authorization, IAMRequest), authorization[1]
            )

    return authorize


def _missing_key_needs_list_bucket(
    response: S3Response, bucket: str, key: str, query: dict[str, Any]
) -> None:
    """S3's answer to a caller without s3:ListBucket asking for a key that does not exist: 403."""
    if not _enforcing() or query.get("versionId"):
        return
    try:
        found = response.backend.head_object(bucket, key)
    except (HeadOnDeleteMarker, MissingBucket, MissingKey):
        found = None
    if found is None:
        get_object = ("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", {})
        list_bucket = ("s3:ListBucket", f"arn:aws:s3:::{bucket}", {})
        for authorization in (get_object, list_bucket):
            response._authenticate_and_authorize_action(
                _authorized(authorization, S3IAMRequest), authorization[1]
            )


def _delete_objects(response: S3Response, bucket_name: str, authenticated: bool = True) -> Any:
    """DeleteObjects as AWS authorizes it: each key (and version) on its own; moto deletes the allowed."""
    objects = xmltodict.parse(response.body, strip_whitespace=False)["Delete"].get("Object", [])
    objects = objects if isinstance(objects, list) else [objects]
    if not objects:
        raise MalformedXML()
    allowed, errors = [], []
    for obj in objects:
        action = "s3:DeleteObjectVersion" if obj.get("VersionId") else "s3:DeleteObject"
        arn = f"arn:aws:s3:::{bucket_name}/{obj['Key']}"
        try:
            response._authenticate_and_authorize_action(_authorized((action, arn, {}), S3IAMRequest), arn)
        except S3AccessDeniedError as denied:
            errors.append({"Key": obj["Key"], "Code": "AccessDenied", "Message": denied.message})
        else:
            allowed.append(obj)
    bypass = response.headers.get("x-amz-bypass-governance-retention", "").lower() == "true"
    deleted, locked = response.backend.delete_objects(bucket_name, allowed, bypass) if allowed else ([], [])
    errors += [
        {"Key": key, "Code": "AccessDenied", "Message": "object protected by object lock"} for key in locked
    ]
    result = [
        {
            "Key": k,
            "VersionId": v or None,
            "DeleteMarkerVersionId": dv or None,
            "DeleteMarker": True if dv else None,
        }
        for k, v, dv in deleted
    ]
    response.data["Action"] = "DeleteObjects"
    return response.serialized(ActionResult({"Deleted": result, "Errors": errors}))


def _authorized_bucket_delete(
    response: S3Response, bucket_name: str | None = None, key_name: str | None = None
) -> None:
    """moto's S3 check, except DeleteObjects' bucket-level one: AWS checks each key (_delete_objects)."""
    if response.data.get("Action") == "DeleteObject" and key_name is None and response.is_delete_keys():
        return
    _ORIGINAL_S3_AUTHORIZE(response, bucket_name, key_name)


_ORIGINAL_S3_AUTHORIZE = S3Response._authenticate_and_authorize_s3_action


def _state_machine_client(roles: RoleSessions) -> Callable[..., Any]:
    """moto's Step Functions `boto_client_for`, signing with the execution's role."""

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        credentials = roles.credentials(state_credentials.role_arn, "states")
        kwargs = (
            {}
            if botocore_stubber.enabled
            else {"endpoint_url": f"http://localhost:{settings.moto_server_port()}"}
        )
        return boto3.client(
            service_name=service,
            region_name=region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=Config(parameter_validation=False, retries={"max_attempts": 0, "total_max_attempts": 1}),
            **kwargs,
        )

    return boto_client_for


_STATE_MACHINE_CLIENT_USERS = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sns",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported",
)


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    missing = object()
    original = target.__dict__.get(name, missing) if isinstance(target, type) else getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        if original is missing:
            delattr(target, name)
        else:
            setattr(target, name, original)


@contextlib.contextmanager
def iam_enforced(roles: RoleSessions, denials: list[Denial]) -> Iterator[None]:
    """moto's IAM enforcement, with the seams above, for the block's duration; every request refused is
    appended to denials."""
    original_key_get = S3Response._key_response_get
    original_head = S3Response.head_object

    def key_response_get(response: S3Response, query: dict[str, Any], key_name: str) -> Any:
        _missing_key_needs_list_bucket(response, response.bucket_name, key_name, query)
        return original_key_get(response, query, key_name)

    def head_object(
        response: S3Response, bucket_name: str, query: dict[str, Any], key_name: str, headers: Any
    ) -> Any:
        _missing_key_needs_list_bucket(response, bucket_name, key_name, query)
        return original_head(response, bucket_name, query, key_name, headers)

    client_for = _state_machine_client(roles)
    with contextlib.ExitStack() as patches:
        for response_class, resolver in RESOURCES.items():
            patches.enter_context(
                _patched(
                    response_class,
                    "_authenticate_and_authorize_normal_action",
                    _authorize_with_resources(resolver),
                )
            )
        patches.enter_context(_patched(IAMRequestBase, "check_action_permitted", _check_action_permitted))
        patches.enter_context(_patched(IAMRequestBase, "check_signature", lambda request: None))
        raise_iam_denied, raise_s3_denied = _denier(denials)
        patches.enter_context(_patched(IAMRequest, "_raise_access_denied", raise_iam_denied))
        patches.enter_context(_patched(S3IAMRequest, "_raise_access_denied", raise_s3_denied))
        patches.enter_context(_patched(S3Response, "_key_response_get", key_response_get))
        patches.enter_context(_patched(S3Response, "head_object", head_object))
        patches.enter_context(_patched(S3Response, "_bucket_response_delete_keys", _delete_objects))
        patches.enter_context(
            _patched(S3Response, "_authenticate_and_authorize_s3_action", _authorized_bucket_delete)
        )
        patches.enter_context(
            _patched(
                moto.iam.policy_conditions,
                "CONDITION_OPERATIONS",
                {**moto.iam.policy_conditions.CONDITION_OPERATIONS, "Bool": _bool_equals},
            )
        )
        for module_name in _STATE_MACHINE_CLIENT_USERS:
            module = importlib.import_module(module_name)
            if hasattr(module, "boto_client_for"):
                patches.enter_context(_patched(module, "boto_client_for", client_for))
        patches.enter_context(enable_iam_authentication())
        yield
