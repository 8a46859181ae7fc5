"""The erasure's rewriters of JSON documents: metrics.json (the job's), run.json, problems.json and the
SageMaker manifests (the Lambdas').

Each takes the object's bytes and the Traces (erasure_traces.py) and returns the document rewritten
without the people (json.dumps as its writer calls it), None when nothing of theirs is in it, or raises
NoSafeRewrite; a body it cannot parse raises ValueError. Field names are never a trace (a person called
`max` is not in every metrics.json); string values are, by `Traces.in_value`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from facetrain.contract.metrics import parse_metrics

from .erasure_traces import NoSafeRewrite, Traces, check_no_trace_left, json_text
from .layout import PROBLEMS_JSON, RUN_JSON
from .run_record import ValidationProblems, parse_run_record

MANIFESTS = ("manifest.json", "cfg-manifest.json", "previous-manifest.json")
METRICS_INDENT = 2  # facetrain.outputs.render_reports: json.dumps(indent=2, ensure_ascii=False) + "\n"
LAMBDA_JSON_INDENT = 1  # s3_json.write_json: json.dumps(indent=1, ensure_ascii=False)


def _without(items: list[Any], theirs: Callable[[Any], bool]) -> list[Any]:
    return [item for item in items if not theirs(item)]


def scrub_metrics(body: bytes, traces: Traces) -> bytes | None:
    """metrics.json: drop the people's excluded-identity entry, per-identity row, closest pairs and
    suspected mislabels (theirs, or naming them as the closest identity); in another identity's row whose
    nearest identity was one of them, nearest_identity, nearest_distance and margin become null (they
    describe the relation to that person). Aggregate figures (counts, accuracy, error rates, distance
    distributions, timings) stay: they describe the run, not a person, and recomputing them would need the
    run's photos. Another value that is a trace of theirs (Traces.in_value): NoSafeRewrite."""
    data = json.loads(body.decode("utf-8"))
    parse_metrics(data)  # refuses another format or version (then: the rule for unreadable bytes)
    original = json.dumps(data, sort_keys=True)
    excluded = data.get("identities_excluded") or {}
    data["identities_excluded"] = {k: v for k, v in excluded.items() if not traces.is_name(k)}
    evaluation = data.get("evaluation")
    if isinstance(evaluation, dict):
        rows = _without(evaluation["per_identity"], lambda row: traces.is_name(row["identity"]))
        for row in rows:
            if traces.is_name(row.get("nearest_identity")):
                row.update(nearest_identity=None, nearest_distance=None, margin=None)
        evaluation["per_identity"] = rows
        evaluation["closest_pairs"] = _without(
            evaluation["closest_pairs"], lambda pair: any(traces.is_name(i) for i in pair["identities"])
        )
        evaluation["suspected_mislabels"] = _without(
            evaluation["suspected_mislabels"],
            lambda entry: (
                traces.is_name(entry["identity"])
                or traces.is_name(entry["closest_identity"])
                or traces.in_value(entry["photo"])
            ),
        )
    check_no_trace_left(data, traces)  # a trace where no entry of theirs is: no rewrite
    if json.dumps(data, sort_keys=True) == original:
        return None
    parse_metrics(data)
    return json_text(data, METRICS_INDENT, newline=True)


def _names_them(traces: Traces) -> Callable[[object], bool]:
    """A validation warning or problem about their photos or folder (Traces.in_value)."""
    return traces.in_value


def scrub_run_record(body: bytes, traces: Traces) -> bytes | None:
    """run.json: drop the warnings that name their photos or folders; a trigger_key of theirs becomes null.
    A run id, execution name or prefix naming them cannot be rewritten (other records refer to them)."""
    data = json.loads(body.decode("utf-8"))
    parse_run_record(data, RUN_JSON)
    warnings = data.get("warnings", [])
    kept = _without(warnings, _names_them(traces))
    request = data["request"]
    trigger_is_theirs = _names_them(traces)(request.get("trigger_key"))
    changed = len(kept) != len(warnings) or trigger_is_theirs
    data["warnings"] = kept
    if trigger_is_theirs:
        request["trigger_key"] = None
    check_no_trace_left(data, traces)
    if not changed:
        return None
    parse_run_record(data, RUN_JSON)
    return json_text(data, LAMBDA_JSON_INDENT, newline=False)


def scrub_problems(body: bytes, traces: Traces) -> bytes | None:
    """problems.json: drop the problems and warnings that name their photos or folders."""
    data = json.loads(body.decode("utf-8"))
    ValidationProblems.model_validate(data)
    changed = False
    for field in ("problems", "warnings"):
        kept = _without(data[field], _names_them(traces))
        changed |= len(kept) != len(data[field])
        data[field] = kept
    check_no_trace_left(data, traces)
    if not changed:
        return None
    ValidationProblems.model_validate(data)
    return json_text(data, LAMBDA_JSON_INDENT, newline=False)


def _manifest_prefix_path(entry: object) -> str:
    """The key prefix of a manifest's {"prefix": "s3://bucket/<path>"} entry."""
    if not (isinstance(entry, dict) and isinstance(entry.get("prefix"), str)):
        raise ValueError("the first entry of a manifest is its prefix")
    uri = entry["prefix"]
    if not uri.startswith("s3://"):
        raise ValueError("a manifest's prefix is an s3:// URI")
    return uri.removeprefix("s3://").partition("/")[2]


def scrub_manifest(body: bytes, traces: Traces) -> bytes | None:
    """A SageMaker manifest ([{"prefix": uri}, relative keys...], validate.manifest): drop their photos'
    keys (first folder one of the names, or the full key under the images prefix in their folder)."""
    data = json.loads(body.decode("utf-8"))
    if not isinstance(data, list) or not data or not all(isinstance(k, str) for k in data[1:]):
        raise ValueError("not a manifest")
    prefix = _manifest_prefix_path(data[0])
    if traces.is_photo_key(prefix) or traces.in_value(data[0]["prefix"]):
        raise NoSafeRewrite
    keys = data[1:]
    kept = [k for k in keys if not (traces.is_photo_key(k) or traces.is_photo_key(prefix + k))]
    check_no_trace_left(kept, traces)
    if len(kept) == len(keys):
        return None
    return json_text([data[0], *kept], LAMBDA_JSON_INDENT, newline=False)


REWRITERS = {
    "metrics.json": scrub_metrics,
    RUN_JSON: scrub_run_record,
    PROBLEMS_JSON: scrub_problems,
    **dict.fromkeys(MANIFESTS, scrub_manifest),
}
