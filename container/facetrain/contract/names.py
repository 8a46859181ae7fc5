"""Names the training job and the Lambdas must agree on: input channels, output files, skipped names.

Standard-library only, like the rest of facetrain.contract, which the Lambdas' layer ships.
"""

from __future__ import annotations

# Input channels (input/data/<channel>/ in the container, ChannelName in CreateTrainingJob).
IMAGES_CHANNEL = "face_imgs"
CONFIG_CHANNEL = "cfg"
WEIGHTS_CHANNEL = "weights"
PREVIOUS_CHANNEL = "previous"  # the published run's saved_embeddings.pkl, for incremental retraining
KNOWN_CHANNELS = (IMAGES_CHANNEL, CONFIG_CHANNEL, WEIGHTS_CHANNEL, PREVIOUS_CHANNEL)

# Hyperparameters that are not settings, one per ManifestFile channel: the key prefix of that manifest's
# "prefix" entry (e.g. `face_imgs/`, `config/`, `results/runs/<run id>/`). start puts the prefix of each
# channel it gives in CreateTrainingJob so that the job finds the channel's files whether SageMaker wrote
# each manifest entry at its suffix or under its full key (facetrain.channel_layout); the job takes them
# out before it reads the settings. One plain string each (an S3 key prefix: at most 1024 bytes, within
# SageMaker's 2500 characters per value), never decoded or run. Hyperparameters rather than the request's
# Environment: moto keeps and returns HyperParameters (the offline backend writes them to
# hyperparameters.json) but drops Environment.
MANIFEST_PREFIX_HYPERPARAMETERS = {
    IMAGES_CHANNEL: "facetrain_images_prefix",
    CONFIG_CHANNEL: "facetrain_cfg_prefix",
    PREVIOUS_CHANNEL: "facetrain_previous_prefix",
}
IMAGES_PREFIX_HYPERPARAMETER = MANIFEST_PREFIX_HYPERPARAMETERS[IMAGES_CHANNEL]
# The run's id (start's RunRequest.run_id), which the job writes into metrics.json and report.html; no
# setting either: taken out before the settings are read, so it never enters a settings or embedding
# fingerprint (a run with another id still reuses the previous run's embeddings). A job started without it
# (an older request, `make job`) shows no run id.
RUN_ID_HYPERPARAMETER = "facetrain_run_id"
# Every hyperparameter start adds that is not a setting (facetrain.job.resolve_settings leaves them out).
NOT_SETTING_HYPERPARAMETERS = frozenset({*MANIFEST_PREFIX_HYPERPARAMETERS.values(), RUN_ID_HYPERPARAMETER})

# Files the job writes into model/ (and so into model.tar.gz).
ENROLLMENT_CSV = "final_mean_embeddings.csv"
RULES_PY = "rules.py"
EMBEDDINGS_PKL = "saved_embeddings.pkl"
REJECTED_CSV = "rejected.csv"
METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"

SKIPPED_PREFIXES = ("_", ".")

# Known strangers: photos of people who must never be accepted (visitors, public face sets), in this folder
# at the top of the images prefix (face_imgs/_strangers/..., any depth below it). It is the one name starting
# with `_` that is not skipped at the top of face_imgs: never an identity, its photos are extra non-mated
# searches for the evaluation (validate lists them in the manifest; facetrain.photos.list_channel lists them
# apart). Inside it, names starting with `_` or `.` are skipped as in an identity's folder.
STRANGERS_FOLDER = "_strangers"


def is_skipped(name: str) -> bool:
    """True for a folder or file name the job ignores in a channel: one starting with `_` or `.`."""
    return name.startswith(SKIPPED_PREFIXES)


def is_strangers_key(relative: str) -> bool:
    """True for a key of the images channel (relative to it) in the known strangers' folder:
    `_strangers/<photo>` or `_strangers/<folder>/.../<photo>`."""
    return relative.startswith(STRANGERS_FOLDER + "/")
