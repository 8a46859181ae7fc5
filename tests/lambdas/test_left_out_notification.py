"""Nobody left out in silence (issue 27): the success notification names each identity the run left out,
with its photos' reasons, right under its headline. The notification is an e-mail to the operators, who
must act on it (as a failure's reason names the photo to fix); the publish Lambda logs none of it."""

from __future__ import annotations

import dataclasses

from facetrain_lambdas.artifact import verify_results
from facetrain_lambdas.publish import JobState, summary_text
from handler_fixtures import run_record
from support.testkit import model_files

WHY = (
    "0 usable photos of 2 (no_face: 1, not_an_image: 1), fewer than min_images_per_identity=1; add photos "
    "in which this person's face shows clearly (rejected.csv gives each photo's reason), or lower the setting"
)


def _notification(excluded: dict[str, str]) -> list[str]:
    verified = verify_results(model_files({"alice": 2, "bob": 2}))
    metrics = verified.metrics.model_copy(update={"identities_excluded": excluded})
    record = run_record()
    job = JobState(training_job_name="j", model_artifacts="s3://b/m.tar.gz")
    results = dataclasses.replace(verified, metrics=metrics)
    return summary_text(record, job, results, record.layout).splitlines()


def test_the_notification_names_each_left_out_identity_with_its_photos_reasons() -> None:
    lines = _notification({"new_hire": WHY, "zoe": WHY.replace("0 usable", "1 usable")})
    assert lines[0] == "facetrain run r1 published 2 identities; 2 left out, named below."
    start = lines.index("") + 1  # right under the headline (and the NOT FOR PRODUCTION warning)
    assert lines[start : start + 4] == [
        "Left out, not enrolled: 2 identities (the others were published; set require_all_identities=true "
        "to fail such a run instead):",
        f"- new_hire: {WHY}",
        f"- zoe: {WHY.replace('0 usable', '1 usable')}",
        "",
    ]
    assert lines[start + 4].startswith("Photos: ")


def test_a_run_that_left_nobody_out_says_nothing_about_it() -> None:
    lines = _notification({})
    assert lines[0] == "facetrain run r1 published 2 identities."
    assert not [line for line in lines if "left out" in line.lower()]
