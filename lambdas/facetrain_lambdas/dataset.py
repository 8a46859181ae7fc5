"""Check a listing of the images prefix and snapshot it as a SageMaker manifest.

The layout is the training container's (facetrain.photos.list_channel): `<prefix><identity>/<photo>`,
nested folders allowed inside an identity. What the container would not enroll without that being an
error (files directly under the prefix, which it reports in rejected.csv, and any folder or file named
`_*` or `.*`, which it skips) is left out of the manifest with a warning, not refused; so is a file known
not to be a photo (Thumbs.db, desktop.ini, text, videos: contract.photo_files, the rule the job and
`facetrain run`'s upload apply too). A file with an extension no photo format has is kept (the job decodes
by content and names it in rejected.csv when it is not an image), with a warning.

Every message names a file or folder by its key relative to the images prefix (`person_02/IMG_0001.HEIC`):
the person's own path, the same offline (relative to IMAGES_DIR) and on AWS.

The known strangers' folder `<prefix>_strangers/` (contract.names.STRANGERS_FOLDER) is the one exception:
its photos (any depth below it; `_*`/`.*` names inside skipped as in a person's folder) get the same checks
as a person's photos, go into the manifest and the fingerprint (a change of strangers retrains), and are
counted apart (`PhotoSnapshot.strangers`): never an identity.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from facetrain.contract.counting import counted
from facetrain.contract.identity_names import identity_name_problems
from facetrain.contract.names import STRANGERS_FOLDER, is_skipped, is_strangers_key
from facetrain.contract.photo_files import not_photo_reason, unknown_extension_warning

from .layout import s3_uri

DEFAULT_PAGE_SIZE = 1000
MAX_NAME_BYTES = 255  # a file or folder name on the training host's file system (ext4, xfs: NAME_MAX)

PHOTOS_FOLDER = "the photos folder"  # IMAGES_DIR offline, the images prefix on AWS


def key_problem(relative: str) -> str | None:
    """Why the training job could not download this key (relative to its channel), or None."""
    for part in relative.split("/"):
        size = len(part.encode("utf-8"))
        if size > MAX_NAME_BYTES:
            return (
                f"the name {part[:40]!r}... is {size} bytes; file and folder names must be at most "
                f"{MAX_NAME_BYTES} bytes (the training host's file system): rename it"
            )
    return None


@dataclass(frozen=True)
class ListedObject:
    """One S3 object of a listing."""

    key: str
    size: int
    etag: str


@dataclass
class PhotoSnapshot:
    """The photos a run will train on, exactly as listed."""

    bucket: str
    prefix: str
    keys: list[str] = field(default_factory=list)  # relative to prefix, in listing order (strangers' too)
    identities: Counter[str] = field(default_factory=Counter)
    strangers: int = 0  # photos under <prefix>_strangers/, in `keys` but no identity's
    total_bytes: int = 0
    skipped: int = 0  # objects left out without being a problem (see warnings)
    warnings: list[str] = field(default_factory=list)  # what was left out and why, one line per file/folder
    fingerprint: str = ""
    # The identities the job will exclude for too few photos: listed, nothing left out (not in `warnings`).
    too_few: TooFewPhotos | None = None

    @property
    def all_warnings(self) -> list[str]:
        """Every warning for the person: what was left out, then the too-few identities (a count)."""
        return [*self.warnings, *([self.too_few.warning] if self.too_few else [])]


def list_objects(
    s3: Any, bucket: str, prefix: str, page_size: int = DEFAULT_PAGE_SIZE
) -> Iterator[ListedObject]:
    """Every object under prefix (ListObjectsV2, paginated: any number of objects)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
        for item in page.get("Contents", ()):
            yield ListedObject(key=item["Key"], size=int(item["Size"]), etag=item.get("ETag", "").strip('"'))


def _skipped_root(parts: list[str]) -> str | None:
    """The key part up to the first name the container skips (`_*`, `.*`), a folder ending in `/`; the
    known strangers' folder at the top is read, not skipped (a file named `_strangers` is skipped)."""
    for index, part in enumerate(parts):
        if index == 0 and part == STRANGERS_FOLDER and len(parts) > 1:
            continue
        if is_skipped(part):
            return "/".join(parts[: index + 1]) + ("/" if index < len(parts) - 1 else "")
    return None


def _skipped_warnings(skipped: Counter[str]) -> list[str]:
    return [
        root
        + (f" ({counted(count, 'object')})" if root.endswith("/") else "")
        + " is skipped: names starting with '_' or '.' are ignored, as the training job ignores them "
        f"(all but {STRANGERS_FOLDER}/ at the top: the known strangers)"
        for root, count in skipped.items()
    ]


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


@dataclass(frozen=True)
class TooFewPhotos:
    """The identities with fewer photos than min_images_per_identity. The job excludes each of them (and
    names them in metrics.json's identities_excluded and rejected.csv) and enrolls the others, as the README
    promises; validate warns with their number (names stay out of logs) and refuses only a run where no
    identity is left."""

    count: int
    minimum: int
    where: str

    @property
    def warning(self) -> str:
        return (
            f"{counted(self.count, 'identity has', 'identities have')} fewer than "
            f"min_images_per_identity={counted(self.minimum, 'photo')} in {self.where}: the training job "
            "excludes them and enrolls the others (metrics.json identities_excluded and rejected.csv "
            "identity_excluded name them); add photos or lower min_images_per_identity to enroll them"
        )

    @property
    def refusal(self) -> str:
        return (
            f"every identity ({self.count}) has fewer than "
            f"min_images_per_identity={counted(self.minimum, 'photo')} in {self.where}: none could be "
            "enrolled; add photos or lower min_images_per_identity"
        )


def too_few_photos(identities: Mapping[str, int], minimum: int, where: str) -> TooFewPhotos:
    """How many identities have fewer than `minimum` photos (listed: the job may reject more of them)."""
    return TooFewPhotos(sum(count < minimum for count in identities.values()), minimum, where)


def check_photos(
    objects: Iterable[ListedObject],
    bucket: str,
    prefix: str,
    min_per_identity: int,
    max_bytes: int,
) -> tuple[PhotoSnapshot, list[str]]:
    """Snapshot the photos under prefix and list every problem a person must fix (empty when usable).

    Files left out without being a problem (contract.photo_files' non-photos among them) are counted in
    `skipped` and described in `warnings`, each by its key relative to `prefix`, as is a file kept without
    a photo extension; the identities with fewer than `min_per_identity` photos, when others have
    enough, in `too_few`.
    """
    snapshot = PhotoSnapshot(bucket=bucket, prefix=prefix)
    problems: list[str] = []
    stray: list[str] = []
    not_photos: list[str] = []
    unknown: list[str] = []
    skipped: Counter[str] = Counter()  # skipped file or folder → objects under it, in listing order
    digest = hashlib.sha256()
    # Messages name what the person sees: the photos folder (IMAGES_DIR offline, the images prefix on AWS)
    # and keys relative to it, never the bucket's URI.
    where = PHOTOS_FOLDER
    for obj in objects:
        relative = obj.key[len(prefix) :]
        if not relative or (relative.endswith("/") and obj.size == 0):
            continue  # the console's zero-byte "folder" markers
        parts = relative.split("/")
        root = _skipped_root(parts)
        if root is not None and root.endswith("/"):
            skipped[root] += 1
            continue
        if (reason := not_photo_reason(parts[-1])) is not None:  # before the size: a video is no refusal
            not_photos.append(f"{relative}: {reason}")
            continue
        if root is not None:
            skipped[root] += 1
            continue
        stranger = is_strangers_key(relative)
        if len(parts) == 1:
            stray.append(
                f"{relative} lies at the top of the photos folder, in no person's folder: move it into a "
                f"folder named after the person (<name>/{relative}) to use it; it is left out of this run"
            )
            continue
        if "" in parts:
            usual = f"{STRANGERS_FOLDER}/<photo>" if stranger else "<name>/<photo>"
            problems.append(f"{relative}: the key has an empty folder name ('//'); re-upload it as {usual}")
            continue
        if problem := key_problem(relative):
            problems.append(f"{relative}: {problem}")
            continue
        if obj.size == 0:
            problems.append(f"{relative} is empty (0 bytes): upload the photo again")
            continue
        if obj.size > max_bytes:
            problems.append(
                f"{relative} is {_megabytes(obj.size)}, over the {_megabytes(max_bytes)} limit: "
                "downscale or re-encode it"
            )
            continue
        if (warning := unknown_extension_warning(parts[-1])) is not None:
            unknown.append(f"{relative}: {warning}")
        snapshot.keys.append(relative)
        if stranger:
            snapshot.strangers += 1
        else:
            snapshot.identities[parts[0]] += 1
        snapshot.total_bytes += obj.size
        digest.update(f"{relative}\0{obj.size}\0{obj.etag}\n".encode())
    few = too_few_photos(snapshot.identities, min_per_identity, where)
    if few.count and few.count == len(snapshot.identities):
        problems.append(few.refusal)
    elif few.count:
        snapshot.too_few = few
    if (first := prefix.split("/")[0]) in snapshot.identities:
        # The job tells the two layouts of the channel apart by that folder (facetrain.channel_layout).
        problems.append(
            f"identity folder {first}/ has the name of the first folder of the images prefix "
            f"'{prefix}': the training job could not tell its photos from photos SageMaker writes under "
            f"their full key ({prefix}<name>/<photo>); rename the folder"
        )
    # Formulas, invisible characters, mixed scripts, names that read alike: refused as the job refuses them.
    problems.extend(identity_name_problems(snapshot.identities, lambda shown: f"{shown}/"))
    if not snapshot.identities and not problems:
        only = (
            f" (only {counted(snapshot.strangers, 'known stranger photo')}, in {STRANGERS_FOLDER}/, "
            "which are never enrolled)"
            if snapshot.strangers
            else ""
        )
        problems.append(
            f"no photos in {where}{only}: put them in one folder per person, <name>/<photo>.jpg (on AWS "
            f"under {prefix} in the data bucket)"
        )
    snapshot.warnings = [*stray, *not_photos, *_skipped_warnings(skipped), *unknown]
    snapshot.skipped = len(stray) + len(not_photos) + skipped.total()
    snapshot.fingerprint = digest.hexdigest()
    return snapshot, problems


def run_fingerprint(photos: str, config: Iterable[ListedObject], settings: Mapping[str, Any]) -> str:
    """What a run trains on: the photos' fingerprint, the config files (key, ETag) and the resolved settings.

    Equal fingerprints mean a retrain would reproduce the published enrollment.
    """
    digest = hashlib.sha256(f"photos\0{photos}\n".encode())
    for obj in sorted(config, key=lambda o: o.key):
        digest.update(f"config\0{obj.key}\0{obj.etag}\n".encode())
    digest.update(("settings\0" + json.dumps(settings, sort_keys=True)).encode())
    return digest.hexdigest()


def manifest(bucket: str, prefix: str, relative_keys: Iterable[str]) -> list[object]:
    """A SageMaker ManifestFile: the prefix, then the keys relative to it."""
    return [{"prefix": s3_uri(bucket, prefix)}, *relative_keys]
