"""Open and verify a training job's model.tar.gz without trusting it.

Only regular files at the top of the archive are read (no links, no paths), sizes are bounded, and every
file is checked with the container's own readers: CSV shape, rules.py parsed as data (never run) from its
bytes and required to be exactly what the job writes for its values, the pickle through the restricted
unpickler, and metrics.json.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from typing import IO

from facetrain.contract.counting import counted
from facetrain.contract.embeddings_file import EmbeddingsFileError, load_embeddings, record_problem
from facetrain.contract.enrollment_csv import EnrollmentCsvError, parse_csv
from facetrain.contract.hyperparameters import EMBEDDING_DIMS, FACENET
from facetrain.contract.metrics import MetricsDocument, MetricsError, read_metrics
from facetrain.contract.names import (
    EMBEDDINGS_PKL,
    ENROLLMENT_CSV,
    METRICS_JSON,
    REJECTED_CSV,
    REPORT_HTML,
    RULES_PY,
    STRANGERS_FOLDER,
    is_strangers_key,
)
from facetrain.contract.result_files import READER_CAPS, result_file_cap
from facetrain.contract.rules_file import RulesError, load_rules
from facetrain.contract.shorten import shorten

from .errors import ResultsInvalid

REQUIRED_FILES = (ENROLLMENT_CSV, RULES_PY, EMBEDDINGS_PKL, METRICS_JSON)
OPTIONAL_FILES = (REJECTED_CSV, REPORT_HTML)
# Each file is refused from its tar header over its cap (contract.result_files: identify reads the same).
FILE_CAPS = READER_CAPS
# All known files together, uncompressed: what this Lambda (3008 MB) holds in memory while it checks them.
MAX_TOTAL_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class VerifiedResults:
    """The run's files, checked, and the figures the notification reports."""

    files: dict[str, bytes]
    identities: list[str]
    metrics: MetricsDocument
    not_for_production: bool


def read_model_archive(archive: IO[bytes]) -> dict[str, bytes]:
    """The known files of a model.tar.gz (members `name` or `./name`)."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=archive, mode="r|*") as tar:  # a stream: one member at a time
            for member in tar:
                name = member.name.removeprefix("./")
                if name not in REQUIRED_FILES + OPTIONAL_FILES:
                    continue
                if not member.isfile():
                    raise ResultsInvalid(f"model.tar.gz: {shorten(member.name)} is not a regular file")
                cap = result_file_cap(name)
                if member.size > cap:
                    raise ResultsInvalid(f"model.tar.gz: {member.name} is {member.size} bytes, over {cap}")
                total += member.size
                if total > MAX_TOTAL_BYTES:  # before reading it: the sizes are in the headers
                    raise ResultsInvalid(
                        f"model.tar.gz: its result files add up to more than {MAX_TOTAL_BYTES} bytes "
                        f"uncompressed (at {member.name}); a training job's results are far smaller"
                    )
                if name in files:
                    raise ResultsInvalid(f"model.tar.gz holds {name} twice")
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ResultsInvalid(f"model.tar.gz cannot be read as a gzip'd tar archive ({exc})") from None
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise ResultsInvalid(f"model.tar.gz lacks {', '.join(missing)}")
    return files


def _text(files: dict[str, bytes], name: str) -> str:
    try:
        return files[name].decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsInvalid(f"{name} is not UTF-8 text") from None


def verify_results(files: dict[str, bytes]) -> VerifiedResults:
    """Check the files against each other; raise ResultsInvalid naming the first problem."""
    try:
        rows = parse_csv(_text(files, ENROLLMENT_CSV))
        rules = load_rules(files[RULES_PY])  # its bytes: ASCII, then compared byte for byte
        embeddings = load_embeddings(files[EMBEDDINGS_PKL])
    except (EnrollmentCsvError, RulesError, EmbeddingsFileError) as exc:
        raise ResultsInvalid(str(exc)) from None
    if not rows:
        raise ResultsInvalid(f"{ENROLLMENT_CSV} enrolls no identity")
    identities = [row[0] for row in rows]
    dimension = len(rows[0][2])
    if isinstance(rules.get("identities"), list) and rules["identities"] != identities:
        raise ResultsInvalid(f"{RULES_PY} lists other identities than {ENROLLMENT_CSV}")
    if rules.get("embedding_dim", dimension) != dimension:
        raise ResultsInvalid(
            f"{RULES_PY} says embedding_dim {rules['embedding_dim']}, {ENROLLMENT_CSV} has {dimension}"
        )
    embedder = rules.get("embedder", FACENET)
    metadata = embeddings["metadata"]
    if metadata.get("embedder", FACENET) != embedder:
        raise ResultsInvalid(
            f"{RULES_PY} says embedder {embedder!r}, {EMBEDDINGS_PKL} {metadata.get('embedder', FACENET)!r}"
        )
    if embedder not in EMBEDDING_DIMS:
        raise ResultsInvalid(f"{RULES_PY} names an unknown embedder {embedder!r}")
    if dimension != EMBEDDING_DIMS[embedder] or metadata.get("embedding_dim", dimension) != dimension:
        raise ResultsInvalid(
            f"{ENROLLMENT_CSV} has {dimension} values per row; embedder {embedder} makes "
            f"{EMBEDDING_DIMS[embedder]} and {EMBEDDINGS_PKL} says {metadata.get('embedding_dim')}"
        )
    for index, record in enumerate(embeddings["records"]):
        problem = record_problem(record, dimension)
        if problem is not None:
            raise ResultsInvalid(f"{EMBEDDINGS_PKL} record {index} ({shorten(record.get('key'))}): {problem}")
    for index, record in enumerate(embeddings["strangers"]):  # known strangers: never enrolled
        problem = record_problem(record, dimension)
        if problem is None and (
            record["identity"] != STRANGERS_FOLDER or not is_strangers_key(str(record["key"]))
        ):
            problem = f"a known stranger's record must have identity {STRANGERS_FOLDER} and a key in it"
        if problem is not None:
            raise ResultsInvalid(
                f"{EMBEDDINGS_PKL} stranger record {index} ({shorten(record.get('key'))}): {problem}"
            )
    try:
        metrics = read_metrics(_text(files, METRICS_JSON))
    except MetricsError as exc:
        raise ResultsInvalid(str(exc)) from None
    if metrics.identities != len(identities):
        raise ResultsInvalid(
            f"{METRICS_JSON} counts {counted(metrics.identities, 'identity', 'identities')}, "
            f"the CSV {len(identities)}"
        )
    if metrics.status != "succeeded":
        raise ResultsInvalid(f"{METRICS_JSON} reports status {shorten(metrics.status)}")
    if metrics.evaluation is None:
        raise ResultsInvalid(f"{METRICS_JSON} lacks evaluation.threshold")
    if metrics.evaluation.threshold != rules["accept_threshold"]:  # load_rules checked it is a sound number
        raise ResultsInvalid(
            f"{RULES_PY} accept_threshold {shorten(rules['accept_threshold'])} is not {METRICS_JSON}'s "
            f"evaluation threshold {shorten(metrics.evaluation.threshold)}"
        )
    return VerifiedResults(
        files=files,
        identities=identities,
        metrics=metrics,
        not_for_production=bool(rules.get("not_for_production")),
    )
