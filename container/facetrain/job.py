"""The enrollment job: settings → photos → faces → embeddings → files in model/."""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Mapping

from . import stopping
from .channel_layout import channel_dir, manifest_prefix
from .checkpoints import checkpointing, load_checkpoints, resume
from .contract.config_files import read_config_dir
from .contract.counting import counted
from .contract.hyperparameters import EMBEDDING_DIMS, Hyperparameters, parse_settings
from .contract.identity_names import identity_name_problems
from .contract.names import (
    METRICS_JSON,
    NOT_SETTING_HYPERPARAMETERS,
    PREVIOUS_CHANNEL,
    REJECTED_CSV,
    REPORT_HTML,
    RUN_ID_HYPERPARAMETER,
    STRANGERS_FOLDER,
)
from .distributed import Cluster, HostExchange, HostShare, joined_hosts
from .enrollment import Enrollment, EnrollmentBuilder, LeftOut
from .evaluation import evaluate
from .inference.devices import choose_device
from .inference.runtimes import open_encoder, resolve_models
from .job_metrics import PREPROCESSING_VERSION, metrics_document, run_facts
from .job_state import Enrolled, HostEmbeddings, JobInputs
from .outputs import NOT_FOR_PRODUCTION, render_enrollment, render_reports, write_outputs
from .photos import SkippedFile, list_channel
from .pipeline import Accepted, PhotoPipeline, Rejected
from .reuse import embedding_fingerprint, load_previous, split_reusable
from .sagemaker_env import CONFIG_CHANNEL, IMAGES_CHANNEL, WEIGHTS_CHANNEL, TrainingEnvironment
from .timing import StageTimer, seconds_since_process_start

log = logging.getLogger("facetrain")


class JobFailure(Exception):
    """The job cannot produce a useful enrollment; the message is what the operator reads first."""


def resolve_settings(env: TrainingEnvironment) -> Hyperparameters:
    """cfg channel files first (in either layout, channel_layout.py), hyperparameters.json last
    (hyperparameters win); what start adds that is no setting (NOT_SETTING_HYPERPARAMETERS: the manifest
    prefixes, the run id) is left out, so it never enters a settings or embedding fingerprint."""
    layers: list[tuple[str, dict[str, object]]] = []
    config_dir = channel_dir(env, CONFIG_CHANNEL)
    if config_dir is not None:
        layers.extend(read_config_dir(config_dir))
    given = {
        key: value for key, value in env.hyperparameters.items() if key not in NOT_SETTING_HYPERPARAMETERS
    }
    layers.append(("hyperparameters", given))
    return parse_settings(layers)


def refuse_identity_names(identities: set[str], outcome: str = "nothing was embedded") -> None:
    """JobFailure naming every identity folder whose name validate refuses too (contract.identity_names):
    a formula, invisible characters, mixed scripts, names that read alike. The job may run without
    validate (`make job`, the SDK launcher)."""
    if problems := identity_name_problems(identities, lambda shown: f"{IMAGES_CHANNEL}/{shown}/"):
        raise JobFailure(
            f"{counted(len(problems), 'identity folder name problem')}, {outcome}: " + " | ".join(problems)
        )


def _failure_summary(enrollment: Enrollment) -> str:
    reasons = ", ".join(f"{reason}: {count}" for reason, count in enrollment.rejections_by_reason.items())
    examples = "; ".join(f"{row.photo}: {row.message}" for row in enrollment.rejected[:3])
    return (
        f"No identity could be enrolled: {counted(enrollment.images_total, 'file')}, "
        f"{enrollment.images_accepted} usable ({reasons}). See rejected.csv. First problems: {examples}"
    )


def _rejections_in_brief(enrollment: Enrollment) -> str:
    """The rejections as the log shows them at INFO: counts by reason, and where the photos are named."""
    if not enrollment.rejected:
        return ""
    reasons = ", ".join(f"{reason}: {count}" for reason, count in enrollment.rejections_by_reason.items())
    return f" ({reasons}; each named in {REJECTED_CSV})"


def log_left_out(left_out: list[LeftOut]) -> None:
    """The identities left out, in the log: how many and where they are named at WARNING (the job's log
    group is outside the stack's retention: train.py), each one with its photos' reasons at DEBUG."""
    if not left_out:
        return
    log.warning(
        "%s left out, not enrolled (fewer usable photos than min_images_per_identity): metrics.json "
        "identities_excluded and report.html's summary name them with their photos' reasons",
        counted(len(left_out), "identity", "identities"),
    )
    for left in left_out:
        log.debug("left out %s: %s", left.identity, left.photos_in_brief)


def left_out_failure(left_out: list[LeftOut]) -> str:
    """The failure reason of a run that require_all_identities=true stops: how many, where they are named,
    and the fix. It names no one: SageMaker keeps the failure file as the job's FailureReason for as long
    as the job exists, and it cannot be deleted (README "Forget a person"), whereas identity names must
    always be deletable; the outputs it points at are the run's own files, which a forget reaches."""
    return (
        f"{counted(len(left_out), 'identity', 'identities')} could not be enrolled (fewer usable photos than "
        "min_images_per_identity) and require_all_identities=true fails the run: no enrollment was written, "
        f"the published results are unchanged. The run's {METRICS_JSON} (identities_excluded), "
        f"{REPORT_HTML}'s run summary and {REJECTED_CSV} name them with each photo's reason (in the job's "
        "model.tar.gz, on AWS under the run's folder runs/<run id>/training/; facetrain run copies them to "
        "OUT_DIR/runs/<run id>/ and prints them on its last lines); they are not named here, because a "
        "training job's failure reason cannot be deleted. Give each of them usable photos (one face, clearly "
        "visible) and run again, or set require_all_identities=false to publish the others and name the "
        "left-out ones."
    )


def _with_outcome(metrics: dict[str, object], refused: bool) -> dict[str, object]:
    """metrics.json of a run that require_all_identities refused says so: status failed."""
    return {**metrics, "status": "failed"} if refused else metrics


def job_run_id(hyperparameters: Mapping[str, object]) -> str | None:
    """The run id start passed (RUN_ID_HYPERPARAMETER), for metrics.json and report.html; None when the
    request had none (an older start Lambda, `make job`): the report then shows no run id."""
    value = hyperparameters.get(RUN_ID_HYPERPARAMETER)
    return value if isinstance(value, str) and value else None


def prepare_inputs(env: TrainingEnvironment) -> JobInputs:
    """Settings, the photos channel (this host's shard), device and model; JobFailure without photos."""
    settings = resolve_settings(env)
    stopping.check()
    images_dir = env.channels.get(IMAGES_CHANNEL)
    if images_dir is None:
        raise JobFailure(
            f"No '{IMAGES_CHANNEL}' channel: the job needs its photos as input channel '{IMAGES_CHANNEL}' "
            f"(<identity>/<photo> files). Channels given: {', '.join(sorted(env.channels)) or 'none'}."
        )
    cluster = Cluster(hosts=env.hosts, current_host=env.current_host)
    # With several hosts: this host's shard (ShardedByS3Key), in either layout (channel_layout.py).
    listing = list_channel(images_dir, manifest_prefix(env.hyperparameters))
    refuse_identity_names({photo.identity for photo in listing.photos})
    if not listing.photos and not listing.misnamed and cluster.size == 1:
        raise JobFailure(
            f"The '{IMAGES_CHANNEL}' channel holds no photo in <identity>/<photo> folders"
            + (
                f" (only top-level files: {', '.join(listing.stray_files[:5])})"
                if listing.stray_files
                else ""
            )
            + (
                f" (only {counted(len(listing.strangers), 'known stranger photo')} in {STRANGERS_FOLDER}/, "
                "which are never enrolled)"
                if listing.strangers
                else ""
            )
            + (
                f" (only {counted(len(listing.skipped), 'file')} known not to be photos, such as Thumbs.db, "
                "text or videos, which are skipped)"
                if listing.skipped
                else ""
            )
            + ". Put each person's photos in a folder named after them."
        )
    # The runtime's files first (a runtime that is not installed is refused naming the fix), then the
    # device: an unusable paid-for GPU is refused, by the facts of the runtime that will run the networks.
    model = resolve_models(settings, env.channels.get(WEIGHTS_CHANNEL))
    device = choose_device(settings.device, env.instance_type, settings.runtime)
    if settings.not_for_production:
        log.warning("*" * 20 + " %s " + "*" * 20, NOT_FOR_PRODUCTION)
    log.info(
        "%s of %s and %s on host %s (%d of %d); weights=%s embedder=%s runtime=%s device=%s",
        counted(len(listing.photos), "photo"),
        counted(len({photo.identity for photo in listing.photos}), "identity", "identities"),
        counted(len(listing.strangers), "known stranger photo"),
        cluster.current_host,
        cluster.rank + 1,
        cluster.size,
        model.label,
        model.embedder,
        settings.runtime,
        device,
    )
    if listing.skipped:  # named in rejected.csv (not_a_photo); their names hold the person's: never here
        log.info(
            "%s skipped on host %s: not photos (contract.photo_files), each named in %s",
            counted(len(listing.skipped), "file"),
            cluster.current_host,
            REJECTED_CSV,
        )
    return JobInputs(settings, cluster, listing, device, model, job_run_id(env.hyperparameters))


def embed_photos(env: TrainingEnvironment, inputs: JobInputs, timer: StageTimer) -> HostEmbeddings:
    """Reuse the previous run's embeddings where they still hold, compute the others (model set-up and
    the photo pipeline's stages go to `timer`)."""
    settings, model = inputs.settings, inputs.model
    fingerprint = embedding_fingerprint(settings, model.digests, PREPROCESSING_VERSION)
    previous_dir = channel_dir(env, PREVIOUS_CHANNEL)  # in either layout (channel_layout.py)
    previous = load_previous(previous_dir, fingerprint, EMBEDDING_DIMS[model.embedder])
    # The known strangers' photos are embedded, reused and checkpointed like the others (by sha256);
    # their outcomes carry their PhotoRef (identity `_strangers`), which keeps them out of the enrollment.
    photos = [*inputs.listing.photos, *inputs.listing.strangers]
    reused, to_compute = split_reusable(photos, previous)
    checkpointed = load_checkpoints(env.checkpoint_dir, fingerprint, EMBEDDING_DIMS[model.embedder])
    resumed, to_compute = resume(to_compute, checkpointed)  # a restarted (Spot) job: its saved outcomes
    resumed_embeddings = sum(isinstance(o, Accepted) for o in resumed)
    if checkpointed:
        log.info(
            "checkpoint: %s resumed (%s, %s)",
            counted(len(resumed), "photo outcome"),
            counted(resumed_embeddings, "embedding"),
            counted(len(resumed) - resumed_embeddings, "rejection"),
        )
    stopping.check()
    log.info(
        "embeddings: %d reused from the previous run, %d photos to examine", len(reused), len(to_compute)
    )
    # Files whose names are not UTF-8 are rejected unread (photos.list_channel), never checkpointed; files
    # that are not photos travel to the master as they are (SkippedFile), never counted among photos.
    misnamed = [Rejected(photo, None, rejection) for photo, rejection in inputs.listing.misnamed]
    outcomes: list[Accepted | Rejected | SkippedFile] = [*reused, *resumed, *misnamed]
    outcomes.extend(inputs.listing.skipped)
    setup_seconds, pipeline_times = 0.0, {}
    loop_started = time.perf_counter()
    if to_compute:
        setup_started = time.perf_counter()
        encoder = open_encoder(settings, model, inputs.device)
        setup_seconds = time.perf_counter() - setup_started
        stopping.check()
        total = len(to_compute)

        def progress(done: int) -> None:
            if done == 1:
                if (started := seconds_since_process_start()) is not None:
                    log.info("first photo examined %.2f s after the process started", started)
                if inputs.cluster.rank == 0:  # the master writes the report: its libraries load meanwhile
                    import_in_background("facetrain.report")
            if done == total or done % 25 == 0:
                log.info("progress: %d/%d photos processed", done, total)

        pipeline = PhotoPipeline(settings, encoder, on_progress=progress)
        loop_started = time.perf_counter()
        with checkpointing(env.checkpoint_dir, env.current_host, fingerprint) as saved:
            for outcome in pipeline.run(to_compute):  # a stop (SIGTERM) flushes the checkpoint first
                outcomes.append(outcome)
                if saved is not None:
                    saved.add(outcome)
        pipeline_times = pipeline.times.as_dict()
    loop_seconds = time.perf_counter() - loop_started
    timer.record("model_setup", setup_seconds)
    timer.seconds.update(pipeline_times)
    return HostEmbeddings(
        outcomes, len(reused) + resumed_embeddings, fingerprint, loop_seconds, len(to_compute)
    )


def enroll(shares: list[HostShare], settings: Hyperparameters) -> Enrolled:
    """Every host's outcomes in (identity, photo) order, enrolled; JobFailure when identity names from
    several hosts' shards read alike (each host checked its own at its start)."""
    if len(shares) > 1:
        refuse_identity_names(
            {o.photo.identity for part in shares for o in part.outcomes if isinstance(o, Accepted)}
            - {STRANGERS_FOLDER},
            outcome="across the hosts' shards; no output was written",
        )
    builder = EnrollmentBuilder(stray_files=sorted(f for part in shares for f in part.stray_files))
    for outcome in sorted(
        (o for part in shares for o in part.outcomes), key=lambda o: (o.photo.identity, o.photo.key)
    ):
        builder.add(outcome)
    return Enrolled(
        enrollment=builder.finish(settings.min_images_per_identity),
        photos_total=sum(part.photos for part in shares),
        slowest_loop=max((part.loop_seconds for part in shares if part.examined), default=0.0),
        examined=sum(part.examined for part in shares),
        computed=sum(part.computed for part in shares),
        reused=sum(part.reused for part in shares),
    )


def import_in_background(module: str) -> threading.Thread:
    """Import `module` on a thread of its own; a later import of it waits for that one (Python's per-module
    import lock) and raises what it raised. Why: the report's matplotlib and jinja2 take 0.3-0.6 s to
    import (measured on 2 cores, `python -X importtime`), and during the photo loop the cores mostly run
    ONNX Runtime and Pillow, which release the GIL, so the import costs the loop little and the job's end
    nothing (started after the first photo, it never delays the start). Not a daemon: the interpreter never
    exits in the middle of an import."""

    def load() -> None:
        with contextlib.suppress(Exception):  # the job's own import of it raises the same error, reported
            importlib.import_module(module)

    thread = threading.Thread(target=load, name=f"import-{module}", daemon=False)
    thread.start()
    return thread


def run_job(env: TrainingEnvironment) -> dict[str, object]:
    """Run the whole job and return its metrics; raise JobFailure when no enrollment can be made.
    Stages: inputs → hosts met (several hosts: GatherError within the rendezvous bound when one never
    comes, distributed.py) → embeddings (this host) → gather (master) → enroll → evaluate → files, report."""
    inputs = prepare_inputs(env)
    with joined_hosts(inputs.cluster) as hosts:
        return _run_with_hosts(env, inputs, hosts)


def _run_with_hosts(env: TrainingEnvironment, inputs: JobInputs, hosts: HostExchange) -> dict[str, object]:
    """run_job once every host is there: embed this host's share, gather, and (master) the rest."""
    timer = StageTimer()
    embedded = embed_photos(env, inputs, timer)
    computed = sum(isinstance(o, Accepted) for o in embedded.outcomes) - embedded.reused
    share = HostShare(
        embedded.outcomes,
        inputs.listing.stray_files,
        computed,
        embedded.reused,
        len(inputs.listing.photos) + len(inputs.listing.strangers),
        embedded.loop_seconds,
        embedded.examined,
    )
    shares = hosts.gather_to_master([share])
    stopping.check()
    if shares is None:
        log.info(
            "host %s: outcomes handed to %s, which writes the outputs",
            inputs.cluster.current_host,
            env.hosts[0],
        )
        return {}
    enrolled = enroll(shares, inputs.settings)
    enrollment = enrolled.enrollment
    for row in enrollment.rejected_rows:  # photo keys name the person: never at INFO
        log.debug("rejected %s (%s): %s", row.photo, row.reason, row.message)
    log_left_out(enrollment.left_out)
    run = run_facts(inputs, embedded.fingerprint)
    if not enrollment.identities:
        metrics = metrics_document(inputs, enrolled, run, timer.as_dict(), None)
        write_outputs(env.model_dir, render_reports(enrollment, metrics))
        raise JobFailure(_failure_summary(enrollment))
    with timer.stage("evaluate"):
        embeddings, labels, names, keys = enrollment.embedding_matrix()
        evaluation = evaluate(
            embeddings,
            labels,
            names,
            keys,
            inputs.settings.target_far,
            inputs.settings.fallback_threshold,
            enrollment.rejections_by_identity(),
            target_fpir=inputs.settings.target_fpir,
            accept_threshold=inputs.settings.accept_threshold,
            strangers=enrollment.strangers.embedding_matrix(embeddings.shape[1]),
        )
        stopping.check()
    # require_all_identities=true: an identity left out fails the run; its evidence is written, no enrollment.
    refused = inputs.settings.require_all_identities and bool(enrollment.left_out)
    with timer.stage("write"):
        files = (
            {}
            if refused
            else render_enrollment(
                enrollment, inputs.settings.model_dump(mode="json"), run, evaluation.summary
            )
        )
    with timer.stage("report"):  # the report shows the timings up to here
        from .report import render_report  # matplotlib and jinja2: only a master with an enrollment

        metrics = metrics_document(inputs, enrolled, run, timer.as_dict(), evaluation.summary)
        report = render_report(
            _with_outcome(metrics, refused), evaluation, embeddings, labels, names, enrollment.rejected_rows
        )
    metrics = _with_outcome(
        metrics_document(inputs, enrolled, run, timer.as_dict(), evaluation.summary), refused
    )
    write_outputs(
        env.model_dir, {**files, REPORT_HTML: report.encode(), **render_reports(enrollment, metrics)}
    )
    if refused:
        raise JobFailure(left_out_failure(enrollment.left_out))
    summary = evaluation.summary
    log.info(
        "enrolled %d identities from %d of %d photos (%d examined now%s); %d rejected%s",
        len(enrollment.identities),
        enrollment.images_accepted,
        enrollment.images_total,
        enrolled.examined,
        "" if metrics["images_per_second"] is None else f", {metrics['images_per_second']} photos/s",
        len(enrollment.rejected),
        _rejections_in_brief(enrollment),
    )
    open_set = summary["open_set"]  # counts and bounds only: no name, no embedding
    log.info(
        "evaluation: identification accuracy %s, threshold %s (%s), FPIR %s of %s (95 %% <= %s), "
        "FNIR %s of %s (95 %% <= %s), %s",
        summary["identification_accuracy"],
        summary["threshold"],
        summary["threshold_source"],
        open_set["fpir"]["errors"],
        open_set["fpir"]["trials"],
        open_set["fpir"]["upper_95"],
        open_set["fnir"]["errors"],
        open_set["fnir"]["trials"],
        open_set["fnir"]["upper_95"],
        counted(summary["suspected_mislabels_total"], "suspected mislabel"),
    )
    return metrics
