"""Aggregate per-photo outcomes into the enrollment: per-identity means, records, rejections; the known
strangers' photos (face_imgs/_strangers/) are kept apart, never enrolled (KnownStrangers)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .contract.counting import counted
from .photos import PhotoRef, SkippedFile
from .pipeline import Accepted, Rejected

STRAY_FILE = "not_in_identity_folder"
IDENTITY_EXCLUDED = "identity_excluded"


@dataclass(frozen=True)
class RejectedRow:
    """One line of rejected.csv."""

    identity: str
    photo: str
    reason: str
    message: str


@dataclass(frozen=True)
class LeftOut:
    """An identity folder that is not enrolled: fewer usable photos than min_images_per_identity."""

    identity: str
    photos: int  # in its folder
    usable: int
    minimum: int  # min_images_per_identity
    reasons: dict[str, int]  # rejection reason -> photos, for the photos that were not usable

    @property
    def photos_in_brief(self) -> str:
        """E.g. '0 usable photos of 2 (no_face: 1, not_an_image: 1)', '1 usable photo of 2 (no_face: 1)'."""
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.reasons.items())
        usable = f"{counted(self.usable, 'usable photo')} of {self.photos}"
        return usable + (f" ({reasons})" if reasons else "")

    @property
    def why(self) -> str:
        """metrics.json identities_excluded and its rows of rejected.csv: what is wrong and what to do."""
        return (
            f"{self.photos_in_brief}, fewer than min_images_per_identity={self.minimum}; add photos in which "
            "this person's face shows clearly (rejected.csv gives each photo's reason), or lower the setting"
        )


@dataclass(frozen=True)
class EnrolledIdentity:
    """One row of final_mean_embeddings.csv."""

    identity: str
    num_images: int
    mean: np.ndarray


def _record(identity: str, item: Accepted) -> dict[str, object]:
    """One photo's record of saved_embeddings.pkl."""
    return {
        "identity": identity,
        "key": item.photo.key,
        "sha256": item.sha256,
        "box": [round(v, 2) for v in item.face.box],
        "probability": item.face.probability,
        "faces_found": item.face.faces_found,
        "embedding": item.embedding,
    }


@dataclass
class KnownStrangers:
    """The known strangers' photos (face_imgs/_strangers/): never enrolled; each usable one is a non-mated
    search of the evaluation. Their counts are apart from the enrollment's images_* (metrics.json
    `strangers`); their rejections go to rejected.csv after the enrollment's, with an empty identity."""

    # identity `_strangers`, key `_strangers/…`
    records: list[dict[str, object]] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def photos(self) -> int:
        return len(self.records) + len(self.rejected)

    @property
    def rejections_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(row.reason for row in self.rejected).items()))

    def embedding_matrix(self, dimension: int) -> np.ndarray:
        """The usable strangers' unit embeddings, (s, dimension) float32 (s may be 0), in key order."""
        if not self.records:
            return np.zeros((0, dimension), dtype=np.float32)
        return np.stack([record["embedding"] for record in self.records]).astype(np.float32)


@dataclass
class Enrollment:
    """The finished enrollment and everything the outputs report about it. `images_total`,
    `images_accepted`, `rejected` are the enrollment's (identity folders and stray top-level files);
    the known strangers are in `strangers`; the files skipped as no photos (photos.SkippedFile) in
    `skipped`, counted nowhere else."""

    identities: list[EnrolledIdentity]
    records: list[dict[str, object]]
    rejected: list[RejectedRow]
    left_out: list[LeftOut]  # in identity order
    images_total: int
    images_accepted: int
    dataset_fingerprint: str  # over every photo's key and sha256, known strangers' included
    strangers: KnownStrangers = field(default_factory=KnownStrangers)
    # The files known not to be photos (Thumbs.db, text, videos), in key order: rejected.csv rows
    # `not_a_photo` (identity empty in the strangers' folder); no photo, identity, rejection or fingerprint.
    skipped: list[RejectedRow] = field(default_factory=list)

    @property
    def excluded(self) -> dict[str, str]:
        """metrics.json identities_excluded: identity -> why it is not enrolled."""
        return {item.identity: item.why for item in self.left_out}

    @property
    def rejected_rows(self) -> list[RejectedRow]:
        """Every row of rejected.csv: the enrollment's, the files skipped as no photos, the known
        strangers'."""
        return [*self.rejected, *self.skipped, *self.strangers.rejected]

    @property
    def rejections_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(row.reason for row in self.rejected).items()))

    def rejections_by_identity(self) -> dict[str, dict[str, int]]:
        """Identity folder → reason → photos not used (stray top-level files belong to no identity)."""
        table: dict[str, Counter[str]] = {}
        for row in self.rejected:
            if row.identity:
                table.setdefault(row.identity, Counter())[row.reason] += 1
        return {identity: dict(counts) for identity, counts in table.items()}

    def embedding_matrix(self) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """The records as arrays: embeddings (N, D) float32, labels (N,) indexing the enrolled identities
        (in their CSV order), identity names, photo keys."""
        names = [item.identity for item in self.identities]
        index = {name: position for position, name in enumerate(names)}
        embeddings = np.stack([record["embedding"] for record in self.records]).astype(np.float32)
        labels = np.array([index[record["identity"]] for record in self.records], dtype=np.int64)
        return embeddings, labels, names, [str(record["key"]) for record in self.records]


@dataclass
class EnrollmentBuilder:
    """Collects outcomes in order; `finish` applies min_images_per_identity and averages."""

    stray_files: list[str] = field(default_factory=list)
    _accepted: dict[str, list[Accepted]] = field(default_factory=dict)
    _rejected: list[RejectedRow] = field(default_factory=list)
    _seen_identities: list[str] = field(default_factory=list)
    _fingerprint: list[tuple[str, str]] = field(default_factory=list)
    _strangers: KnownStrangers = field(default_factory=KnownStrangers)
    _skipped: list[RejectedRow] = field(default_factory=list)

    def add(self, outcome: Accepted | Rejected | SkippedFile) -> None:
        photo: PhotoRef = outcome.photo
        if isinstance(outcome, SkippedFile):  # no photo: never an identity, counted nowhere but here
            identity = "" if photo.is_stranger else photo.identity
            self._skipped.append(RejectedRow(identity, photo.key, outcome.reason, outcome.message))
            return
        if photo.is_stranger:  # never an identity: kept apart, in the fingerprint all the same
            self._fingerprint.append((photo.key, outcome.sha256 or "-"))
            if isinstance(outcome, Accepted):
                self._strangers.records.append(_record(photo.identity, outcome))
            else:
                self._strangers.rejected.append(
                    RejectedRow("", photo.key, outcome.rejection.reason, outcome.rejection.message)
                )
            return
        if photo.identity not in self._accepted:
            self._accepted[photo.identity] = []
            self._seen_identities.append(photo.identity)
        self._fingerprint.append((photo.key, outcome.sha256 or "-"))
        if isinstance(outcome, Accepted):
            self._accepted[photo.identity].append(outcome)
        else:
            self._rejected.append(
                RejectedRow(photo.identity, photo.key, outcome.rejection.reason, outcome.rejection.message)
            )

    def finish(self, min_images_per_identity: int) -> Enrollment:
        rejected = [
            RejectedRow(
                "", name, STRAY_FILE, "file at the top of face_imgs/; put photos in face_imgs/<person>/"
            )
            for name in self.stray_files
        ] + list(self._rejected)
        identities: list[EnrolledIdentity] = []
        records: list[dict[str, object]] = []
        left_out: list[LeftOut] = []
        reasons_by_identity: dict[str, Counter[str]] = {}
        for row in self._rejected:
            reasons_by_identity.setdefault(row.identity, Counter())[row.reason] += 1
        for identity in self._seen_identities:
            accepted = self._accepted[identity]
            if len(accepted) < min_images_per_identity:
                reasons = reasons_by_identity.get(identity, Counter())
                left = LeftOut(
                    identity,
                    photos=len(accepted) + sum(reasons.values()),
                    usable=len(accepted),
                    minimum=min_images_per_identity,
                    reasons=dict(sorted(reasons.items())),
                )
                left_out.append(left)
                rejected.extend(
                    RejectedRow(identity, photo.photo.key, IDENTITY_EXCLUDED, left.why) for photo in accepted
                )
                continue
            total = np.sum([item.embedding.astype(np.float64) for item in accepted], axis=0)
            mean = (total / np.linalg.norm(total)).astype(np.float32)
            identities.append(EnrolledIdentity(identity, len(accepted), mean))
            records.extend(_record(identity, item) for item in accepted)
        digest = hashlib.sha256()
        for key, sha in sorted(self._fingerprint):
            digest.update(f"{key}\0{sha}\n".encode())
        images_total = len(self._fingerprint) - self._strangers.photos + len(self.stray_files)
        return Enrollment(
            identities=identities,
            records=records,
            rejected=rejected,
            left_out=left_out,
            images_total=images_total,
            images_accepted=len(records),
            dataset_fingerprint=digest.hexdigest(),
            strangers=self._strangers,
            skipped=sorted(self._skipped, key=lambda row: row.photo),
        )
