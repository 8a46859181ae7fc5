"""Hostile and unicode identity folder names stay data in every output of the job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HOSTILE = 'x"];import os;os.system("touch PWNED")#'
NAMES = [
    HOSTILE,
    "x'];__import__('os').system('touch PWNED');#",
    "Zoë Ñúñez",  # NFC
    "名前",
    'O\'Brien "Bob"',
    "Smith, John Jr., and Co",
    "#hash first",
]  # a formula, the NFD twin of a name, a newline: refused (tests/container/test_identity_names.py)
PHOTOS = [
    "faces-small/kate_siegel/1.jpg",
    "faces-small/angelina_jolie/1.jpg",
    "faces-dev/person_02/img12.jpg",
    "faces-dev/person_05/img16.jpg",
    "faces-dev/person_05/img62.jpg",
    "faces-dev/person_10/img46.jpg",
    "faces-dev/person_10/img44.jpg",
]

IMPORT_RULES = textwrap.dedent(
    """\
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("rules", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(json.dumps(module.RULES["identities"]))
    """
)


@pytest.fixture(scope="module")
def names_run(sagemaker_tree_class, tmp_path_factory, shared_data, module_job):
    tree = sagemaker_tree_class(tmp_path_factory.mktemp("names") / "opt_ml")
    for name, photo in zip(NAMES, PHOTOS, strict=True):
        tree.add_photo(name, "photo 1, final.jpg", shared_data / photo)
    result = module_job(tree)
    assert result.rc == 0, tree.failure()
    return tree, result


def test_folder_names_are_what_the_job_sees(names_run):
    tree, _ = names_run
    assert sorted(p.name for p in tree.images.iterdir()) == sorted(NAMES)


def test_csv_identities_round_trip_exactly(names_run):
    tree, _ = names_run
    rows = tree.enrollment()
    assert [name for name, _, _ in rows] == sorted(NAMES)
    assert all(count == 1 for _, count, _ in rows)
    assert len({tuple(values) for _, _, values in rows}) == len(NAMES)


def test_rules_identities_are_the_folder_names(names_run):
    tree, _ = names_run
    assert tree.rules()["identities"] == sorted(NAMES)


def test_importing_rules_py_runs_no_code(names_run, tmp_path, assert_not_pwned):
    tree, _ = names_run
    rules_copy = tmp_path / "rules.py"
    rules_copy.write_bytes((tree.model / "rules.py").read_bytes())
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_RULES, str(rules_copy)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == sorted(NAMES)
    assert_not_pwned(tmp_path)


def test_names_in_records_and_metrics(names_run, assert_not_pwned):
    tree, run = names_run
    records = tree.records()
    assert sorted(records) == sorted(f"{name}/photo 1, final.jpg" for name in NAMES)
    assert {record["identity"] for record in records.values()} == set(NAMES)
    assert tree.metrics()["identities"] == len(NAMES)
    assert_not_pwned(run.cwd, tree.base)


def test_rejected_csv_keeps_hostile_names(sagemaker_tree, run_job, shared_data):
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / "faces-small" / "kate_siegel" / "1.jpg")
    sagemaker_tree.add_photo(HOSTILE, 'bad "photo", 1.jpg', b"not an image")
    assert run_job(sagemaker_tree).rc == 0, sagemaker_tree.failure()
    row = sagemaker_tree.rejected_by_photo()[f'{HOSTILE}/bad "photo", 1.jpg']
    assert row["identity"] == HOSTILE
    assert row["reason"] == "not_an_image"
    assert HOSTILE in sagemaker_tree.metrics()["identities_excluded"]


def test_identity_with_newline_and_hash_is_refused_naming_the_folder(sagemaker_tree, run_job, shared_data):
    """Once enrolled as its own identity (a newline renders as nothing in most places): now refused before
    anything is embedded, as every name with a character people cannot see."""
    sagemaker_tree.add_photo("x\n#y", "1.jpg", shared_data / "faces-small" / "kate_siegel" / "1.jpg")
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / "faces-small" / "kate_siegel" / "1.jpg")
    assert run_job(sagemaker_tree).rc == 1
    failure = sagemaker_tree.failure()
    assert "face_imgs/x\\u000a#y/" in failure and "rename the folder" in failure


def test_rejected_row_of_identity_starting_with_hash_is_not_a_comment(sagemaker_tree, run_job, shared_data):
    sagemaker_tree.add_photo("kate", "1.jpg", shared_data / "faces-small" / "kate_siegel" / "1.jpg")
    sagemaker_tree.add_photo("#team", "bad.jpg", b"not an image")
    assert run_job(sagemaker_tree).rc == 0, sagemaker_tree.failure()
    comment_lines = [line for line in sagemaker_tree.rejected_text().splitlines() if line.startswith("#")]
    assert comment_lines == [line for line in comment_lines if line.startswith("# NOT FOR PRODUCTION")]
    assert sagemaker_tree.rejected_by_photo()["#team/bad.jpg"]["reason"] == "not_an_image"
