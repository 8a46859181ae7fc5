"""validate refuses the identity folder names the job refuses (issue 25, defect 4: formulas, invisible
characters, white space at the ends, mixed scripts, names that read alike), naming each folder and the fix,
through the one rule of facetrain.contract.identity_names; the known strangers' sub-folders are no
identities and keep any name."""

from __future__ import annotations

import json

import pytest
from facetrain.contract.identity_names import shown
from facetrain_lambdas.dataset import ListedObject, check_photos
from facetrain_lambdas.errors import InvalidInput
from facetrain_lambdas.layout import RunLayout
from facetrain_lambdas.run_request import StackDefaults, resolve_request
from facetrain_lambdas.validate import validate_run
from handler_fixtures import BUCKET
from support.hostile_names import ACCEPTED, LOOKALIKE_PAIRS, REFUSED
from support.testkit import JPEG, upload_photos

MB = 1024 * 1024


def _objects(*keys: str) -> list[ListedObject]:
    return [ListedObject(key=key, size=1000, etag=f"etag-{index}") for index, key in enumerate(keys)]


def _check(*identities: str, extra: tuple[str, ...] = ()):
    keys = [f"face_imgs/{name}/{index}.jpg" for name in identities for index in range(2)]
    return check_photos(_objects("face_imgs/kate/1.jpg", *keys, *extra), "b", "face_imgs/", 1, 20 * MB)


@pytest.mark.parametrize(("name", "words"), list(REFUSED.items()), ids=[ascii(n) for n in REFUSED])
def test_each_refused_identity_name_is_a_problem_naming_the_folder(name: str, words: str) -> None:
    _, problems = _check(name)

    mine = [problem for problem in problems if f"identity folder {shown(name)}/ " in problem]
    assert mine and any(words in problem for problem in mine), problems
    assert any("rename the folder" in problem for problem in mine)
    assert not any("face_imgs/kate/" in problem for problem in problems)


@pytest.mark.parametrize("pair", LOOKALIKE_PAIRS, ids=[ascii(p) for p in LOOKALIKE_PAIRS])
def test_identity_names_that_read_alike_are_one_problem_naming_both_folders(pair: tuple[str, str]) -> None:
    _, problems = _check(*pair)

    (alike,) = [problem for problem in problems if "read as one name" in problem]
    for name in pair:
        assert f"{shown(name)}/" in alike


def test_accepted_names_pass_and_strangers_sub_folders_keep_any_name() -> None:
    strangers = [
        f"face_imgs/_strangers/{folder}/1.jpg" for folder in ("=visitors", "\u0430lice", "Alice", "alice")
    ]
    snapshot, problems = _check(*ACCEPTED, extra=tuple(strangers))

    assert problems == []
    assert set(snapshot.identities) == {"kate", *ACCEPTED}
    assert snapshot.strangers == 4


def test_validate_refuses_the_run_listing_every_offending_folder(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"kate": 2, "Alice": 2, "alice": 2, "=cmd": 2, "bob\u200b": 2, "\u0430nna": 2})
    request = resolve_request({"run_id": "r1"}, "exec-1", StackDefaults(bucket=BUCKET))

    with pytest.raises(InvalidInput) as raised:
        validate_run(s3, request, 10**6)

    message = str(raised.value)
    assert message.startswith("The retraining input has 4 problems to fix:")
    for folder in ("=cmd", "bob\\u200b", "\u0430nna", "Alice", "alice"):
        assert f"{folder}/" in message
    assert "s3://" not in message  # the person's own folder names, not the bucket's
    assert "kate/" not in message
    key = RunLayout(BUCKET, request.results_prefix, request.run_id).problems_key
    recorded = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert recorded["problems"] == raised.value.problems


def test_validate_accepts_the_control_names(s3, function_env) -> None:
    upload_photos(s3, BUCKET, {"Jos\u00e9": 1, "\u674e\u96f7": 1, "Mary-Jane O'Neil": 1, "person_02": 1})
    s3.put_object(Bucket=BUCKET, Key="face_imgs/_strangers/=visitors/1.jpg", Body=JPEG)
    request = resolve_request({"run_id": "r1"}, "exec-1", StackDefaults(bucket=BUCKET))

    pointer = validate_run(s3, request, 10**6)

    assert (pointer.identities, pointer.strangers) == (4, 1)
