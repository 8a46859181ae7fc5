"""Nobody left out in silence (issue 27): an identity with too few usable photos is named with its photos'
reasons where operators read (metrics.json, report.html's summary, the failure reason), counted but not named
in the job's log at INFO, and require_all_identities decides whether it fails the run. The pieces, without a
job run; tests/container/test_left_out_identities_job.py runs the job."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.hyperparameters import Hyperparameters, SettingsError, parse_settings
from facetrain.enrollment import IDENTITY_EXCLUDED, EnrollmentBuilder, LeftOut
from facetrain.inference.faces import DetectedFace
from facetrain.photos import PhotoRef, Rejection
from facetrain.pipeline import Accepted, Rejected
from facetrain.report import left_out_summary

DIM = 8


def _ref(key: str) -> PhotoRef:
    return PhotoRef(identity=key.split("/")[0], key=key, path=Path("/nowhere") / key)


def _accepted(key: str, seed: int) -> Accepted:
    vector = np.random.default_rng(seed).normal(size=DIM)
    unit = (vector / np.linalg.norm(vector)).astype(np.float32)
    face = DetectedFace((1.0, 2.0, 30.0, 40.0), 0.99, 1)
    return Accepted(_ref(key), hashlib.sha256(key.encode()).hexdigest(), face, unit)


def _rejected(key: str, reason: str) -> Rejected:
    return Rejected(_ref(key), None, Rejection(reason, f"{reason}: see the photo"))


OUTCOMES = [
    _accepted("alice/1.jpg", 1),
    _accepted("alice/2.jpg", 2),
    _accepted("bob/1.jpg", 3),
    _rejected("bob/2.jpg", "no_face"),
    _rejected("new_hire/blank.jpg", "no_face"),
    _rejected("new_hire/dark.jpg", "no_face"),
    _rejected("new_hire/notes.jpg", "not_an_image"),
]


def _enrolled(minimum: int = 1):
    builder = EnrollmentBuilder()
    for outcome in OUTCOMES:
        builder.add(outcome)
    return builder.finish(min_images_per_identity=minimum)


def test_the_setting_defaults_to_publishing_the_others_and_reads_as_a_boolean() -> None:
    assert Hyperparameters().require_all_identities is False
    for given, read in (("true", True), ("false", False), (True, True)):
        layers = [("hyperparameters", {"require_all_identities": given})]
        assert parse_settings(layers).require_all_identities is read
    with pytest.raises(SettingsError, match=r"'require_all_identities' \(from hyperparameters\): .*'maybe'"):
        parse_settings([("hyperparameters", {"require_all_identities": "maybe"})])


def test_an_identity_without_a_usable_photo_is_left_out_with_its_photos_reasons() -> None:
    enrollment = _enrolled()
    assert [item.identity for item in enrollment.identities] == ["alice", "bob"]
    assert enrollment.left_out == [
        LeftOut("new_hire", photos=3, usable=0, minimum=1, reasons={"no_face": 2, "not_an_image": 1})
    ]
    assert enrollment.excluded == {
        "new_hire": "0 usable photos of 3 (no_face: 2, not_an_image: 1), fewer than "
        "min_images_per_identity=1; add photos in which this person's face shows clearly (rejected.csv "
        "gives each photo's reason), or lower the setting"
    }


def test_an_identity_with_too_few_usable_photos_names_its_usable_and_rejected_ones() -> None:
    enrollment = _enrolled(minimum=2)
    assert [item.identity for item in enrollment.identities] == ["alice"]
    bob, new_hire = enrollment.left_out
    assert bob.photos_in_brief == "1 usable photo of 2 (no_face: 1)"
    assert new_hire.photos_in_brief == "0 usable photos of 3 (no_face: 2, not_an_image: 1)"
    (row,) = [row for row in enrollment.rejected if row.reason == IDENTITY_EXCLUDED]
    assert (row.photo, row.message) == ("bob/1.jpg", bob.why)


FAILURE_OF_TWO = (
    "2 identities could not be enrolled (fewer usable photos than min_images_per_identity) and "
    "require_all_identities=true fails the run: no enrollment was written, the published results are "
    "unchanged. The run's metrics.json (identities_excluded), report.html's run summary and rejected.csv "
    "name them with each photo's reason (in the job's model.tar.gz, on AWS under the run's folder "
    "runs/<run id>/training/; facetrain run copies them to OUT_DIR/runs/<run id>/ and prints them on its "
    "last lines); they are not named here, because a training job's failure reason cannot be deleted. Give "
    "each of them usable photos (one face, clearly visible) and run again, or set "
    "require_all_identities=false to publish the others and name the left-out ones."
)


def test_the_failure_reason_counts_them_and_gives_the_fix_but_names_nobody() -> None:
    """The failure file becomes SageMaker's FailureReason, which cannot be deleted: no identity name in it
    (README "Forget a person"), only the count, where they are named, and the fix."""
    from facetrain.job import left_out_failure

    enrollment = _enrolled(minimum=2)
    reason = left_out_failure(enrollment.left_out)
    assert reason == FAILURE_OF_TWO
    for left in enrollment.left_out:
        assert left.identity not in reason
    assert left_out_failure(enrollment.left_out[:1]).startswith("1 identity could not be enrolled (fewer")
    assert "Traceback" not in reason


def test_the_log_counts_them_at_info_and_names_them_only_at_debug(caplog) -> None:
    from facetrain.job import log_left_out

    with caplog.at_level(logging.DEBUG, logger="facetrain"):
        log_left_out(_enrolled().left_out)
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert above_debug == [
        "1 identity left out, not enrolled (fewer usable photos than min_images_per_identity): metrics.json "
        "identities_excluded and report.html's summary name them with their photos' reasons"
    ]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug == ["left out new_hire: 0 usable photos of 3 (no_face: 2, not_an_image: 1)"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="facetrain"):
        log_left_out([])
    assert caplog.records == []


def test_the_reports_summary_names_them_and_what_it_meant_for_the_run() -> None:
    excluded = _enrolled().excluded
    published = left_out_summary({"identities_excluded": excluded, "hyperparameters": {}})
    assert published == {
        "caption": "1 identity left out, not enrolled: the others were enrolled "
        "(require_all_identities=true would fail the run instead)",
        "rows": [("new_hire", excluded["new_hire"])],
    }
    refused = left_out_summary(
        {"identities_excluded": excluded, "hyperparameters": {"require_all_identities": True}}
    )
    assert refused is not None and refused["caption"] == (
        "1 identity left out, not enrolled: require_all_identities=true failed the run: nothing is published"
    )
    assert left_out_summary({"identities_excluded": {}, "hyperparameters": {}}) is None
