"""The one schema of the training job's settings.

SageMaker passes hyperparameters as strings; the `cfg` channel passes them as data. Both are typed and
validated here, by the training container and by the validate Lambda alike. This module must stay
importable without torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .shorten import shorten

FACENET = "facenet"
DLIB_RESNET = "dlib-resnet"
NAMED_WEIGHTS = ("vggface2", "casia-webface")
RANDOM_WEIGHTS = "none"
DLIB_WEIGHTS = "dlib-resnet-v1"  # dlib_face_recognition_resnet_model_v1.dat + the 5-point landmark model
# What runs the networks (the `runtime` setting): ONNX Runtime (the job's default; the image holds only it)
# or torch (facenet-pytorch itself: the reference path).
ONNX_RUNTIME = "onnx"
TORCH_RUNTIME = "torch"
_WEIGHTS_PATH = re.compile(r"^[A-Za-z0-9_./-]+\.(pt|pth)$")

# What `weights` is when not given, per embedder.
DEFAULT_WEIGHTS = {FACENET: "vggface2", DLIB_RESNET: DLIB_WEIGHTS}
# The fallback accept threshold (distance between unit embeddings), used only when an enrollment has no
# non-mated search at all (a single identity and no known strangers); every other run derives its own
# (README, "Evaluation, threshold and report"). dlib-resnet: the data-bound rule applied to all of
# ../shared/data enrolled as one gallery (8 people, 28 photos: nearest non-mated distance 0.3950, largest
# genuine 0.3016, so 0.3482), rounded down to 0.34; dlib's documented 0.6 between raw descriptors (0.39
# between unit ones) is a pair-verification point, and two of those 8 people are 0.395 apart.
# facenet: NOT measured (the vggface2 weights are not where this was derived); the old 1.1 tightened by
# the same factor as dlib-resnet's (0.34 / 0.39), provisional until re-derived the same way.
DEFAULT_ACCEPT_THRESHOLD = {FACENET: 0.96, DLIB_RESNET: 0.34}
DEFAULT_TARGET_FPIR = 0.001
# Seconds one decode of one photo may take (decode_budget_seconds). Real photos decode in well under a
# second (a 64-megapixel progressive JPEG in 0.5 s, full size, on the development machine's 2 shared
# cores), so 10 s leaves room for a slow instance and busy decode threads, and stops a decode-time bomb.
DEFAULT_DECODE_BUDGET_SECONDS = 10.0
EMBEDDING_DIMS = {FACENET: 512, DLIB_RESNET: 128}
EMBEDDER_DESCRIPTIONS = {
    FACENET: "L2-normalised InceptionResnetV1 embeddings (facenet-pytorch); identity means re-normalised",
    DLIB_RESNET: "L2-normalised dlib ResNet face descriptors of 5-point-aligned 150 px chips; identity "
    "means re-normalised",
}

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]


def _holds_numbers(annotation: object) -> bool:
    """Whether a field's type is, or holds, an int or a float (bool is neither here)."""
    return annotation in (int, float) or any(_holds_numbers(arg) for arg in get_args(annotation))


def _holds_boolean(value: object) -> bool:
    """Whether a value is a bool, or a list/tuple holding one."""
    if isinstance(value, (list, tuple)):
        return any(_holds_boolean(item) for item in value)
    return isinstance(value, bool)


class Hyperparameters(BaseModel):
    """Settings of one enrollment run. Every field has a default; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedder: Literal["facenet", "dlib-resnet"] = Field(
        FACENET,
        description="The face embedder: 'facenet' (InceptionResnetV1, 512-D, weights from `weights`) or "
        "'dlib-resnet' (dlib's ResNet, 128-D, faces aligned with its 5-point landmarks; model files from "
        "the face_recognition_models package or the weights channel).",
    )
    weights: str = Field(
        "vggface2",
        description="The embedder's trained weights. facenet: 'vggface2' (default), 'casia-webface', a .pt "
        "file (in the weights channel or an absolute path) or 'none' (random init from `seed`: tests only, "
        "NOT for production). dlib-resnet: 'dlib-resnet-v1' (default, the only one).",
    )
    image_size: int = Field(
        160, ge=64, le=512, description="facenet: side in pixels of the face crop fed to the embedder."
    )
    margin: int = Field(
        0, ge=0, le=100, description="facenet: margin around the detected box, in pixels of the crop."
    )
    jitter: int = Field(
        0,
        ge=0,
        le=100,
        description="dlib-resnet: jittered copies of each face averaged into its descriptor (0: none; "
        "slower by about the count, slightly more robust).",
    )
    min_face_size: int = Field(
        20, ge=12, le=1000, description="Smallest face MTCNN searches for, in pixels of the detection copy."
    )
    detection_thresholds: tuple[Probability, Probability, Probability] = Field(
        (0.6, 0.7, 0.7), description="MTCNN P-Net, R-Net and O-Net thresholds, each in (0, 1)."
    )
    detection_max_side: int = Field(
        512,
        ge=160,
        le=8192,
        description="Faces are detected on a copy whose longer side is at most this many pixels; "
        "the crop is then taken from the photo at full enough resolution.",
    )
    face_selection: Literal["largest", "most_probable", "reject"] = Field(
        "largest",
        description="What to do with a photo showing several faces: keep the largest, keep the most "
        "probable, or reject the photo.",
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Faces embedded per forward pass.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when available.")
    runtime: Literal["onnx", "torch"] = Field(
        ONNX_RUNTIME,
        description="What runs the networks (MTCNN's detector, and facenet's InceptionResnetV1): 'onnx' "
        "(default: ONNX Runtime on facenet-pytorch's own networks exported to ONNX, CPU or CUDA 12; the "
        "training image holds nothing else) or 'torch' (facenet-pytorch itself: the reference path, where "
        "torch is installed). Their embeddings agree to about 1e-7 but are not bit-equal, so switching "
        "recomputes every embedding (the embedding fingerprint includes the runtime).",
    )
    max_image_pixels: int = Field(
        89_478_485,
        ge=10_000,
        le=1_000_000_000,
        description="Photos with more pixels are rejected before decoding (decompression-bomb guard).",
    )
    decode_budget_seconds: float = Field(
        DEFAULT_DECODE_BUDGET_SECONDS,
        gt=0.0,
        le=600.0,
        description="Seconds one decode of a photo may take; a photo whose decoding runs longer is "
        "rejected (decode_budget): a guard against decode-time bombs such as a progressive JPEG whose "
        "scans are repeated.",
    )
    min_images_per_identity: int = Field(
        1, ge=1, le=10_000, description="Identities with fewer usable photos are excluded and reported."
    )
    require_all_identities: bool = Field(
        False,
        description="Whether an identity left out (fewer usable photos than min_images_per_identity, e.g. "
        "a new hire whose photos show no face) fails the run. false (default): the others are enrolled "
        "and published, and the left-out ones are named with their photos' reasons in the notification, "
        "the report's summary, metrics.json (identities_excluded) and the offline run's last lines: one "
        "person's unusable photos do not hold back everyone else's changes, and nobody is left out in "
        "silence. true: nothing is published and the failure counts them and gives the fix, naming no one "
        "(a training job's failure reason cannot be deleted; the run's report names them); for a gallery "
        "that must hold everyone (e.g. access control).",
    )
    accept_threshold: Annotated[float, Field(gt=0.0, le=2.0)] | None = Field(
        None,
        description="An explicit accept threshold (Euclidean distance between unit embeddings), published "
        "as given (threshold_source 'configured'; a warning when the enrollment's own searches say it is "
        "looser than target_fpir allows). Left out: the threshold is derived from the enrollment's own "
        "searches at target_fpir.",
    )
    target_fpir: float = Field(
        DEFAULT_TARGET_FPIR,
        gt=0.0,
        le=0.1,
        description="Target false-positive identification rate: the share of searches by people not "
        "enrolled that may return someone. The threshold is calibrated at it when the enrollment has at "
        "least 1/target_fpir non-mated searches (its photos with their own identity left out, plus known "
        "strangers) and 10 mated ones; else it is set below the nearest non-mated distance (data-bound).",
    )
    target_far: float = Field(
        0.001,
        gt=0.0,
        le=0.1,
        description="Deprecated as a calibration target (use target_fpir): the per-pair false-accept rate "
        "reported beside the per-pair rate measured at the published threshold; it no longer sets it.",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for the random init of weights=none.")

    @model_validator(mode="before")
    @classmethod
    def _embedder_defaults(cls, data: object) -> object:
        """`weights` left out takes the chosen embedder's default (accept_threshold stays None: calibrate)."""
        if isinstance(data, Mapping):
            embedder = data.get("embedder", FACENET)
            if embedder in DEFAULT_WEIGHTS:
                data = {"weights": DEFAULT_WEIGHTS[embedder], **data}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: object, info: ValidationInfo) -> object:
        """A boolean is no number: pydantic's lax mode takes true as 1 (batch_size=true would embed one face
        per pass), and YAML 1.1 reads yes/no/on/off as booleans too. Every numeric setting refuses one, from
        whichever layer it comes (hyperparameters, constants.py, JSON, YAML)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _holds_numbers(field.annotation) and _holds_boolean(value):
            raise PydanticCustomError(
                "boolean_for_number",
                "must be a number, not a boolean (true/false, True/False; YAML also reads yes/no/on/off "
                "as booleans)",
            )
        return value

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        if value in (*NAMED_WEIGHTS, RANDOM_WEIGHTS, DLIB_WEIGHTS) or _WEIGHTS_PATH.fullmatch(value):
            if ".." in value.split("/"):
                raise ValueError("a weights path must not contain '..'")
            return value
        raise ValueError(
            f"must be one of {', '.join(repr(w) for w in (*NAMED_WEIGHTS, RANDOM_WEIGHTS, DLIB_WEIGHTS))} "
            "or the path of a .pt file"
        )

    @model_validator(mode="after")
    def _weights_fit_embedder(self) -> Hyperparameters:
        if self.embedder == DLIB_RESNET and self.weights != DLIB_WEIGHTS:
            raise ValueError(
                f"weights={self.weights!r} is for embedder=facenet; embedder=dlib-resnet uses "
                f"weights={DLIB_WEIGHTS!r} (leave weights out), or set embedder=facenet"
            )
        if self.embedder == FACENET and self.weights == DLIB_WEIGHTS:
            raise ValueError(f"weights={DLIB_WEIGHTS!r} needs embedder=dlib-resnet")
        if self.embedder == FACENET and self.jitter:
            raise ValueError("jitter applies to embedder=dlib-resnet only; leave it out for facenet")
        return self

    @property
    def fallback_threshold(self) -> float:
        """The embedder's fallback accept threshold, for an enrollment with no non-mated search."""
        return DEFAULT_ACCEPT_THRESHOLD[self.embedder]

    @property
    def not_for_production(self) -> bool:
        """True when the embeddings come from random weights."""
        return self.weights == RANDOM_WEIGHTS


VALID_KEYS: tuple[str, ...] = tuple(Hyperparameters.model_fields)


class SettingsError(ValueError):
    """Invalid hyperparameters or config; the message lists every problem and the valid keys."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "Invalid settings: " + "; ".join(problems) + f". Valid keys: {', '.join(VALID_KEYS)}."
        )


# CreateTrainingJob's limits on HyperParameters (SageMaker API reference): at most 100 keys, each key at
# most 256 characters, each value at most 2500.
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500
MAX_VALUE_DEPTH = 20  # settings are scalars or short lists: 20 levels is far more than any needs


def decode_sagemaker_value(raw: object) -> object:
    """Decode a hyperparameter as the SageMaker training toolkit does: JSON if it parses, else the string.

    Raises ValueError for a value nested too deeply to decode (json's recursion limit)."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_VALUE_DEPTH} levels deep") from None
    except ValueError:
        return raw


def nested_deeper_than(value: object, limit: int = MAX_VALUE_DEPTH) -> bool:
    """Whether lists/tuples/dicts nest deeper than `limit` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def sagemaker_limit_problems(values: Mapping[str, object]) -> list[str]:
    """What CreateTrainingJob would refuse in these hyperparameters once encoded as strings (empty when
    nothing): too many keys, a key or a value too long."""
    problems = []
    if len(values) > MAX_HYPERPARAMETERS:
        problems.append(f"{len(values)} hyperparameters; SageMaker accepts at most {MAX_HYPERPARAMETERS}")
    for key, value in values.items():
        if len(key) > MAX_HYPERPARAMETER_KEY:
            problems.append(
                f"hyperparameter name {shorten(key)} is {len(key)} characters; SageMaker accepts at most "
                f"{MAX_HYPERPARAMETER_KEY}"
            )
        try:
            length = len(value if isinstance(value, str) else json.dumps(value))
        except (RecursionError, ValueError, TypeError):
            problems.append(
                f"{shorten(key)}: the value cannot be a hyperparameter string (nested too deeply, or not "
                f"JSON); settings are scalars or short lists, nested at most {MAX_VALUE_DEPTH} levels"
            )
            continue
        if length > MAX_HYPERPARAMETER_VALUE:
            problems.append(
                f"{shorten(key)}: the value is {length} characters as a hyperparameter; "
                f"SageMaker accepts at most {MAX_HYPERPARAMETER_VALUE}"
            )
    return problems


def _describe_error(error: Mapping[str, Any], source: Mapping[str, str]) -> str:
    if not error["loc"]:  # a rule across keys (embedder vs weights/jitter): its message names them
        return str(error["msg"]).removeprefix("Value error, ")
    key = str(error["loc"][0])
    origin = source.get(key, "hyperparameters")
    if error["type"] == "extra_forbidden":
        return f"unknown key {shorten(key)} (from {origin})"
    return f"'{key}' (from {origin}): {error['msg']} (got {shorten(error['input'])})"


def parse_settings(
    layers: list[tuple[str, Mapping[str, object]]],
) -> Hyperparameters:
    """Merge settings layers (later layers win) and validate them into Hyperparameters.

    Each layer is (where it came from, mapping of key to value); values that are strings are decoded as
    SageMaker hyperparameters (JSON if they parse). Raises SettingsError naming every bad key.
    """
    merged: dict[str, object] = {}
    source: dict[str, str] = {}
    problems: list[str] = []
    for origin, values in layers:
        for key, value in values.items():
            try:
                decoded = decode_sagemaker_value(value)
            except ValueError as exc:
                problems.append(f"{shorten(str(key))} (from {origin}): {exc}")
                continue
            if nested_deeper_than(decoded):
                problems.append(
                    f"{shorten(str(key))} (from {origin}): nested more than {MAX_VALUE_DEPTH} levels deep"
                )
                continue
            merged[str(key)] = decoded
            source[str(key)] = origin
    if problems:
        raise SettingsError(problems)
    try:
        return Hyperparameters.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError([_describe_error(err, source) for err in exc.errors()]) from None


def to_sagemaker_strings(values: Mapping[str, object]) -> dict[str, str]:
    """Encode settings as CreateTrainingJob wants them: every value a string (JSON for non-strings); raise
    SettingsError when SageMaker's limits on hyperparameters would refuse them."""
    problems = sagemaker_limit_problems(values)
    if problems:
        raise SettingsError(problems)
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}
