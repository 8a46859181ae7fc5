"""Open-set calibration on real embeddings (issue 24): dlib-resnet descriptors of ../shared/data, computed
once per module by the job's own pipeline (nothing written to the checkout).

faces-dev (4 people, 24 photos) is enrolled; faces-small's 4 people are none of them (looked at). The
threshold is derived at the default target_fpir: 24 non-mated searches are far too few to show 0.001, so
it is data-bound, and every figure below is reasoned from the embeddings themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from facetrain.contract.decision import search
from facetrain.contract.hyperparameters import DEFAULT_ACCEPT_THRESHOLD, parse_settings
from facetrain.evaluation import evaluate
from facetrain.inference.runtimes import open_encoder, resolve_models
from facetrain.photos import PhotoRef
from facetrain.pipeline import Accepted, PhotoPipeline
from facetrain.threshold_calibration import DATA_BOUND_FRACTION

TARGET_FPIR = parse_settings([]).target_fpir  # the default


@pytest.fixture(scope="module")
def photos(shared_data):
    """{"faces-dev" | "faces-small": (embeddings (n, 128) unit rows, identity per row, file name per row)}."""
    settings = parse_settings([("test", {"embedder": "dlib-resnet"})])
    encoder = open_encoder(settings, resolve_models(settings, None), "cpu")
    refs = [
        PhotoRef(identity=f"{folder}/{person.name}", key=photo.name, path=photo)
        for folder in ("faces-dev", "faces-small")
        for person in sorted((shared_data / folder).iterdir())
        if person.is_dir()
        for photo in sorted(person.iterdir())
    ]
    outcomes = list(PhotoPipeline(settings, encoder).run(refs))
    assert all(isinstance(o, Accepted) for o in outcomes), "every photo of faces-dev/-small has a face"
    result = {}
    for folder in ("faces-dev", "faces-small"):
        mine = [o for o in outcomes if o.photo.identity.startswith(folder + "/")]
        rows = np.stack([np.asarray(o.embedding, np.float64) for o in mine])
        result[folder] = (
            rows / np.linalg.norm(rows, axis=1, keepdims=True),
            np.array([o.photo.identity.split("/")[1] for o in mine]),
            [o.photo.key for o in mine],
        )
    return result


def enroll(embeddings, people, **options):
    """evaluate() as the job calls it with default settings for dlib-resnet; returns (evaluation, names)."""
    names = sorted(set(people))
    labels = np.array([names.index(p) for p in people])
    keys = [f"{p}/{i}" for i, p in enumerate(people)]
    options.setdefault("target_fpir", TARGET_FPIR)
    fallback = DEFAULT_ACCEPT_THRESHOLD["dlib-resnet"]
    return evaluate(embeddings, labels, names, keys, 0.001, fallback, **options), names


def means_of(embeddings, people, names):
    totals = np.stack([embeddings[people == name].sum(axis=0) for name in names])
    return totals / np.linalg.norm(totals, axis=1, keepdims=True)


def test_faces_dev_enrolled_refuses_every_faces_small_person(photos):
    embeddings, people, _ = photos["faces-dev"]
    evaluation, names = enroll(embeddings, people)
    summary = evaluation.summary
    assert summary["threshold_source"] == "data-bound"
    open_set = summary["open_set"]
    assert (open_set["gallery_size"], open_set["fpir"]["trials"], open_set["fnir"]["trials"]) == (4, 24, 24)
    assert open_set["fpir"]["errors"] == 0 and open_set["fnir"]["errors"] == 0  # every mated search accepted
    assert open_set["smallest_supported_fpir"] == pytest.approx(1 - 0.025 ** (1 / 24), abs=1e-6)  # 0.1425
    assert "smallest FPIR 24 searches can support" in summary["threshold_note"]
    # faces-small were never seen by the calibration: each of them is refused by its threshold
    strangers = photos["faces-small"][0]
    means = means_of(embeddings, people, names)
    for row in strangers:
        result = search(np.linalg.norm(means - row, axis=1).tolist(), evaluation.threshold)
        assert not result.accepted, f"a faces-small person accepted at {result.distance:.4f}"
    # and as known strangers: 4 strangers, 0 accepted
    again, _ = enroll(embeddings, people, strangers=strangers)
    assert again.summary["open_set"]["known_strangers"]["errors"] == 0
    assert again.summary["open_set"]["known_strangers"]["trials"] == 4
    assert again.summary["open_set"]["fpir"]["trials"] == 28


def test_every_held_out_faces_dev_photo_is_identified(photos):
    embeddings, people, _ = photos["faces-dev"]
    first = np.array([np.flatnonzero(people == name)[0] for name in sorted(set(people))])
    rest = np.setdiff1d(np.arange(len(people)), first)
    evaluation, names = enroll(embeddings[rest], people[rest])
    means = means_of(embeddings[rest], people[rest], names)
    for index in first:
        result = search(np.linalg.norm(means - embeddings[index], axis=1).tolist(), evaluation.threshold)
        assert result.accepted and names[result.nearest] == people[index], (result, evaluation.threshold)


def test_thin_data_threshold_is_exactly_the_data_bound_rule(photos):
    """Two people only (person_02, person_04): 11 non-mated searches, reasoned about from the embeddings."""
    embeddings, people, _ = photos["faces-dev"]
    keep = np.isin(people, ["person_02", "person_04"])
    x, who = embeddings[keep], people[keep]
    evaluation, names = enroll(x, who)
    summary = evaluation.summary
    means = means_of(x, who, names)
    other = np.array([np.linalg.norm(row - means[1 - names.index(p)]) for row, p in zip(x, who, strict=True)])
    own = []
    for i, (row, p) in enumerate(zip(x, who, strict=True)):
        rest = x[(who == p) & (np.arange(len(x)) != i)].sum(axis=0)
        own.append(np.linalg.norm(row - rest / np.linalg.norm(rest)))
    nearest, largest = other.min(), max(own)
    expected = math.floor(min(nearest * (1 - DATA_BOUND_FRACTION), (nearest + largest) / 2) * 1e4) / 1e4
    assert summary["threshold_source"] == "data-bound"
    assert summary["threshold"] == pytest.approx(expected, abs=1e-9)
    assert largest < summary["threshold"] < nearest  # every genuine photo in, every non-mated search out
    n = len(x)
    assert summary["open_set"]["fpir"] == {
        "errors": 0,
        "trials": n,
        "rate": 0.0,
        "lower_95": 0.0,
        "upper_95": pytest.approx(1 - 0.025 ** (1 / n), abs=2e-6),
    }
    assert summary["open_set"]["nearest_non_mated_distance"] == pytest.approx(nearest, abs=1e-6)


def test_an_explicit_threshold_is_published_and_warned_about(photos):
    embeddings, people, _ = photos["faces-dev"]
    derived, _ = enroll(embeddings, people)
    loose, _ = enroll(embeddings, people, accept_threshold=0.45)  # the nearest non-mated search is 0.419
    assert (loose.summary["threshold"], loose.summary["threshold_source"]) == (0.45, "configured")
    assert "WARNING" in loose.summary["threshold_note"]
    assert str(derived.threshold) in loose.summary["threshold_note"]
    assert loose.summary["open_set"]["fpir"]["errors"] >= 1
    strict, _ = enroll(embeddings, people, accept_threshold=0.3)
    assert (strict.summary["threshold"], strict.summary["threshold_source"]) == (0.3, "configured")
    assert "WARNING" not in strict.summary["threshold_note"]


def test_a_larger_real_gallery_gives_a_stricter_threshold(photos):
    """faces-dev plus faces-small's 4 people (one photo each) enrolled: 8 identities, 28 searches. The
    dlib-resnet fallback was derived from exactly this gallery (contract/hyperparameters.py)."""
    dev, dev_people, _ = photos["faces-dev"]
    small, small_people, _ = photos["faces-small"]
    four, _ = enroll(dev, dev_people)
    eight, _ = enroll(np.concatenate([dev, small]), np.concatenate([dev_people, small_people]))
    assert eight.summary["open_set"]["gallery_size"] == 8
    assert eight.threshold < four.threshold
    assert eight.summary["open_set"]["fpir"]["errors"] == 0
    assert eight.summary["open_set"]["fpir"]["upper_95"] >= eight.summary["open_set"]["fpir"]["rate"]
    assert DEFAULT_ACCEPT_THRESHOLD["dlib-resnet"] <= eight.threshold
