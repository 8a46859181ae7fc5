"""images_per_second is over the photos the run examined: reused and resumed photos are counted apart
(embeddings_reused), and a run that examined none has no rate (None), never a rate over photos it only
hashed (issue 25: 4.5e10 photos/s)."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
from facetrain.contract.hyperparameters import parse_settings
from facetrain.contract.metrics import parse_metrics
from facetrain.distributed import HostShare
from facetrain.job import enroll
from facetrain.job_metrics import images_per_second

PEOPLE = ("person_02", "person_04")


def _tree(sagemaker_tree_class, base, shared_data, limit):
    tree = sagemaker_tree_class(base)
    tree.add_identities(shared_data / "faces-dev", limit=limit, names=PEOPLE)
    return tree


def _timed(run_job, tree) -> float:
    started = time.perf_counter()
    assert run_job(tree).rc == 0, tree.failure()
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def full(sagemaker_tree_class, shared_data, tmp_path_factory, module_job):
    """A first run (2 photos of each person), every photo examined; shared by the module's tests."""
    tree = _tree(sagemaker_tree_class, tmp_path_factory.mktemp("rate") / "full", shared_data, limit=2)
    tree.wall_seconds = _timed(module_job, tree)
    return tree


def _with_previous(tree, previous):
    shutil.copy(previous.model / "saved_embeddings.pkl", tree.channel("previous") / "saved_embeddings.pkl")
    return tree


def test_a_full_run_rates_every_photo_it_examined(full):
    metrics = full.metrics()
    assert metrics["photos_examined"] == metrics["images_total"] == 4
    assert metrics["embeddings_reused"] == 0
    # photos examined / rate is the photo loop's duration, which lies within the run
    assert metrics["photos_examined"] / metrics["images_per_second"] <= full.wall_seconds
    assert parse_metrics(metrics).photos_examined == 4


@pytest.mark.parametrize("new_per_person", [0, 1, 2])
def test_reused_photos_are_not_in_the_rate(
    sagemaker_tree_class, shared_data, tmp_path, run_job, full, new_per_person, caplog
):
    caplog.set_level(logging.INFO, logger="facetrain")
    tree = _with_previous(
        _tree(
            sagemaker_tree_class, tmp_path / f"plus{new_per_person}", shared_data, limit=2 + new_per_person
        ),
        full,
    )
    wall = _timed(run_job, tree)
    metrics = tree.metrics()
    examined = new_per_person * len(PEOPLE)
    assert (metrics["photos_examined"], metrics["embeddings_reused"]) == (examined, 4)
    if examined == 0:
        assert metrics["images_per_second"] is None  # nothing examined: no rate, not photos / 0.00001 s
        assert "photos/s" in tree.model.joinpath("report.html").read_text(encoding="utf-8")
        assert "(0 examined now); " in caplog.text and "None photos/s" not in caplog.text  # the job's log
    else:
        # photos examined / rate is the loop's duration: within the run's wall time, and not a sliver of it
        loop = examined / metrics["images_per_second"]
        assert loop <= wall
        # detection, cropping and embedding run one after the other in the loop's thread: it lasts as long
        serial = sum(metrics["timings"][stage] for stage in ("detect", "crop", "embed"))
        assert loop >= serial - 0.001, (loop, metrics["timings"])


def _share(examined: int, reused: int, loop_seconds: float) -> HostShare:
    return HostShare([], [], examined, reused, examined + reused, loop_seconds, examined)


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ([_share(0, 100, 2e-6)], None),  # every photo reused: no rate
        ([_share(0, 50, 1e-6), _share(0, 50, 3e-6)], None),
        ([_share(0, 100, 1e-6), _share(10, 0, 5.0)], 2.0),  # the reusing host neither counts nor times
        ([_share(10, 90, 5.0), _share(10, 0, 4.0)], 4.0),  # 20 examined over the slowest loop, 5 s
        ([_share(0, 100, 0.5), _share(10, 0, 0.25)], 40.0),  # hashing 100 photos is no photo loop
        ([_share(3, 0, 0.0)], None),  # a loop too short to time
    ],
)
def test_the_rate_counts_examined_photos_over_the_slowest_examining_host(shares, expected):
    enrolled = enroll(shares, parse_settings([]))
    assert images_per_second(enrolled.examined, enrolled.slowest_loop) == expected
    assert enrolled.reused == sum(share.reused for share in shares)


@pytest.mark.parametrize(("examined", "seconds"), [(0, 1.0), (0, 0.0), (5, 0.0)])
def test_no_rate_without_photos_examined_or_time(examined, seconds):
    assert images_per_second(examined, seconds) is None


def test_metrics_written_before_photos_examined_still_read(full):
    metrics = full.metrics()
    del metrics["photos_examined"]
    assert parse_metrics(metrics).photos_examined is None
