"""The `facetrain` command's own words (issue 27): `--version` from the package metadata, an unknown option
answered with the subcommand's usage, `run --help` saying what runs without weights, `identify` saying
plainly what is wrong with a results folder, and the upload line counting files as the job will see them.
None of these starts anything."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from facetrain_offline.cli import build_parser, main
from facetrain_offline.run_triggers import uploaded_files

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"facetrain {declared}\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "photos", "--out", "o", "--bogus"],
        ["identify", "a.jpg", "--results", "r", "--bogus"],
        ["forget", "ann", "--out", "o", "--bogus"],
        ["launch", "--bucket", "b", "--role", "arn:aws:iam::1:role/r", "--bogus"],
    ],
)
def test_an_unknown_option_is_refused_with_the_subcommands_usage(capsys, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert f"usage: facetrain {argv[0]} " in err, err
    assert f"facetrain {argv[0]}: error: unrecognized arguments: --bogus" in err
    assert "{run,identify" not in err  # not the top-level usage, which lists only the commands


def test_run_help_says_what_runs_without_weights() -> None:
    """embedder_choice.default_embedder: facenet with vggface2 where its file is, else dlib-resnet, else
    weights=none; never "else none" alone."""
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = " ".join(run.format_help().split())
    assert "facenet with vggface2 when its file is where the job runs" in text
    assert "else embedder=dlib-resnet, else (dlib not installed) weights=none" in text


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: tmp / "nowhere", "the results folder {path} does not exist: give the folder holding"),
        (lambda tmp: _file(tmp / "rules.py"), "{path} is a file, not a results folder: give the folder"),
        (lambda tmp: tmp, "{path}/rules.py is missing; {path} is not a published results folder"),
    ],
)
def test_identify_says_what_is_wrong_with_the_results_folder(tmp_path, capsys, make, words: str) -> None:
    photo = _file(tmp_path / "photo.jpg")
    results = make(tmp_path)
    code = main(["identify", str(photo), "--results", str(results)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith(f"facetrain identify: {words.format(path=results)}"), captured.err
    assert "saved_embeddings.pkl are invalid" not in captured.err and "Traceback" not in captured.err


def _file(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def test_the_upload_line_counts_files_as_the_job_sees_them() -> None:
    keys = [
        "face_imgs/ann/1.jpg",
        "face_imgs/ann/2.heic",
        "face_imgs/bob/1.jpg",
        "face_imgs/_strangers/x.jpg",
        "face_imgs/_old/y.jpg",
        "face_imgs/loose.jpg",
    ]
    assert uploaded_files(keys, "face_imgs/") == (
        "6 files (3 in 2 people's folders, 1 in the known strangers' folder, 1 outside any person's folder, "
        "1 in folders starting with _ (ignored by the job))"
    )
    assert uploaded_files(["p/ann/1.jpg"], "p/") == "1 file (1 in 1 person's folder)"
