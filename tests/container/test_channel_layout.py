"""The photos channel in either layout: each manifest entry at its suffix, or under its full S3 key.

start tells the job the manifest's key prefix (hyperparameter facetrain_images_prefix); the job reads
either layout with the same `<identity>/<photo>` keys, and refuses a tree that mixes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from facetrain.channel_layout import manifest_prefix
from facetrain.contract.names import IMAGES_PREFIX_HYPERPARAMETER
from facetrain.photos import list_channel
from facetrain.sagemaker_env import ContractError

# The manifest's entries (relative to its prefix), as validate writes them, and a skipped stray or two.
ENTRIES = ["alice/1.jpg", "alice/sub/2.jpg", "bob/1.jpg", "top.jpg"]
SKIPPED = [".DS_Store", "_notes/x.jpg"]


def _write(root: Path, relatives: list[str]) -> Path:
    for relative in relatives:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return root


def _listed(channel: Path, prefix: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    listing = list_channel(channel, prefix)
    for photo in listing.photos:  # each key names a file that is there
        assert photo.path.is_file() and photo.path.as_posix().endswith(photo.key)
    return [(photo.identity, photo.key) for photo in listing.photos], listing.stray_files


EXPECTED = (
    [("alice", "alice/1.jpg"), ("alice", "alice/sub/2.jpg"), ("bob", "bob/1.jpg")],
    ["top.jpg"],
)


@pytest.mark.parametrize("prefix", ["face_imgs/", "teams/berlin/photos/", "_staging/"])
def test_both_layouts_give_the_same_identities_and_keys(tmp_path: Path, prefix: str) -> None:
    suffix = _write(tmp_path / "suffix", ENTRIES + SKIPPED)
    full_key = _write(tmp_path / "full", [prefix + entry for entry in ENTRIES] + SKIPPED)
    assert _listed(suffix, prefix) == EXPECTED
    assert _listed(full_key, prefix) == EXPECTED  # keys as reuse and sharded hosts expect them


def test_without_a_prefix_the_channel_is_read_as_it_is(tmp_path: Path) -> None:
    full_key = _write(tmp_path, ["face_imgs/" + entry for entry in ENTRIES])
    photos, _ = _listed(full_key, None)  # a hand-made tree: no layout detection
    assert {identity for identity, _ in photos} == {"face_imgs"}


def test_an_empty_shard_is_an_empty_listing(tmp_path: Path) -> None:
    # ShardedByS3Key: a host may get no photo at all; nothing is written under the prefix then.
    (tmp_path / "face_imgs").mkdir()
    assert _listed(tmp_path / "face_imgs", "face_imgs/") == ([], [])


@pytest.mark.parametrize(
    ("relatives", "found"),
    [
        # both layouts: the prefix folder and identity folders beside it
        (
            ["face_imgs/alice/1.jpg", "bob/1.jpg"],
            "input/data/face_imgs/ holds face_imgs/ (the manifest prefix",
        ),
        # a photo outside the prefix, beside the full-key tree
        (["face_imgs/alice/1.jpg", "stray.jpg"], "and also 'stray.jpg'"),
        # deeper: a folder beside the prefix's next part
        (
            ["teams/berlin/photos/alice/1.jpg", "teams/paris/bob/1.jpg"],
            "input/data/face_imgs/teams/ holds berlin/ (the manifest prefix teams/berlin/photos/) "
            "and also 'paris'",
        ),
    ],
)
def test_a_tree_mixing_the_layouts_is_refused_naming_what_was_found(
    tmp_path: Path, relatives: list[str], found: str
) -> None:
    prefix = "teams/berlin/photos/" if relatives[0].startswith("teams/") else "face_imgs/"
    with pytest.raises(ContractError, match="mixes layouts") as refused:
        list_channel(_write(tmp_path, relatives), prefix)
    message = str(refused.value)
    assert found in message
    assert "expected either <identity>/<photo> folders at the top" in message
    assert "Traceback" not in message


def test_a_prefix_path_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, ["teams/berlin"])  # a file where the prefix's folder should be
    with pytest.raises(ContractError, match=r"has input/data/face_imgs/teams/berlin but it is not a folder"):
        list_channel(tmp_path, "teams/berlin/photos/")


def test_the_prefix_comes_raw_from_hyperparameters_json() -> None:
    assert manifest_prefix({}) is None
    assert manifest_prefix({IMAGES_PREFIX_HYPERPARAMETER: "2024/"}) == "2024/"  # never JSON-decoded
    with pytest.raises(ContractError, match="must be the images prefix as a string"):
        manifest_prefix({IMAGES_PREFIX_HYPERPARAMETER: 7})


def test_a_prefix_with_dot_dot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="not a usable key prefix"):
        list_channel(_write(tmp_path, ENTRIES), "../elsewhere/")


def test_the_prefix_is_not_read_as_a_setting(sagemaker_tree) -> None:
    from facetrain.job import resolve_settings
    from facetrain.sagemaker_env import load_environment

    sagemaker_tree.update_hyperparameters(**{IMAGES_PREFIX_HYPERPARAMETER: "face_imgs/"})
    settings = resolve_settings(load_environment(sagemaker_tree.base))  # no "unknown key" SettingsError
    assert IMAGES_PREFIX_HYPERPARAMETER not in settings.model_dump()
