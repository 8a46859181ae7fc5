"""Identity names people cannot read for what they are (issue 25, defect 4), and file names that are not
UTF-8 (defect 5, the job): the rules of facetrain.contract.identity_names, the rejected.csv cells of
facetrain.contract.spreadsheet_cells, the job's listing, and the job itself on real photos.

Every hostile name is made here at test time; the photos are the real ones of `shared_data`, linked or
copied under tmp_path under the names tested.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from facetrain.contract.hyperparameters import parse_settings
from facetrain.contract.identity_names import (
    comparison_key,
    identity_name_problems,
    name_reasons,
    shown,
    shown_bytes,
    undecodable,
)
from facetrain.contract.spreadsheet_cells import FORMULA_PREFIXES, neutralised, starts_like_formula
from facetrain.distributed import HostShare
from facetrain.enrollment import EnrollmentBuilder
from facetrain.inference.faces import DetectedFace
from facetrain.job import JobFailure, enroll
from facetrain.outputs import render_rejected
from facetrain.photos import NAME_NOT_UTF8, PhotoRef, Rejection, list_channel
from facetrain.pipeline import Accepted, Rejected
from support.hostile_names import ACCEPTED, LOOKALIKE_PAIRS, REFUSED

KATE = "faces-small/kate_siegel/1.jpg"
DEV = ("faces-dev/person_02/img12.jpg", "faces-dev/person_02/img53.jpg", "faces-dev/person_05/img16.jpg")


@pytest.mark.parametrize(("name", "words"), list(REFUSED.items()), ids=[ascii(n) for n in REFUSED])
def test_each_refused_name_gets_its_reason(name: str, words: str) -> None:
    reasons = name_reasons(name)
    assert reasons and any(words in reason for reason in reasons), reasons


@pytest.mark.parametrize("name", ACCEPTED, ids=[ascii(n) for n in ACCEPTED])
def test_names_of_one_script_and_visible_characters_are_accepted(name: str) -> None:
    assert name_reasons(name) == []
    assert identity_name_problems([name, "kate"], str) == []


@pytest.mark.parametrize("pair", LOOKALIKE_PAIRS, ids=[ascii(p) for p in LOOKALIKE_PAIRS])
def test_names_that_read_alike_are_refused_naming_both_folders(pair: tuple[str, str]) -> None:
    first, second = pair
    assert comparison_key(first) == comparison_key(second)

    problems = identity_name_problems([first, second, "zed"], lambda name: f"<{name}>")

    alike = [problem for problem in problems if "read as one name" in problem]
    assert len(alike) == 1
    assert f"<{shown(first)}" in alike[0] and f"<{shown(second)}" in alike[0]
    assert "<zed>" not in " ".join(problems)


def test_names_that_look_the_same_are_told_apart_by_their_code_points() -> None:
    (problem,) = identity_name_problems(["Jos\u00e9", "Jose\u0301"], str)
    assert "'Jos\\xe9'" in problem and "'Jose\\u0301'" in problem


def test_a_problem_names_the_folder_with_its_invisible_characters_written_out() -> None:
    problems = identity_name_problems(["\u202eecila"], lambda name: f"face_imgs/{name}/")
    assert problems[0].startswith("identity folder face_imgs/\\u202eecila/ holds a format character")
    assert "rename the folder" in problems[0]
    assert "\u202e" not in problems[0]


def test_every_formula_prefix_is_refused_and_neutralised() -> None:
    for prefix in FORMULA_PREFIXES:
        assert starts_like_formula(f"{prefix}x")
        assert name_reasons(f"{prefix}x")
        assert neutralised(f"{prefix}x") == f"'{prefix}x"
    for text in ("x=1", "kate/=x.jpg", "no_face", "", "'quoted"):
        assert neutralised(text) == text


# ---- rejected.csv: formula cells neutralised ------------------------------------------------------------


def test_rejected_csv_cells_that_start_like_formulas_are_neutralised_and_others_kept() -> None:
    builder = EnrollmentBuilder(
        stray_files=["=cmd|' /C calc'!A0.jpg", "+1.jpg", "-x.jpg", "@x.jpg", "ok.jpg"]
    )
    photo = PhotoRef("kate", "kate/=2+2.jpg", Path("kate/=2+2.jpg"))
    builder.add(Rejected(photo, None, Rejection("no_face", "=ERROR message from a library")))
    text = render_rejected(builder.finish(1), None)

    rows = list(csv.DictReader(io.StringIO(text)))
    photos = [row["photo"] for row in rows]
    assert photos[:5] == ["'=cmd|' /C calc'!A0.jpg", "'+1.jpg", "'-x.jpg", "'@x.jpg", "ok.jpg"]
    assert rows[5] == {
        "identity": "kate",
        "photo": "kate/=2+2.jpg",
        "reason": "no_face",
        "message": "'=ERROR message from a library",
    }
    assert not any(starts_like_formula(cell) for row in rows for cell in row.values())


# ---- names that are not UTF-8: how they are shown, and the job's listing ------------------------------


def _bytes_name(raw: bytes) -> str:
    return os.fsdecode(raw)  # as Linux hands it over: surrogates for the bytes that are not UTF-8


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"caf\xe9", "caf\\xe9"),
        (b"\xff\xfe", "\\xff\\xfe"),
        (b"j\xc3", "j\\xc3"),
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),
    ],
)
def test_names_that_are_not_utf8_are_shown_escaped(raw: bytes, text: str) -> None:
    name = _bytes_name(raw)
    assert undecodable(name) and not undecodable(text)
    assert shown_bytes(name) == text
    assert shown_bytes("Jos\u00e9") == "Jos\u00e9"


def _write_bytes_tree(root: Path, relatives: list[bytes], content: bytes) -> Path:
    for relative in relatives:
        path = os.path.join(os.fsencode(root), relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(content)
    return root


NOT_UTF8_TREE = [
    b"kate/1.jpg",
    b"kate/caf\xe9.jpg",  # a file
    b"kate/sub\xff/2.jpg",  # a folder inside an identity
    b"j\xf6rg/1.jpg",  # an identity folder: all its photos
    b"j\xf6rg/2.jpg",
    b"_strangers/\xfevisitors/1.jpg",  # a strangers' sub-folder
    b"_strangers/guest\x80.jpg",  # a stranger's file
    b"_strangers/ok.jpg",
    b"\xff.jpg",  # a stray file at the top
]


def test_listing_rejects_every_file_under_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    listing = list_channel(_write_bytes_tree(tmp_path, NOT_UTF8_TREE, b"x"))

    assert [p.key for p in listing.photos] == ["kate/1.jpg"]
    assert [p.key for p in listing.strangers] == ["_strangers/ok.jpg"]
    assert listing.stray_files == ["\\xff.jpg"]
    rejected = {ref.key: (ref.identity, rejection) for ref, rejection in listing.misnamed}
    assert sorted(rejected) == sorted(
        [
            *("kate/caf\\xe9.jpg", "kate/sub\\xff/2.jpg", "j\\xf6rg/1.jpg", "j\\xf6rg/2.jpg"),
            *("_strangers/\\xfevisitors/1.jpg", "_strangers/guest\\x80.jpg"),
        ]
    )
    assert all(rejection.reason == NAME_NOT_UTF8 for _, rejection in rejected.values())
    assert rejected["j\\xf6rg/1.jpg"][0] == "j\\xf6rg"
    assert "identity folder's name 'j\\xf6rg'" in rejected["j\\xf6rg/1.jpg"][1].message
    assert "file's name 'caf\\xe9.jpg'" in rejected["kate/caf\\xe9.jpg"][1].message
    assert "name of the folder 'sub\\xff'" in rejected["kate/sub\\xff/2.jpg"][1].message
    assert rejected["_strangers/\\xfevisitors/1.jpg"][0] == "_strangers"
    assert "name of the folder '\\xfevisitors'" in rejected["_strangers/\\xfevisitors/1.jpg"][1].message
    for ref, _ in listing.misnamed:  # every name can be written out
        ref.identity.encode("utf-8")
        ref.key.encode("utf-8")


# ---- the job, on real photos ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ["=HYPERLINK(evil)"],
        ["+cmd", "-2+3", "@SUM(A1)"],
        ["person_02\u200b"],
        ["\u202eecila"],
        ["x\n#y"],
        ["bob "],
        ["\u0430lice"],
        ["Alice", "alice"],
        ["Zo\u00eb", "Zoe\u0308"],
        ["\ufb01ona", "fiona"],
    ],
    ids=[
        "formula",
        "formulas",
        "zero-width",
        "rlo",
        "newline",
        "trailing-space",
        "mixed",
        "case",
        "nfd",
        "nfkc",
    ],
)
def test_the_job_refuses_hostile_identity_names_at_its_start(names, sagemaker_tree, run_job, shared_data):
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / KATE)
    for name, photo in zip(names, DEV, strict=False):
        sagemaker_tree.add_photo(name, "1.jpg", shared_data / photo)

    run = run_job(sagemaker_tree)

    failure = sagemaker_tree.failure()
    assert run.rc == 1 and failure is not None
    counted = re.search(r"\b(\d+) identity folder name (problems?), nothing was embedded", failure)
    assert counted and (counted[1] == "1") == (counted[2] == "problem"), failure
    assert "Internal error" not in failure and "Traceback" not in failure
    for name in names:
        assert f"face_imgs/{shown(name)}/" in failure
    assert "face_imgs/kate/" not in failure
    assert sagemaker_tree.model_files() == []  # nothing written, nothing embedded


@pytest.fixture(scope="module")
def accepted_run(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("accepted") / "opt_ml")
    names = ["Jos\u00e9", "\u674e\u96f7", "Mary-Jane O'Neil", "person_02"]
    for name, photo in zip(names, [KATE, *DEV], strict=True):
        tree.add_photo(name, "1.jpg", shared_data / photo)
    # Inside the known strangers' folder, the identity rules do not apply: these are no identities.
    for folder in ("=visitors", "\u0430lice", "Alice", "alice"):
        tree.add_photo(f"_strangers/{folder}", "1.jpg", shared_data / "faces-small/paul_rudd/1.jpg")
    run = module_job(tree)
    return tree, names, run


def test_the_job_enrolls_names_of_one_script_and_visible_characters(accepted_run):
    tree, names, run = accepted_run
    assert run.rc == 0, tree.failure()
    assert [name for name, _, _ in tree.enrollment()] == sorted(names)
    assert tree.metrics()["strangers"]["photos"] == 4


@pytest.fixture(scope="module")
def not_utf8_run(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    """Real photos under names that are not UTF-8 (file, identity folder, sub-folder, strangers' folder,
    stray), and stray files named like formulas, beside two people who enroll."""
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("not-utf8") / "opt_ml")
    tree.add_photo("kate", "1.jpg", shared_data / KATE)
    tree.add_photo("person_02", "1.jpg", shared_data / DEV[0])
    photo = (shared_data / DEV[1]).read_bytes()
    _write_bytes_tree(
        tree.images,
        [
            b"kate/caf\xe9.jpg",
            b"kate/sub\xff/2.jpg",
            b"j\xf6rg/1.jpg",
            b"j\xf6rg/2.jpg",
            b"_strangers/\xfevisitors/1.jpg",
            b"_strangers/guest\x80.jpg",
            b"\xff.jpg",
            b"=cmd.jpg",
            b"+1.jpg",
            b"-x.jpg",
            b"@x.jpg",
        ],
        photo,
    )
    run = module_job(tree)
    return tree, run


def test_names_that_are_not_utf8_are_rejections_and_the_job_succeeds(not_utf8_run):
    tree, run = not_utf8_run
    assert run.rc == 0, tree.failure()
    assert [name for name, _, _ in tree.enrollment()] == ["kate", "person_02"]
    rows = tree.rejected_by_photo()
    for key in ("kate/caf\\xe9.jpg", "kate/sub\\xff/2.jpg", "j\\xf6rg/1.jpg", "j\\xf6rg/2.jpg"):
        assert rows[key]["reason"] == NAME_NOT_UTF8, key
        assert "is not valid UTF-8" in rows[key]["message"] and "rename it" in rows[key]["message"]
    assert rows["j\\xf6rg/1.jpg"]["identity"] == "j\\xf6rg"
    assert "identity folder's name 'j\\xf6rg'" in rows["j\\xf6rg/2.jpg"]["message"]
    for key in ("_strangers/\\xfevisitors/1.jpg", "_strangers/guest\\x80.jpg"):
        assert rows[key]["reason"] == NAME_NOT_UTF8 and rows[key]["identity"] == ""
    assert rows["\\xff.jpg"]["reason"] == "not_in_identity_folder"
    metrics = tree.metrics()
    assert metrics["images_accepted"] == 2
    assert metrics["strangers"]["photos"] == 2


def test_stray_files_named_like_formulas_are_neutralised_in_rejected_csv(not_utf8_run):
    tree, _ = not_utf8_run
    rows = tree.rejected_by_photo()
    for name in ("=cmd.jpg", "+1.jpg", "-x.jpg", "@x.jpg"):
        assert rows[f"'{name}"]["reason"] == "not_in_identity_folder"
    cells = [cell for row in tree.rejected() for cell in row.values()]
    assert not any(starts_like_formula(cell) for cell in cells)


def _share(*keys: str) -> HostShare:
    outcomes = [
        Accepted(
            PhotoRef(key.split("/")[0], key, Path("/nowhere") / key),
            f"{index:064x}",
            DetectedFace((1.0, 2.0, 30.0, 40.0), 0.99, 1),
            np.eye(8, dtype=np.float32)[index % 8],
        )
        for index, key in enumerate(keys)
    ]
    count = len(outcomes)
    return HostShare(outcomes, [], computed=count, reused=0, photos=count, loop_seconds=1.0, examined=count)


def test_names_that_read_alike_across_two_hosts_shards_fail_the_job_naming_both_folders() -> None:
    settings = parse_settings([("hyperparameters", {"weights": "none"})])
    shares = [_share("Alice/1.jpg", "kate/1.jpg"), _share("alice/2.jpg", "_strangers/alice/1.jpg")]

    with pytest.raises(JobFailure) as raised:
        enroll(shares, settings)

    message = str(raised.value)
    assert "across the hosts' shards" in message
    assert "face_imgs/Alice/ and face_imgs/alice/" in message
    assert enroll([_share("Alice/1.jpg", "kate/1.jpg"), _share("bob/2.jpg")], settings).enrollment.identities
