"""Real results to erase a person from: two runs of the training job on faces-dev, and the Lambdas' own
documents for them, made once per test session.

The photos: faces-dev's person_02, person_04 and person_05, person_10's photos filed as `person_02b` (a
name that starts like the one forgotten) and, in person_02's folder, a blank photo derived at test time
(no face: a rejected.csv row). Run 1 has Spot checkpoints on (a real photo-outcomes segment); run 2 is an
incremental run without the blank photo, reusing run 1's embeddings. Both use dlib-resnet (fast on a CPU,
a real embedder). model.tar.gz is testkit.model_tar of each run's model/ files. validate_run writes the
run records, manifests and problems.json in moto (run B from an upload of person_02's photo: its
trigger_key is theirs; run C is refused for a stray file in person_02's folder).

`real_results` returns {key under the results prefix: bytes} per object kind; it runs the job in this
process (facetrain.train.main, as tests/container do), so it imports torch.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from support.testkit import model_tar

FORGOTTEN = "person_02"
LOOKALIKE = "person_02b"
PEOPLE = {FORGOTTEN: "person_02", LOOKALIKE: "person_10", "person_04": "person_04", "person_05": "person_05"}
IMAGES_PREFIX = "face_imgs/"
RESULTS_PREFIX = "results/"
BUCKET = "erasure-corpus"
HYPERPARAMETERS = {"embedder": "dlib-resnet", "seed": "0"}
MODEL_FILES = (
    "final_mean_embeddings.csv",
    "rules.py",
    "saved_embeddings.pkl",
    "rejected.csv",
    "metrics.json",
    "report.html",
)


@dataclass
class RealResults:
    """The objects of two real runs, keyed as they lie under RESULTS_PREFIX (`runs/r1/...`)."""

    runs: dict[str, dict[str, bytes]] = field(default_factory=dict)  # run id -> relative key -> bytes
    photos: dict[str, bytes] = field(default_factory=dict)  # <name>/<photo> -> bytes

    def run_objects(self, run_id: str) -> dict[str, bytes]:
        """{key under the results prefix: bytes} of one run."""
        return {f"runs/{run_id}/{name}": body for name, body in self.runs[run_id].items()}

    def current_files(self, run_id: str) -> dict[str, bytes]:
        """The files publish copies to the results prefix root for this run."""
        names = ("final_mean_embeddings.csv", "rules.py", "saved_embeddings.pkl", "report.html")
        return {name: self.runs[run_id][name] for name in names}


_CACHE: dict[Path, RealResults] = {}


def _blank_photo() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (400, 400), (120, 130, 140)).save(out, format="JPEG")
    return out.getvalue()


def _photos(shared_data: Path) -> dict[str, bytes]:
    photos = {}
    for name, source in PEOPLE.items():
        for path in sorted((shared_data / "faces-dev" / source).iterdir()):
            photos[f"{name}/{path.name}"] = path.read_bytes()
    photos[f"{FORGOTTEN}/blank.jpg"] = _blank_photo()
    return photos


def _run_job(tree_class: type, base: Path, photos: dict[str, bytes], previous: bytes | None, spot: bool):
    from facetrain.train import main

    tree = tree_class(base, hyperparameters=HYPERPARAMETERS)
    for relative, body in photos.items():
        identity, name = relative.split("/")
        tree.add_photo(identity, name, body)
    if previous is not None:
        (tree.channel("previous") / "saved_embeddings.pkl").write_bytes(previous)
    if spot:
        (base / "checkpoints").mkdir()
    cwd = base.parent / f"{base.name}-cwd"
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGEMAKER_BASE_DIR", str(base))
        patch.chdir(cwd)
        assert main([]) == 0, tree.failure()
    files = {name: (tree.model / name).read_bytes() for name in MODEL_FILES}
    files["training/facetrain-job/output/model.tar.gz"] = model_tar(files)
    if spot:
        segments = sorted((base / "checkpoints").glob("photo-outcomes-*.pkl"))
        assert segments, "the job wrote no checkpoint segment"
        for segment in segments:
            files[f"checkpoints/{segment.name}"] = segment.read_bytes()
    return files


def _request(run_id: str, **changes: object):
    from facetrain_lambdas.run_request import RunRequest

    values: dict[str, object] = {
        "run_id": run_id,
        "execution": run_id,
        "source": "console",
        "bucket": BUCKET,
        "images_prefix": IMAGES_PREFIX,
        "config_prefix": "config/",
        "results_prefix": RESULTS_PREFIX,
        "hyperparameters": dict(HYPERPARAMETERS),
        "instance_type": "ml.g4dn.xlarge",
        "instance_count": 1,
        **changes,
    }
    return RunRequest.model_validate(values)


def _lambda_documents(photos: dict[str, bytes]) -> dict[str, dict[str, bytes]]:
    """validate_run's documents of runs r1 (console), r2 (an upload of person_02's photo), r3 (refused)."""
    from facetrain_lambdas.dataset import manifest
    from facetrain_lambdas.errors import InvalidInput
    from facetrain_lambdas.s3_json import write_json
    from facetrain_lambdas.validate import validate_run

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for relative, body in photos.items():
            s3.put_object(Bucket=BUCKET, Key=IMAGES_PREFIX + relative, Body=body)
        s3.put_object(
            Bucket=BUCKET, Key=f"{IMAGES_PREFIX}{FORGOTTEN}/_draft.jpg", Body=photos[f"{FORGOTTEN}/img3.jpg"]
        )
        s3.put_object(Bucket=BUCKET, Key="config/settings.json", Body=b'{"batch_size": 16}')
        validate_run(s3, _request("r1"))
        s3.delete_object(Bucket=BUCKET, Key=f"{IMAGES_PREFIX}{FORGOTTEN}/blank.jpg")
        trigger = f"{IMAGES_PREFIX}{FORGOTTEN}/img3.jpg"
        validate_run(s3, _request("r2", source="s3-event", trigger_key=trigger))
        # the previous manifest validate writes once r1 is published (validate.previous_embeddings_key)
        previous = manifest(BUCKET, f"{RESULTS_PREFIX}runs/r1/", ["saved_embeddings.pkl"])
        write_json(s3, BUCKET, f"{RESULTS_PREFIX}runs/r2/previous-manifest.json", previous)
        # refused (a problem naming their empty photo), with a warning naming their notes.txt (skipped)
        s3.put_object(Bucket=BUCKET, Key=f"{IMAGES_PREFIX}{FORGOTTEN}/notes.txt", Body=b"notes")
        s3.put_object(Bucket=BUCKET, Key=f"{IMAGES_PREFIX}{FORGOTTEN}/empty.jpg", Body=b"")
        with pytest.raises(InvalidInput, match=r"empty\.jpg is empty"):
            validate_run(s3, _request("r3"))
        documents: dict[str, dict[str, bytes]] = {"r1": {}, "r2": {}, "r3": {}}
        listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{RESULTS_PREFIX}runs/")
        for item in listing["Contents"]:
            run_id, name = item["Key"].removeprefix(f"{RESULTS_PREFIX}runs/").split("/", 1)
            documents[run_id][name] = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return documents


def real_results(tree_class: type, shared_data: Path, workdir: Path) -> RealResults:
    """The real results (made once per session; `workdir` holds the job's trees)."""
    if workdir in _CACHE:
        return _CACHE[workdir]
    photos = _photos(shared_data)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    first = _run_job(tree_class, workdir / "r1", photos, None, spot=True)
    second_photos = {k: v for k, v in photos.items() if not k.endswith("/blank.jpg")}
    second = _run_job(tree_class, workdir / "r2", second_photos, first["saved_embeddings.pkl"], spot=False)
    documents = _lambda_documents(photos)
    results = RealResults(
        runs={"r1": {**first, **documents["r1"]}, "r2": {**second, **documents["r2"]}, "r3": documents["r3"]},
        photos=photos,
    )
    _CACHE[workdir] = results
    return results
