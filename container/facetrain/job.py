"""The enrollment job: settings → photos → faces → embeddings → files in model/."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import torch

from . import stopping
from .contract.config_files import read_config_dir
from .contract.hyperparameters import DLIB_RESNET, EMBEDDING_DIMS, Hyperparameters, parse_settings
from .contract.metrics import FORMAT as METRICS_FORMAT
from .contract.metrics import VERSION as METRICS_VERSION
from .contract.names import PREVIOUS_CHANNEL, REPORT_HTML
from .distributed import Cluster, HostShare, gather_to_master
from .enrollment import Enrollment, EnrollmentBuilder
from .evaluation import evaluate
from .faces import FaceEncoder, choose_device
from .model_files import resolve_model
from .outputs import NOT_FOR_PRODUCTION, render_enrollment, render_reports, write_outputs
from .photos import list_channel
from .pipeline import Accepted, PhotoPipeline, Rejected
from .report import render_report
from .reuse import embedding_fingerprint, load_previous, split_reusable
from .sagemaker_env import CONFIG_CHANNEL, IMAGES_CHANNEL, WEIGHTS_CHANNEL, TrainingEnvironment

log = logging.getLogger("facetrain")
PREPROCESSING_VERSION = 1  # bump when decoding/detection/cropping changes embeddings


class JobFailure(Exception):
    """The job cannot produce a useful enrollment; the message is what the operator reads first."""


def resolve_settings(env: TrainingEnvironment) -> Hyperparameters:
    """cfg channel files first, hyperparameters.json last (hyperparameters win)."""
    layers: list[tuple[str, dict[str, object]]] = []
    if CONFIG_CHANNEL in env.channels:
        layers.extend(read_config_dir(env.channels[CONFIG_CHANNEL]))
    layers.append(("hyperparameters", env.hyperparameters))
    return parse_settings(layers)


def library_versions(embedder: str) -> dict[str, str]:
    """Versions of the libraries that made the embeddings (dlib's wheel is `dlib-bin`, or `dlib` built
    from source)."""
    names = ["facetrain", "facenet-pytorch", "torch", "pillow"]
    if embedder == DLIB_RESNET:
        names += ["dlib-bin", "dlib", "face_recognition_models"]
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _failure_summary(enrollment: Enrollment) -> str:
    reasons = ", ".join(f"{reason}: {count}" for reason, count in enrollment.rejections_by_reason.items())
    examples = "; ".join(f"{row.photo}: {row.message}" for row in enrollment.rejected[:3])
    return (
        f"No identity could be enrolled: {enrollment.images_total} file(s), "
        f"{enrollment.images_accepted} usable ({reasons}). See rejected.csv. First problems: {examples}"
    )


def run_job(env: TrainingEnvironment) -> dict[str, object]:
    """Run the whole job and return its metrics; raise JobFailure when no enrollment can be made."""
    started = time.perf_counter()
    settings = resolve_settings(env)
    stopping.check()
    images_dir = env.channels.get(IMAGES_CHANNEL)
    if images_dir is None:
        raise JobFailure(
            f"No '{IMAGES_CHANNEL}' channel: the job needs its photos as input channel '{IMAGES_CHANNEL}' "
            f"(<identity>/<photo> files). Channels given: {', '.join(sorted(env.channels)) or 'none'}."
        )
    cluster = Cluster(hosts=env.hosts, current_host=env.current_host)
    listing = list_channel(images_dir)  # with several hosts: this host's shard (ShardedByS3Key)
    if not listing.photos and cluster.size == 1:
        raise JobFailure(
            f"The '{IMAGES_CHANNEL}' channel holds no photo in <identity>/<photo> folders"
            + (
                f" (only top-level files: {', '.join(listing.stray_files[:5])})"
                if listing.stray_files
                else ""
            )
            + ". Put each person's photos in a folder named after them."
        )
    device = choose_device(settings.device)
    model = resolve_model(settings, env.channels.get(WEIGHTS_CHANNEL))
    if settings.not_for_production:
        log.warning("*" * 20 + " %s " + "*" * 20, NOT_FOR_PRODUCTION)
    log.info(
        "%d photos of %d identities on host %s (%d of %d); weights=%s embedder=%s device=%s",
        len(listing.photos),
        len({photo.identity for photo in listing.photos}),
        cluster.current_host,
        cluster.rank + 1,
        cluster.size,
        model.label,
        model.embedder,
        device,
    )
    fingerprint = embedding_fingerprint(settings, model.digests, PREPROCESSING_VERSION)
    previous = load_previous(env.channels.get(PREVIOUS_CHANNEL), fingerprint, EMBEDDING_DIMS[model.embedder])
    reused, to_compute = split_reusable(listing.photos, previous)
    stopping.check()
    log.info(
        "embeddings: %d reused from the previous run, %d photos to examine", len(reused), len(to_compute)
    )

    setup_seconds = 0.0
    outcomes: list[Accepted | Rejected] = list(reused)
    pipeline_times: dict[str, float] = {}
    loop_started = time.perf_counter()
    if to_compute:
        setup_started = time.perf_counter()
        encoder = FaceEncoder(settings, model, device)
        setup_seconds = time.perf_counter() - setup_started
        stopping.check()
        total = len(to_compute)

        def progress(done: int) -> None:
            if done == total or done % 25 == 0:
                log.info("progress: %d/%d photos processed", done, total)

        pipeline = PhotoPipeline(settings, encoder, on_progress=progress)
        loop_started = time.perf_counter()
        outcomes.extend(pipeline.run(to_compute))
        pipeline_times = pipeline.times.as_dict()
    loop_seconds = time.perf_counter() - loop_started
    computed = sum(isinstance(o, Accepted) for o in outcomes) - len(reused)
    share = HostShare(outcomes, listing.stray_files, computed, len(reused), len(listing.photos), loop_seconds)
    shares = gather_to_master(cluster, [share])
    stopping.check()
    if shares is None:
        log.info(
            "host %s: outcomes handed to %s, which writes the outputs", cluster.current_host, env.hosts[0]
        )
        return {}
    builder = EnrollmentBuilder(stray_files=sorted(f for part in shares for f in part.stray_files))
    for outcome in sorted(
        (o for part in shares for o in part.outcomes), key=lambda o: (o.photo.identity, o.photo.key)
    ):
        builder.add(outcome)
    enrollment = builder.finish(settings.min_images_per_identity)
    photos_total = sum(part.photos for part in shares)
    slowest_loop = max(part.loop_seconds for part in shares)

    run = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedder": model.embedder,
        "weights": model.label,
        "weights_sha256": model.sha256,
        "model_files": model.digests,
        "not_for_production": settings.not_for_production,
        "embedding_dim": EMBEDDING_DIMS[model.embedder],
        "preprocessing_version": PREPROCESSING_VERSION,
        "embedding_fingerprint": fingerprint,
        "device": str(device),
        "versions": library_versions(model.embedder),
    }
    metrics: dict[str, object] = {
        "format": METRICS_FORMAT,
        "version": METRICS_VERSION,
        "status": "succeeded" if enrollment.identities else "failed",
        "not_for_production": settings.not_for_production,
        "warning": NOT_FOR_PRODUCTION if settings.not_for_production else None,
        "images_total": enrollment.images_total,
        "images_accepted": enrollment.images_accepted,
        "images_rejected": len(enrollment.rejected),
        "rejections_by_reason": enrollment.rejections_by_reason,
        "identities": len(enrollment.identities),
        "identities_excluded": enrollment.excluded,
        "embedder": model.embedder,
        "weights": model.label,
        "weights_sha256": model.sha256,
        "model_files": model.digests,
        "embedding_dim": run["embedding_dim"],
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "images_per_second": round(photos_total / slowest_loop, 3) if slowest_loop else None,
        "embeddings_computed": sum(part.computed for part in shares),
        "embeddings_reused": sum(part.reused for part in shares),
        "hosts": cluster.size,
        "dataset_fingerprint": enrollment.dataset_fingerprint,
        "hyperparameters": settings.model_dump(mode="json"),
        "created_at": run["created_at"],
        "versions": run["versions"],
    }
    timings = {"model_setup": round(setup_seconds, 4), **pipeline_times}
    if not enrollment.identities:
        metrics["timings"] = {**timings, "total": round(time.perf_counter() - started, 4)}
        write_outputs(env.model_dir, render_reports(enrollment, metrics))
        raise JobFailure(_failure_summary(enrollment))
    evaluate_started = time.perf_counter()
    embeddings, labels, names, keys = enrollment.embedding_matrix()
    evaluation = evaluate(
        embeddings,
        labels,
        names,
        keys,
        settings.target_far,
        settings.accept_threshold,
        enrollment.rejections_by_identity(),
    )
    metrics["evaluation"] = evaluation.summary
    stopping.check()
    timings["evaluate"] = round(time.perf_counter() - evaluate_started, 4)
    render_started = time.perf_counter()
    files = render_enrollment(enrollment, settings.model_dump(mode="json"), run, evaluation.summary)
    timings["write"] = round(time.perf_counter() - render_started, 4)
    report_started = time.perf_counter()
    metrics["timings"] = {**timings, "total": round(time.perf_counter() - started, 4)}
    report = render_report(metrics, evaluation, embeddings, labels, names, enrollment.rejected)
    timings["report"] = round(time.perf_counter() - report_started, 4)
    metrics["timings"] = {**timings, "total": round(time.perf_counter() - started, 4)}
    write_outputs(
        env.model_dir, {**files, REPORT_HTML: report.encode(), **render_reports(enrollment, metrics)}
    )
    summary = evaluation.summary
    log.info(
        "enrolled %d identities from %d of %d photos (%s photos/s); %d rejected",
        len(enrollment.identities),
        enrollment.images_accepted,
        enrollment.images_total,
        metrics["images_per_second"],
        len(enrollment.rejected),
    )
    log.info(
        "evaluation: identification accuracy %s, threshold %s (%s), FAR %s, FRR %s, %d suspected mislabel(s)",
        summary["identification_accuracy"],
        summary["threshold"],
        summary["threshold_source"],
        summary["false_accept_rate"],
        summary["false_reject_rate"],
        summary["suspected_mislabels_total"],
    )
    return metrics
