"""What the job's stages hand each other: its inputs, a host's embeddings, every host's enrollment.

Apart from job.py so that the modules that report on a run (job_metrics) read them without importing the
job itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from .contract.hyperparameters import Hyperparameters
from .distributed import Cluster
from .enrollment import Enrollment
from .inference.model_files import ModelChoice
from .photos import ChannelListing, SkippedFile
from .pipeline import Accepted, Rejected


@dataclass(frozen=True)
class JobInputs:
    """What the job works with: settings, this host's place in the cluster and photos, device, model."""

    settings: Hyperparameters
    cluster: Cluster
    listing: ChannelListing
    device: str  # "cpu" or "cuda"
    model: ModelChoice
    run_id: str | None = None  # RUN_ID_HYPERPARAMETER; None for a job started without it


@dataclass(frozen=True)
class HostEmbeddings:
    """This host's outcomes: reused from the previous run or computed now."""

    outcomes: list[Accepted | Rejected | SkippedFile]
    reused: int
    fingerprint: str  # of what makes an embedding (settings, model files, preprocessing)
    loop_seconds: float
    examined: int  # photos this host's pipeline examined now: neither reused nor resumed from a checkpoint


@dataclass(frozen=True)
class Enrolled:
    """Every host's outcomes, enrolled (on the master)."""

    enrollment: Enrollment
    photos_total: int
    slowest_loop: float  # the slowest photo loop among the hosts that examined photos (0.0: none did)
    examined: int  # photos examined now, on every host (images_per_second is over these)
    computed: int
    reused: int
