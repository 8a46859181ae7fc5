"""validate/start tell the job the key prefix of every ManifestFile channel (photos, config files, the
published run's embeddings), each as the hyperparameter contract.names.MANIFEST_PREFIX_HYPERPARAMETERS names,
so that it reads each channel in either layout (facetrain.channel_layout); validate refuses the names that
would confuse the two layouts."""

from __future__ import annotations

import json

from facetrain.contract.names import (
    CONFIG_CHANNEL,
    EMBEDDINGS_PKL,
    IMAGES_CHANNEL,
    MANIFEST_PREFIX_HYPERPARAMETERS,
    PREVIOUS_CHANNEL,
)
from facetrain_lambdas import start
from facetrain_lambdas.dataset import ListedObject
from facetrain_lambdas.layout import RunLayout
from facetrain_lambdas.published import LatestRecord
from facetrain_lambdas.quality_gate import QualityGate, QualityGateDecision
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.run_settings import resolve_settings
from facetrain_lambdas.training_job import TrainingSettings, manifest_prefixes, training_job_request
from facetrain_lambdas.validate import previous_embeddings_key, validate_run
from facetrain_offline.lambda_runtime import LambdaContext
from handler_fixtures import BUCKET, IMAGE, ROLE, run_record
from support.testkit import upload_photos


def _latest(run_id: str, embeddings_key: str) -> dict:
    """latest.json of a published run whose saved_embeddings.pkl lies at embeddings_key."""
    gate = QualityGateDecision(
        run_id=run_id,
        gate=QualityGate(),
        identification_accuracy=0.9,
        published_identification_accuracy=None,
        passed=True,
        problems=[],
    )
    return LatestRecord(
        run_id=run_id,
        previous_run_id=None,
        execution="exec-0",
        published_at="2026-12-03T10:00:00+00:00",
        training_job_name=f"facetrain-{run_id}",
        run_fingerprint="abc",
        identities=2,
        images_accepted=4,
        images_rejected=0,
        identification_accuracy=0.9,
        accept_threshold=0.39,
        quality_gate=gate,
        not_for_production=False,
        run_files={EMBEDDINGS_PKL: embeddings_key},
        current_files={},
    ).model_dump(mode="json")


def test_the_job_gets_the_prefix_entry_of_each_manifest(s3, sagemaker, function_env) -> None:
    upload_photos(s3, BUCKET, {"alice": 2, "bob": 2}, prefix="teams/berlin/")
    s3.put_object(Bucket=BUCKET, Key="settings/team/constants.py", Body=b"BATCH_SIZE = 16\n")
    s3.put_object(Bucket=BUCKET, Key="settings/team/more/accept.yaml", Body=b"accept_threshold: 0.5\n")
    published = _latest("r0", f"out/runs/r0/{EMBEDDINGS_PKL}")
    s3.put_object(Bucket=BUCKET, Key="out/latest.json", Body=json.dumps(published).encode())
    request = resolve_request(
        {
            "run_id": "r1",
            "images_prefix": "teams/berlin",
            "config_prefix": "settings/team",
            "results_prefix": "out",
        },
        "exec-1",
        StackDefaults(bucket=BUCKET),
    )
    pointer = validate_run(s3, request, 10**6)
    start.handler(
        {"execution": "exec-1", "run": pointer.model_dump(), "poll_interval_seconds": 30},
        LambdaContext("start"),
    )

    job = sagemaker.describe_training_job(TrainingJobName="facetrain-r1")  # moto keeps HyperParameters
    given = {}
    for channel in job["InputDataConfig"]:
        manifest_key = channel["DataSource"]["S3DataSource"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
        prefix = manifest[0]["prefix"].removeprefix(f"s3://{BUCKET}/")
        assert job["HyperParameters"][MANIFEST_PREFIX_HYPERPARAMETERS[channel["ChannelName"]]] == prefix
        given[channel["ChannelName"]] = prefix
    assert given == {
        IMAGES_CHANNEL: "teams/berlin/",
        CONFIG_CHANNEL: "settings/team/",
        PREVIOUS_CHANNEL: "out/runs/r0/",
    }


def test_only_the_channels_given_get_a_prefix() -> None:
    settings = TrainingSettings(training_image=IMAGE, role_arn=ROLE)
    for record in (
        run_record(),
        run_record(cfg_manifest_key=None),
        run_record(previous_manifest_key="results/runs/r1/previous-manifest.json", previous_run_id="r0"),
    ):
        request = training_job_request(record, settings)
        channels = {channel["ChannelName"] for channel in request["InputDataConfig"]}
        assert set(manifest_prefixes(record)) == channels
        prefixes = {
            name: request["HyperParameters"].get(name) for name in MANIFEST_PREFIX_HYPERPARAMETERS.values()
        }
        assert {name for name, value in prefixes.items() if value is not None} == {
            MANIFEST_PREFIX_HYPERPARAMETERS[channel] for channel in channels
        }
    assert manifest_prefixes(record)[PREVIOUS_CHANNEL] == "results/runs/r0/"


def test_the_previous_embeddings_are_reused_only_from_the_published_runs_own_folder() -> None:
    layout = RunLayout(bucket=BUCKET, results_prefix="results/", run_id="r2")
    own = _latest("r1", f"results/runs/r1/{EMBEDDINGS_PKL}")
    other = _latest("r1", f"results/runs/r0/{EMBEDDINGS_PKL}")
    assert (
        previous_embeddings_key(LatestRecord.model_validate(own), layout) == own["run_files"][EMBEDDINGS_PKL]
    )
    # start tells the job the prefix runs/r1/: a manifest under runs/r0/ would not be found in it.
    assert previous_embeddings_key(LatestRecord.model_validate(other), layout) is None
    assert previous_embeddings_key(None, layout) is None


def test_a_config_folder_named_like_the_prefixs_first_folder_is_refused(s3) -> None:
    keys = ["config/config/accept.yaml", "config/constants.py", "config/sub/config/fine.yaml"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"{}\n" if key.endswith(".yaml") else b"BATCH_SIZE = 8\n")
    objects = [ListedObject(key=key, size=10, etag="e") for key in keys]

    resolved = resolve_settings(s3, BUCKET, "config/", objects, {})

    assert resolved.problems == [
        f"s3://{BUCKET}/config/config/accept.yaml: its folder config/ has the name of the first folder "
        "of the config prefix 'config/': the training job could not tell it from config files SageMaker "
        "writes under their full key (config/<file>); rename the folder"
    ]
    fine = resolve_settings(s3, BUCKET, "config/", objects[1:], {})
    assert fine.problems == [] and fine.config_keys == ["constants.py", "sub/config/fine.yaml"]
