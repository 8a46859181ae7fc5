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

# Files the job writes into model/ (and so into model.tar.gz).
ENROLLMENT_CSV = "final_mean_embeddings.csv"
RULES_PY = "rules.py"
EMBEDDINGS_PKL = "saved_embeddings.pkl"
REJECTED_CSV = "rejected.csv"
METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"

SKIPPED_PREFIXES = ("_", ".")


def is_skipped(name: str) -> bool:
    """True for a folder or file name the job ignores in a channel: one starting with `_` or `.`."""
    return name.startswith(SKIPPED_PREFIXES)
