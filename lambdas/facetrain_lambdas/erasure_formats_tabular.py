"""The erasure's rewriters of the enrollment's tables: final_mean_embeddings.csv, rejected.csv, rules.py.

Each takes the object's bytes and the Traces (erasure_traces.py) and returns the object rewritten without
the people, None when nothing of theirs is in it, or raises NoSafeRewrite; a body it cannot parse raises
ValueError (the dispatcher, erasure_scrub.py, then applies the rule for unreadable bytes).
"""

from __future__ import annotations

import csv
import io

from facetrain.contract.enrollment_csv import COMMENT, parse_csv, render_csv
from facetrain.contract.rules_file import load_rules, render_rules

from .erasure_traces import NoSafeRewrite, Traces, check_no_trace_left


def scrub_enrollment_csv(body: bytes, traces: Traces) -> bytes | None:
    """Drop the people's rows; the others are written back by render_csv (float32 values round-trip).
    The comment line (the not-for-production warning) is generated text: kept unless it mentions them."""
    text = body.decode("utf-8")
    comments = []
    rest = text
    while rest.startswith(COMMENT):
        line, _, rest = rest.partition("\n")
        comments.append(line)
    rows = parse_csv(text)
    kept = [row for row in rows if not traces.is_name(row[0])]
    if any(traces.mentions(line) for line in comments):
        raise NoSafeRewrite
    if len(kept) == len(rows):
        return None
    if len(comments) > 1:
        raise NoSafeRewrite  # render_csv writes at most one comment line
    warning = comments[0][len(COMMENT) :].strip() if comments else None
    dimension = len(rows[0][2])
    return render_csv(kept, dimension, warning).encode("utf-8")


def scrub_rejected(body: bytes, traces: Traces) -> bytes | None:
    """rejected.csv (facetrain.outputs.render_rejected: `# warning` line, header, QUOTE_ALL rows of
    identity, photo, reason, message): drop their rows (their identity, their photo, a message mentioning
    their photos). Written back with the writer's dialect here: render_rejected takes the job's Enrollment,
    which the Lambdas cannot build; the leading comment lines are kept as they were."""
    text = body.decode("utf-8")
    lines = text.splitlines(keepends=True)
    head = 0
    while head < len(lines) and lines[head].startswith("#"):
        head += 1
    if any(traces.mentions(line) for line in lines[:head]):
        raise NoSafeRewrite
    rows = list(csv.reader(io.StringIO("".join(lines[head:]), newline="")))
    if not rows or rows[0][:2] != ["identity", "photo"]:
        raise ValueError("rejected.csv has no header")

    def theirs(row: list[str]) -> bool:
        identity, photo = [*row, "", ""][:2]
        return (
            traces.is_name(identity.removeprefix("'"))
            or traces.is_photo_key(photo.removeprefix("'"))
            or any(traces.mentions(cell) for cell in row[2:])
        )

    kept = [rows[0], *(row for row in rows[1:] if not theirs(row))]
    if len(kept) == len(rows):
        return None
    out = io.StringIO()
    out.write("".join(lines[:head]))
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(kept)
    return out.getvalue().encode("utf-8")


def scrub_rules(body: bytes, traces: Traces) -> bytes | None:
    """rules.py (contract.rules_file): the people taken out of `identities`, written by render_rules, so
    that it lists what the rewritten final_mean_embeddings.csv holds (artifact.py requires the two equal).
    Any other value that is a name or a photo key of theirs (the rules describe the enrollment, never a
    person): NoSafeRewrite."""
    rules = load_rules(body)
    identities = rules["identities"]
    if not isinstance(identities, list):
        raise ValueError("rules.py identities is not a list")
    kept = [item for item in identities if not traces.is_name(item)]
    check_no_trace_left({key: value for key, value in rules.items() if key != "identities"}, traces)
    if len(kept) == len(identities):
        return None
    return render_rules({**rules, "identities": kept}).encode("ascii")
