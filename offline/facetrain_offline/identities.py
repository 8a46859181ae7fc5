"""Who calls the local AWS, with which credentials: every caller is someone IAM knows.

With IAM enforced (iam_enforcement.py) moto checks each request against the policies of the identity
whose access key signed it, so each component of the offline stack signs with the identity it has on
AWS:

- each Lambda function: its execution role (the translated template's), as the Lambda service assumes
  it; Lambda's SQS pollers for a function: the same role (SAM adds SQSPollerPolicy to it);
- the state machine's service integrations: the state machine's role;
- the training job's channel downloads, model upload and logs: the job's RoleArn (SageMakerExecutionRole);
- `facetrain run` uploading the photos, starting, following and stopping executions, reading results:
  the operator user, with the template's OperatorPolicy and nothing else;
- deploying the stack, the test harness, and the stand-ins for AWS itself (saved state, rules paused
  during a restore, status events): the local administrator, allowed everything.

A service principal (Lambda, Step Functions, SageMaker) assumes its role through moto's STS backend
directly, not through the STS API: on AWS no caller of ours makes that request, so it has nothing to
check here. Trust policies are therefore not evaluated offline (see docs/workflow.md, "IAM offline").
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import IAMBackend, iam_backends
from moto.sts.models import sts_backends

ADMIN_USER = "local-admin"
OPERATOR_USER = "facetrain-operator"
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
_SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Credentials:
    """An access key, with the session token of a role's temporary credentials."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def environment(self) -> dict[str, str]:
        """The variables the Lambda runtime sets for a function's role (AWS_SESSION_TOKEN always, empty
        for a user's key: a token inherited from the process environment must not go with it)."""
        variables = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        return {**variables, "AWS_SESSION_TOKEN": self.session_token or ""}

    def session(self, region: str) -> boto3.Session:
        """A boto3 session signing with exactly these credentials (never the environment's)."""
        return boto3.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            region_name=region,
        )


def _iam() -> IAMBackend:
    return iam_backends[DEFAULT_ACCOUNT_ID]["aws"]


def user_credentials(
    name: str, region: str, *, policy_arns: tuple[str, ...] = (), inline_policy: str | None = None
) -> Credentials:
    """A new IAM user with these policies and an access key of its own."""
    iam = _iam()
    iam.create_user(region, name)
    if inline_policy is not None:
        iam.put_user_policy(name, f"{name}-policy", inline_policy)
    for arn in policy_arns:
        iam.attach_user_policy(arn, name)
    key = iam.create_access_key(name)
    return Credentials(key.access_key_id, key.secret_access_key)


def admin_credentials(region: str) -> Credentials:
    """The local administrator: deploys the stack, and stands in for AWS's own services."""
    existing = {user.name for user in _iam().list_users("/", None, None)}
    name = next(
        f"{ADMIN_USER}-{n}" for n in range(1, len(existing) + 2) if f"{ADMIN_USER}-{n}" not in existing
    )
    return user_credentials(name, region, inline_policy=_ALLOW_ALL)


class RoleSessions:
    """Temporary credentials of roles as their service assumes them, one set per role and session name
    (cached); the session name shows in the principal's ARN (…:assumed-role/ROLE/SESSION)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._credentials: dict[tuple[str, str], Credentials] = {}
        self._lock = threading.Lock()

    def credentials(self, role_arn: str, session_name: str = "facetrain-local") -> Credentials:
        """The role's credentials for a session (Lambda names it after the function)."""
        with self._lock:
            if (role_arn, session_name) not in self._credentials:
                sts = sts_backends[DEFAULT_ACCOUNT_ID]["aws"]
                assumed = sts.assume_role(
                    region_name=self.region,
                    role_session_name=session_name,
                    role_arn=role_arn,
                    policy="",
                    duration=_SESSION_SECONDS,
                    external_id="",
                )
                self._credentials[(role_arn, session_name)] = Credentials(
                    assumed.access_key_id, assumed.secret_access_key, assumed.session_token
                )
            return self._credentials[(role_arn, session_name)]

    def session(self, role_arn: str, session_name: str = "facetrain-local") -> boto3.Session:
        return self.credentials(role_arn, session_name).session(self.region)


@dataclass(frozen=True)
class Denial:
    """A request IAM refused offline: who asked, for which action, on which resource."""

    principal: str  # a user's ARN, or an assumed role's (arn:aws:sts::…:assumed-role/ROLE/SESSION)
    action: str
    resource: str


@dataclass(frozen=True)
class LocalAccount:
    """The identities of one local AWS (local_aws): the administrator and the roles' sessions."""

    region: str
    admin: Credentials
    roles: RoleSessions

    operators: dict[str, Credentials] = field(default_factory=dict)  # policy ARN → the operator's key
    denials: list[Denial] = field(default_factory=list)  # every request refused, in order

    def operator(self, policy_arn: str) -> Credentials:
        """The operator user with only this managed policy (the template's OperatorPolicy), made once."""
        if policy_arn not in self.operators:
            existing = {user.name for user in _iam().list_users("/", None, None)}
            name = next(
                f"{OPERATOR_USER}-{n}"
                for n in range(1, len(existing) + 2)
                if f"{OPERATOR_USER}-{n}" not in existing
            )
            self.operators[policy_arn] = user_credentials(name, self.region, policy_arns=(policy_arn,))
        return self.operators[policy_arn]


_ACTIVE: list[LocalAccount] = []


@contextlib.contextmanager
def local_account(region: str) -> Iterator[LocalAccount]:
    """The administrator and role sessions of the local AWS that is running (call inside mock_aws)."""
    account = LocalAccount(region, admin_credentials(region), RoleSessions(region))
    _ACTIVE.append(account)
    try:
        yield account
    finally:
        _ACTIVE.remove(account)


def active_account() -> LocalAccount:
    """The LocalAccount of the innermost running local AWS."""
    if not _ACTIVE:
        raise RuntimeError("no local AWS is running (facetrain_offline.local_aws.local_aws)")
    return _ACTIVE[-1]
