"""Test doubles and data: photos in S3, a model.tar.gz like the training job writes (built with facetrain's
own writers, no torch), and a SageMaker that "trains" in moto.
"""

from __future__ import annotations

import html
import io
import json
import tarfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
import numpy as np
from facetrain.contract.embeddings_file import dump_embeddings
from facetrain.contract.enrollment_csv import render_csv
from facetrain.contract.metrics import DistanceSummary, EvaluationSummary, MetricsDocument
from facetrain.contract.names import (
    EMBEDDINGS_PKL,
    ENROLLMENT_CSV,
    IMAGES_CHANNEL,
    METRICS_JSON,
    REJECTED_CSV,
    REPORT_HTML,
    RULES_PY,
)
from facetrain.contract.rules_file import render_rules
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import JsonRESTError
from moto.s3.models import s3_backends
from moto.sagemaker.models import SageMakerModelBackend

DIM = 512
JPEG = b"\xff\xd8\xff\xe0" + b"0" * 200  # content is never decoded by the Lambdas


def upload_photos(s3: Any, bucket: str, photos: Mapping[str, int], prefix: str = "face_imgs/") -> list[str]:
    """Put `count` small .jpg objects under prefix/<identity>/ for each identity; return the keys."""
    keys = []
    for identity, count in photos.items():
        for index in range(count):
            key = f"{prefix}{identity}/{index:03d}.jpg"
            s3.put_object(Bucket=bucket, Key=key, Body=JPEG + identity.encode() + bytes([index % 256]))
            keys.append(key)
    return keys


def model_files(
    identities: Mapping[str, int],
    not_for_production: bool = True,
    seed: int = 0,
    identification_accuracy: float | None = 0.95,
    embedder: str | None = None,
) -> dict[str, bytes]:
    """The files the training job writes into model/, for these identities and photo counts (with an
    evaluation reporting `identification_accuracy` and a report.html). `embedder` given: the files name
    it, with its embedding size (dlib-resnet: 128); left out, they are facenet's of before it was named."""
    dim = {"dlib-resnet": 128}.get(embedder or "facenet", DIM)
    named = {"embedder": embedder, "embedding_dim": dim} if embedder else {}
    rng = np.random.default_rng(seed)
    rows, records = [], []
    for identity, count in identities.items():
        vectors = rng.normal(size=(count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        mean = vectors.mean(axis=0)
        rows.append((identity, count, (mean / np.linalg.norm(mean)).tolist()))
        for index, vector in enumerate(vectors):
            records.append(
                {
                    "identity": identity,
                    "key": f"{identity}/{index:03d}.jpg",
                    "sha256": f"{index:064x}",
                    "box": [0.0, 0.0, 10.0, 10.0],
                    "probability": 0.99,
                    "embedding": vector,
                }
            )
    warning = "NOT FOR PRODUCTION" if not_for_production else None
    rules = render_rules(
        {
            "metric": "euclidean",
            "accept_threshold": 1.1,
            "embedding_dim": dim,
            **named,
            "identities": list(identities),
            "image_size": 160,
            "margin": 0,
            "weights": "none" if not_for_production else "vggface2",
            "not_for_production": not_for_production,
            "dataset_fingerprint": "f" * 64,
            "created_at": "2025-01-01T00:00:00Z",
        }
    )
    pickle_buffer = io.BytesIO()
    dump_embeddings({"weights": "none", **named}, records, pickle_buffer)
    total = sum(identities.values())
    distances = DistanceSummary(count=0, min=None, p50=None, p95=None, max=None, mean=None)
    metrics = MetricsDocument(
        status="succeeded",
        not_for_production=not_for_production,
        warning=warning,
        images_total=total + 1,
        images_accepted=total,
        images_rejected=1,
        rejections_by_reason={"no_face": 1},
        identities=len(identities),
        identities_excluded={},
        embedder=embedder or "facenet",
        weights="none" if not_for_production else "vggface2",
        weights_sha256=None,
        model_files={},
        embedding_dim=dim,
        device="cpu",
        runtime="onnx",
        inference_threads=2,
        images_per_second=12.5,
        embeddings_computed=total,
        embeddings_reused=0,
        hosts=1,
        dataset_fingerprint="f" * 64,
        hyperparameters={},
        created_at="2025-01-01T00:00:00Z",
        versions={},
        evaluation=EvaluationSummary(
            method="leave-one-out",
            photos_evaluated=total,
            identities_evaluated=len(identities),
            identification_accuracy=identification_accuracy,
            threshold=1.1,
            threshold_source="default",
            threshold_note="test",
            target_far=0.001,
            false_accept_rate=None,
            false_reject_rate=None,
            false_accepts=None,
            false_rejects=None,
            genuine=distances,
            impostor=distances,
            per_identity=[],
            closest_pairs=[],
            suspected_mislabels_total=0,
            suspected_mislabels=[],
        ),
        timings={"total": 1.0},
    ).model_dump(mode="json")
    return {
        ENROLLMENT_CSV: render_csv(rows, dim, warning).encode(),
        RULES_PY: rules.encode(),
        EMBEDDINGS_PKL: pickle_buffer.getvalue(),
        REJECTED_CSV: b"identity,photo,reason,message\nalice,alice/x.jpg,no_face,no face found\n",
        METRICS_JSON: json.dumps(metrics).encode(),
        # As the job's report, one table row per identity (report.html names them; a forget deletes it).
        REPORT_HTML: (
            "<!doctype html><title>facetrain report</title><p>test report</p><table>"
            + "".join(f"<tr><td>{html.escape(identity)}</td></tr>" for identity in identities)
            + "</table>"
        ).encode(),
    }


def model_tar(files: Mapping[str, bytes], dot_slash: bool = False) -> bytes:
    """A model.tar.gz holding these files (members `name`, or `./name` like `tar -C model .`)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(f"./{name}" if dot_slash else name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def _s3_uri_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass
class FakeSageMaker:
    """Makes moto's SageMaker behave like a training job ran.

    On CreateTrainingJob it reads the images manifest and writes a model.tar.gz enrolling every identity
    listed there (or marks the job Failed with `failure_reason`). DescribeTrainingJob reports InProgress
    for the first `in_progress_polls` calls of each job, and while `hold` is an unset Event.
    `throttle_describes` makes that many describes fail with ThrottlingException first.
    """

    fail_with: str | None = None
    in_progress_polls: int = 0
    hold: threading.Event | None = None  # jobs report InProgress until the test sets it
    throttle_describes: int = 0
    files_override: Mapping[str, bytes] | None = None
    identification_accuracy: float | None = 0.95
    created: list[dict[str, Any]] = field(default_factory=list)
    describes: dict[str, int] = field(default_factory=dict)

    def _create(self, original: Any, backend: SageMakerModelBackend, **kwargs: Any) -> Any:
        job = original(backend, **kwargs)
        self.created.append(kwargs)
        if self.fail_with:
            job.training_job_status = "Failed"
            job.secondary_status = "Failed"
            job.failure_reason = self.fail_with
            return job
        s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        channel = next(c for c in kwargs["input_data_config"] if c["ChannelName"] == IMAGES_CHANNEL)
        bucket, key = _s3_uri_parts(channel["DataSource"]["S3DataSource"]["S3Uri"])
        manifest = json.loads(s3.get_object(bucket, key).value)
        counts: dict[str, int] = {}
        for relative in manifest[1:]:
            identity = relative.split("/", 1)[0]
            counts[identity] = counts.get(identity, 0) + 1
        files = self.files_override or model_files(
            counts, identification_accuracy=self.identification_accuracy
        )
        out_bucket, out_key = _s3_uri_parts(job.model_artifacts["S3ModelArtifacts"])
        s3.put_object(out_bucket, out_key, model_tar(files))
        job.billable_time_in_seconds = 1234
        return job

    def _describe(self, original: Any, backend: SageMakerModelBackend, training_job_name: str) -> Any:
        if self.throttle_describes:
            self.throttle_describes -= 1
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        response = original(backend, training_job_name)
        calls = self.describes[training_job_name] = self.describes.get(training_job_name, 0) + 1
        held = self.hold is not None and not self.hold.is_set()
        if (held or calls <= self.in_progress_polls) and response["TrainingJobStatus"] == "Completed":
            response = {**response, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}
            response.pop("BillableTimeInSeconds", None)
        return response

    @contextmanager
    def installed(self) -> Iterator[FakeSageMaker]:
        create, describe = (
            SageMakerModelBackend.create_training_job,
            SageMakerModelBackend.describe_training_job,
        )
        fake = self

        def patched_create(backend: SageMakerModelBackend, **kwargs: Any) -> Any:
            return fake._create(create, backend, **kwargs)

        def patched_describe(backend: SageMakerModelBackend, training_job_name: str) -> Any:
            return fake._describe(describe, backend, training_job_name)

        with (
            mock.patch.object(SageMakerModelBackend, "create_training_job", patched_create),
            mock.patch.object(SageMakerModelBackend, "describe_training_job", patched_describe),
        ):
            yield self


def training_job_role(name: str, bucket: str, region: str) -> str:
    """A role SageMaker may assume with what a training job of the local backend needs (IAM is enforced
    offline, and the backend reads the channels, uploads the model and writes logs as the job's role):
    the bucket's objects and the training jobs' log group. Returns its ARN (made by the administrator)."""
    iam = boto3.client("iam", region_name=region)
    service, logs = {"Service": "sagemaker.amazonaws.com"}, f"arn:aws:logs:{region}:{DEFAULT_ACCOUNT_ID}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": service, "Action": "sts:AssumeRole"}],
    }
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{logs}:log-group:/aws/sagemaker/TrainingJobs:*",
            },
        ],
    }
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
    iam.put_role_policy(RoleName=name, PolicyName="training-job", PolicyDocument=json.dumps(policy))
    return arn
