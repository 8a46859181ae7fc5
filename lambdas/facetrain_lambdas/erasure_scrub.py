"""Find, and where the format allows take out, every trace of some people in one object of the results.

`scrub_object(key, body, names, images_prefix)` is the core of the erasure's Purge step (issue 26): it says
whether one version of one object holds a trace of any of `names`, and gives the object rewritten without
them, or None when no safe rewrite exists (the object is then deleted).

Each object is judged by the rules of its format, chosen by its file name (contract.names, layout.py);
what counts as a trace in each kind of value is erasure_traces.py's (a name in an identity field, a photo
key of theirs, generated text mentioning their photos; the token rule only for text without structure):

- rewritten with the format's own reader and writer, only the people's rows, records and entries taken out
  and every other byte as the writer writes it: final_mean_embeddings.csv (render_csv), rules.py
  (render_rules: `identities` without them, as the rewritten CSV lists them), rejected.csv
  (erasure_formats_tabular.py); saved_embeddings.pkl (dump_embeddings; known strangers' records stay;
  erasure_formats_pickles.py); metrics.json, run.json, problems.json and the SageMaker manifests
  (erasure_formats_documents.py). Aggregate figures stay: they describe the run, not a person.
- judged, never rewritten (deleted when they hold a trace): report.html and other .html pages (parsed,
  erasure_formats_report.py; the figures draw every photo), Spot checkpoint segments
  (runs/<id>/checkpoints/photo-outcomes-*.pkl, read as pickles of saved_embeddings.pkl's format), and
  archives: model.tar.gz, tar of any compression, zip, gzip/bzip2/xz streams, judged only by their members'
  names and contents, each member by the rules for a file of its name, recursively
  (erasure_formats_archives.py), never by their compressed bytes.
- everything else, and a known file that does not parse (garbled, truncated, another version): no
  rewrite (what cannot be read cannot be rewritten faithfully) and the rule for unreadable bytes
  (erasure_traces.holds_trace): the token rule when the bytes are UTF-8 text; for binary, a name or photo
  key framed as a pickle string, `<images_prefix><name>/` verbatim, or the token rule for names of
  MIN_BINARY_TOKEN_BYTES or more (its false-positive risk: erasure_traces.Traces.in_binary).

Unreadable objects never raise. An archive whose members cannot all be read (corrupt, or nested deeper
than MAX_ARCHIVE_DEPTH) counts as holding a trace. Only an archive that expands beyond MAX_EXPANDED_BYTES
raises (ArchiveTooLarge, naming the key and the fix).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from facetrain.contract.embeddings_file import EmbeddingsFileError
from facetrain.contract.names import EMBEDDINGS_PKL, ENROLLMENT_CSV, REJECTED_CSV, RULES_PY
from facetrain.contract.result_files import MAX_RESULT_FILE_BYTES

from .erasure_formats_archives import ArchiveTooLarge, Budget, archive_holds, is_archive
from .erasure_formats_documents import REWRITERS as DOCUMENT_REWRITERS
from .erasure_formats_pickles import CHECKPOINT_SEGMENT, scrub_embeddings, segment_holds
from .erasure_formats_report import report_names_them
from .erasure_formats_tabular import scrub_enrollment_csv, scrub_rejected, scrub_rules
from .erasure_traces import NoSafeRewrite, Traces, holds_trace

__all__ = ["MAX_ARCHIVE_DEPTH", "MAX_EXPANDED_BYTES", "ArchiveTooLarge", "Scrubbed", "Traces", "scrub_object"]

MAX_ARCHIVE_DEPTH = 8  # an archive inside an archive ... deeper than this counts as holding a trace
MAX_EXPANDED_BYTES = 2 * MAX_RESULT_FILE_BYTES  # what one object's archives may expand to, all members


@dataclass(frozen=True)
class Scrubbed:
    """What `scrub_object` found. `replacement` matters only when `contains`: the object rewritten
    without the people, or None when there is no safe rewrite (delete it)."""

    contains: bool  # this object holds a trace of one of the names
    replacement: bytes | None  # the object rewritten without them; None: no safe rewrite (delete it)


CLEAN = Scrubbed(contains=False, replacement=None)
NO_REWRITE = Scrubbed(contains=True, replacement=None)

Rewriter = Callable[[bytes, Traces], bytes | None]  # the rewritten body; None: nothing of theirs
_REWRITERS: dict[str, Rewriter] = {
    ENROLLMENT_CSV: scrub_enrollment_csv,
    EMBEDDINGS_PKL: scrub_embeddings,
    REJECTED_CSV: scrub_rejected,
    RULES_PY: scrub_rules,
    **DOCUMENT_REWRITERS,
}
# what a reader raises for a body that is not its format (garbled, truncated, another version):
# DocumentError, EnrollmentCsvError, EmbeddingsFileError, RulesError, json's and pydantic's are ValueErrors
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError)


def scrub_object(key: str, body: bytes, names: Collection[str], images_prefix: str) -> Scrubbed:
    """Whether this object (one version of `key` under the results prefix) holds a trace of any of `names`
    (identity names; `images_prefix` is where their photos are, e.g. `face_imgs/`), and the object
    rewritten without them where its format allows; see the module docstring for each kind of object.
    Raises ArchiveTooLarge only for an archive that expands beyond MAX_EXPANDED_BYTES."""
    traces = Traces(names, images_prefix)
    if not traces.names:
        return CLEAN
    file_name = key.rsplit("/", 1)[-1]
    rewrite = _REWRITERS.get(file_name)
    if rewrite is None:
        budget = Budget(key, MAX_EXPANDED_BYTES)
        return NO_REWRITE if _holds(file_name, body, traces, budget, depth=0) else CLEAN
    try:
        replacement = rewrite(body, traces)
    except NoSafeRewrite:
        return NO_REWRITE
    except _UNREADABLE:
        return NO_REWRITE if holds_trace(body, traces) else CLEAN
    return CLEAN if replacement is None else Scrubbed(contains=True, replacement=replacement)


def _holds(file_name: str, body: bytes, traces: Traces, budget: Budget, depth: int) -> bool:
    """Whether a file of this name (an object, or an archive's member at `depth`) holds a trace."""
    rewrite = _REWRITERS.get(file_name)
    try:
        if rewrite is not None:
            return rewrite(body, traces) is not None
        if CHECKPOINT_SEGMENT.fullmatch(file_name):
            return segment_holds(body, traces)
        if file_name.endswith((".html", ".htm")):
            return report_names_them(body, traces)
    except NoSafeRewrite:
        return True
    except (*_UNREADABLE, EmbeddingsFileError):
        return holds_trace(body, traces)
    if is_archive(body):
        if depth >= MAX_ARCHIVE_DEPTH:
            return True

        def judge(name: str, content: bytes, member_depth: int) -> bool:
            return _holds(name, content, traces, budget, member_depth)

        return archive_holds(file_name, body, traces, budget, depth, judge)
    return holds_trace(body, traces)
