"""What the functions read in AWS, created in a moto server under the names events/env.json gives them
(`sam local invoke --env-vars events/env.json` runs them against those names): the data bucket with a few
placeholder photos, the upload state table, the notification topic and the retraining state machine.

Properties come from template.yaml (the table's keys, the bucket's versioning, the state machine's ASL), the
names from env.json; only the photos are ours (placeholder bytes: the functions never decode a photo).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = REPO_ROOT / "events" / "env.json"
TEMPLATE = REPO_ROOT / "template.yaml"
# validate.json asks for min_images_per_identity=2: two people with two photos each enroll.
PLACEHOLDER_PHOTOS = {"alice": 2, "bob": 2}
PLACEHOLDER_JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 256  # a JPEG signature; never decoded by the Lambdas


def _resources() -> dict[str, Any]:
    # The offline stack's loader: the template's short forms (!Ref, !Sub) as plain data.
    from facetrain_offline.sam import load_sam

    return load_sam(TEMPLATE)["Resources"]


def environment(env_file: Path = ENV_FILE) -> dict[str, dict[str, str]]:
    """The env-vars file as data: {"Parameters": {...}, "<Function>": {...}}."""
    return json.loads(env_file.read_text())


def _name_of_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def _first(env: Mapping[str, Mapping[str, str]], variable: str) -> str:
    for values in env.values():
        if variable in values:
            return values[variable]
    raise KeyError(f"{variable} is in no section of the env-vars file")


def seed(
    endpoint_url: str, region: str, env: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, str]:
    """Create in the moto server at endpoint_url what the functions of env (default events/env.json) read;
    return the names created ({"bucket", "table", "topic_arn", "state_machine_arn"})."""
    env = env if env is not None else environment()
    resources = _resources()
    session = boto3.Session(region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106 (moto's)

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url)

    bucket = env["Parameters"]["DATA_BUCKET"]
    s3 = client("s3")
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    versioning = resources["DataBucket"]["Properties"]["VersioningConfiguration"]["Status"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    images_prefix = _first(env, "IMAGES_PREFIX")
    for identity, count in PLACEHOLDER_PHOTOS.items():
        for index in range(count):
            body = PLACEHOLDER_JPEG + f"{identity}{index}".encode()
            s3.put_object(Bucket=bucket, Key=f"{images_prefix}{identity}/{index:03d}.jpg", Body=body)

    table = _first(env, "UPLOAD_STATE_TABLE")
    table_properties = resources["UploadStateTable"]["Properties"]
    client("dynamodb").create_table(
        TableName=table,
        KeySchema=table_properties["KeySchema"],
        AttributeDefinitions=table_properties["AttributeDefinitions"],
        BillingMode=table_properties["BillingMode"],
    )

    topic_arn = _first(env, "NOTIFICATION_TOPIC_ARN")
    created_topic = client("sns").create_topic(Name=_name_of_arn(topic_arn))["TopicArn"]

    state_machine_arn = _first(env, "STATE_MACHINE_ARN")
    definition_uri = resources["RetrainingStateMachine"]["Properties"]["DefinitionUri"]
    created_machine = client("stepfunctions").create_state_machine(
        name=_name_of_arn(state_machine_arn),
        definition=(REPO_ROOT / definition_uri).read_text(),  # moto stores it; executions stay RUNNING
        roleArn=f"arn:aws:iam::{state_machine_arn.split(':')[4]}:role/facetrain-retraining",
    )["stateMachineArn"]
    for wanted, created in ((topic_arn, created_topic), (state_machine_arn, created_machine)):
        if wanted != created:
            raise ValueError(
                f"{ENV_FILE.name} names {wanted}, but the local AWS made {created}: check the region"
            )
    return {"bucket": bucket, "table": table, "topic_arn": topic_arn, "state_machine_arn": state_machine_arn}
