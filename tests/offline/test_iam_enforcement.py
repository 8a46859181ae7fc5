"""The seams of the offline IAM enforcement (facetrain_offline.iam_enforcement), each against a role made
for it: where moto alone would allow or answer otherwise, AWS's answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from facetrain_offline.identities import LocalAccount
from facetrain_offline.local_aws import local_aws

REGION = "eu-west-1"
BUCKET = "enforced-bucket"


@pytest.fixture
def account() -> Iterator[LocalAccount]:
    with local_aws(REGION) as local:
        s3 = boto3.client("s3", region_name=REGION)  # the administrator
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=BUCKET, Key="present.json", Body=b"{}")
        yield local


def _role(name: str, *statements: dict) -> str:
    """A role with these statements (none: no policy at all)."""
    iam = boto3.client("iam", region_name=REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if statements:
        document = {"Version": "2012-10-17", "Statement": list(statements)}
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(document))
    return arn


def _error(call) -> dict:
    """The error of a refused call, with its HTTP status as "Status"."""
    with pytest.raises(ClientError) as failed:
        call()
    response = failed.value.response
    return {**response["Error"], "Status": response["ResponseMetadata"]["HTTPStatusCode"]}


GET = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
LIST = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}


def test_a_missing_key_is_403_without_list_bucket_and_404_with_it(account: LocalAccount) -> None:
    reader = account.roles.session(_role("reader", GET)).client("s3")
    lister = account.roles.session(_role("lister", GET, LIST)).client("s3")
    assert reader.get_object(Bucket=BUCKET, Key="present.json")["Body"].read() == b"{}"
    denied = _error(lambda: reader.get_object(Bucket=BUCKET, Key="missing.json"))
    assert denied["Code"] == "AccessDenied"
    assert "assumed-role/reader/" in denied["Message"] and "s3:ListBucket" in denied["Message"]
    assert _error(lambda: reader.head_object(Bucket=BUCKET, Key="missing.json"))["Status"] == 403
    assert _error(lambda: lister.get_object(Bucket=BUCKET, Key="missing.json"))["Code"] == "NoSuchKey"
    assert _error(lambda: lister.head_object(Bucket=BUCKET, Key="missing.json"))["Status"] == 404
    assert [d.action for d in account.denials] == ["s3:ListBucket", "s3:ListBucket"]


def test_delete_objects_is_authorized_key_by_key(account: LocalAccount) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="tmp/a", Body=b"a")
    allowed = {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{BUCKET}/tmp/*"}
    cleaner = account.roles.session(_role("cleaner", allowed)).client("s3")
    result = cleaner.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "tmp/a"}, {"Key": "present.json"}]}
    )
    assert [d["Key"] for d in result["Deleted"]] == ["tmp/a"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("present.json", "AccessDenied")]
    assert "present.json" in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]


def _training_job(sagemaker, role_arn: str, isolated: bool = True) -> dict:
    return sagemaker.create_training_job(
        TrainingJobName="facetrain-t1",
        AlgorithmSpecification={
            "TrainingImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/f:1",
            "TrainingInputMode": "File",
        },
        RoleArn=role_arn,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        EnableNetworkIsolation=isolated,
    )


def test_create_training_job_needs_pass_role_and_its_conditions(account: LocalAccount) -> None:
    job_role = _role("job")
    create = {
        "Effect": "Allow",
        "Action": "sagemaker:CreateTrainingJob",
        "Resource": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/facetrain-*",
        "Condition": {"Bool": {"sagemaker:NetworkIsolation": "true"}},
    }
    pass_role = {
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": job_role,
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    }
    without_pass = account.roles.session(_role("starter-no-pass", create)).client("sagemaker")
    denied = _error(lambda: _training_job(without_pass, job_role))
    assert "iam:PassRole" in denied["Message"] and "starter-no-pass" in denied["Message"]
    starter = account.roles.session(_role("starter", create, pass_role)).client("sagemaker")
    denied = _error(lambda: _training_job(starter, job_role, isolated=False))  # the Bool condition
    assert "sagemaker:CreateTrainingJob" in denied["Message"]
    other_role = _role("other")
    assert "iam:PassRole" in _error(lambda: _training_job(starter, other_role))["Message"]
    assert _training_job(starter, job_role)["TrainingJobArn"].endswith("training-job/facetrain-t1")


def test_resource_scoped_statements_match_the_arn_aws_authorizes(account: LocalAccount) -> None:
    describe = {
        "Effect": "Allow",
        "Action": "sagemaker:DescribeTrainingJob",
        "Resource": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/facetrain-*",
    }
    poller = account.roles.session(_role("poller", describe)).client("sagemaker")
    # allowed: moto's own "job not found" answer, not AccessDenied (training job ARNs are lower case)
    assert (
        _error(lambda: poller.describe_training_job(TrainingJobName="facetrain-Run1"))["Code"]
        == "ValidationException"
    )
    denied = _error(lambda: poller.describe_training_job(TrainingJobName="other-job"))
    assert denied["Code"] == "AccessDeniedException"
    assert "training-job/other-job" in denied["Message"] and "assumed-role/poller/" in denied["Message"]
    logs = {
        "Effect": "Allow",
        "Action": "logs:CreateLogGroup",
        "Resource": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/TrainingJobs",
    }
    writer = account.roles.session(_role("no-colon-star", logs)).client("logs")
    denied = _error(lambda: writer.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs"))
    assert "log-group:/aws/sagemaker/TrainingJobs:*" in denied["Message"]  # the ARN needs its ":*"
