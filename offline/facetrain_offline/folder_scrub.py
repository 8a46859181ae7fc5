"""A forget's pass over a local folder (`facetrain forget --out`): every file holding a trace of the people
is rewritten without them or deleted, by the same rules as the purge of the bucket
(facetrain_lambdas.erasure_scrub), so that the copies `facetrain run` left there go too."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from facetrain_lambdas.erasure_scrub import scrub_object


@dataclass(frozen=True)
class FolderScrubbed:
    rewritten: int
    deleted: int


def scrub_folder(folder: Path, names: Collection[str], images_prefix: str) -> FolderScrubbed:
    """Scan every file under `folder` (links are not followed; hidden files too) and rewrite (through a
    temporary file and a rename) or delete each that holds them; how many of each."""
    rewritten = deleted = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = path.relative_to(folder).as_posix()
        outcome = scrub_object(relative, path.read_bytes(), names, images_prefix)
        if not outcome.contains:
            continue
        if outcome.replacement is None:
            path.unlink()
            deleted += 1
            continue
        partial = path.with_name(f".{path.name}.scrubbed")
        partial.write_bytes(outcome.replacement)
        partial.replace(path)
        rewritten += 1
    return FolderScrubbed(rewritten=rewritten, deleted=deleted)
