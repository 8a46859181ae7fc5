"""The erasure's readers of pickles in saved_embeddings.pkl's format (contract.embeddings_file): the file
itself (rewritten without the people's records) and Spot checkpoint segments (only judged: a segment is
the job's private resume state, deleted when it holds them).
"""

from __future__ import annotations

import io
import re

from facetrain.contract.embeddings_file import dump_embeddings, load_embeddings

from .erasure_traces import NoSafeRewrite, Traces, check_no_trace_left, values

# Spot checkpoint segments (facetrain.checkpoints, which imports the job's image code: not importable here).
CHECKPOINT_SEGMENT = re.compile(r"photo-outcomes-[A-Za-z0-9_-]+-\d{5,}\.pkl")


def _record_is_theirs(record: object, traces: Traces) -> bool:
    return isinstance(record, dict) and (
        traces.is_name(record.get("identity")) or traces.is_photo_key(record.get("key"))
    )


def scrub_embeddings(body: bytes, traces: Traces) -> bytes | None:
    """Drop the people's per-photo records; metadata, known strangers and the others' records unchanged.
    Their trace in the metadata or a stranger record: NoSafeRewrite. Unreadable: EmbeddingsFileError."""
    payload = load_embeddings(body)
    check_no_trace_left(payload["metadata"], traces)  # the run's settings and warning never name a person
    records = payload["records"]
    kept = [record for record in records if not _record_is_theirs(record, traces)]
    strangers = payload["strangers"]
    if any(_record_is_theirs(record, traces) for record in strangers):
        raise NoSafeRewrite
    check_no_trace_left([{k: v for k, v in r.items() if k != "embedding"} for r in kept], traces)
    if len(kept) == len(records):
        return None
    out = io.BytesIO()
    dump_embeddings(payload["metadata"], kept, out, strangers=strangers)
    return out.getvalue()


def segment_holds(body: bytes, traces: Traces) -> bool:
    """A checkpoint segment holds a record of theirs, a name or photo key of theirs in a record, or a
    mention of their photos in its metadata (fingerprint; rejections: sha256, reason code, message).
    Unreadable: EmbeddingsFileError."""
    payload = load_embeddings(body)
    records = [*payload["records"], *payload["strangers"]]
    if any(_record_is_theirs(record, traces) for record in records):
        return True
    if any(traces.is_photo_key(s) or traces.mentions(s) for s in values(payload["metadata"])):
        return True  # a rejection's message about their photo (its reason is a code: `no_face` is no one)
    try:
        check_no_trace_left([{k: v for k, v in r.items() if k != "embedding"} for r in records], traces)
    except NoSafeRewrite:
        return True
    return False
