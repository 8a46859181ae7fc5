"""An offline stack for tests: template.yaml's state machine and Lambdas in moto, real handlers in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from facetrain_testkit import ACCOUNT, REGION, FakeSageMaker
from lambda_adapter import LocalFunction, LocalLambdas
from moto import mock_aws
from template_loader import Resolver, functions, load_template, state_machine_definition

BUCKET = "facetrain-databucket-test"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/facetrain:test"
# Waits of 0 s, then at most 1 s: the loop runs as deployed, without the minutes.
TEST_PARAMETERS = {"TrainingImageUri": IMAGE, "PollIntervalSeconds": "0", "MaxPollIntervalSeconds": "1"}
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@dataclass
class OfflineStack:
    """The deployed-like stack and helpers to run executions and read what they left."""

    s3: Any
    sfn: Any
    sqs: Any
    sagemaker: Any
    bucket: str
    topic_arn: str
    queue_url: str
    state_machine_arn: str
    lambdas: LocalLambdas
    fake_sagemaker: FakeSageMaker

    def run(self, execution_input: object, name: str, timeout: float = 60) -> dict[str, Any]:
        """Start an execution and wait for it to end; return DescribeExecution."""
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            description = self.sfn.describe_execution(executionArn=arn)
            if description["status"] != "RUNNING":
                return description
            time.sleep(0.05)
        raise TimeoutError(f"execution {name} still running after {timeout} s")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]

    def notifications(self) -> list[dict[str, str]]:
        """Messages published to the topic so far: {"Subject", "Message"}."""
        messages = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return messages
            for message in batch:
                body = json.loads(message["Body"])
                messages.append({"Subject": body.get("Subject", ""), "Message": body["Message"]})
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def keys(self, prefix: str = "") -> list[str]:
        response = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in response.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@contextmanager
def offline_stack(fake_sagemaker: FakeSageMaker) -> Iterator[OfflineStack]:
    """Create the bucket, topic and state machine from template.yaml; handlers run in-process."""
    with mock_aws(config=MOTO_CONFIG):
        session = boto3.Session(region_name=REGION)
        s3, sns, sqs, sfn = (session.client(name) for name in ("s3", "sns", "sqs", "stepfunctions"))
        s3.create_bucket(Bucket=BUCKET)
        topic_arn = sns.create_topic(Name="facetrain-notifications")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

        template = load_template()
        names = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
        physical = {
            "DataBucket": BUCKET,
            "NotificationTopic": topic_arn,
            "SageMakerExecutionRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/facetrain-sagemaker",
            **{f"{n}.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:facetrain-{n}" for n in names},
        }
        resolver = Resolver(template, physical, TEST_PARAMETERS)
        lambdas = LocalLambdas()
        for spec in functions(template, resolver).values():
            # No botocore retries in tests: throttling reaches the handlers' TransientError at once.
            environment = {**spec.environment, "AWS_MAX_ATTEMPTS": "1"}
            lambdas.add(LocalFunction(f"facetrain-{spec.logical_id}", spec.handler, environment))
        definition = state_machine_definition(template, resolver, "RetrainingStateMachine")
        state_machine_arn = sfn.create_state_machine(
            name="facetrain-retraining", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn"
        )["stateMachineArn"]
        with lambdas.installed(), fake_sagemaker.installed():
            yield OfflineStack(
                s3=s3,
                sfn=sfn,
                sqs=sqs,
                sagemaker=session.client("sagemaker"),
                bucket=BUCKET,
                topic_arn=topic_arn,
                queue_url=queue_url,
                state_machine_arn=state_machine_arn,
                lambdas=lambdas,
                fake_sagemaker=fake_sagemaker,
            )
