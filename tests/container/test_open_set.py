"""Open-set (1:N search) calibration (issue 24): exact bounds, the threshold rules, the known strangers,
the operator's threshold, and a larger gallery giving a stricter threshold; on synthetic embeddings of
known geometry (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from facetrain.contract.hyperparameters import parse_settings
from facetrain.contract.metrics import OpenSetEvaluation
from facetrain.error_bounds import clopper_pearson, error_rate, smallest_supported_rate
from facetrain.evaluation import evaluate
from facetrain.open_set import search_error_curve
from facetrain.threshold_calibration import DATA_BOUND_FRACTION


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def gallery(identities, photos, dim=64, spread=0.45, seed=0):
    """`identities` random directions, `photos` noisy photos of each: embeddings, labels, names, keys."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(identities, dim)))
    labels = np.repeat(np.arange(identities), photos)
    embeddings = unit(centres[labels] + spread * rng.normal(size=(labels.size, dim)) / math.sqrt(dim))
    return embeddings, labels, [f"id{i}" for i in range(identities)], [f"{i}.jpg" for i in range(labels.size)]


def strangers_of(count, dim=64, spread=0.45, seed=99):
    """Photos of `count` people who are not enrolled (one photo each)."""
    return gallery(count, 1, dim, spread, seed)[0]


def run(embeddings, labels, names, keys, **options):
    options.setdefault("target_fpir", 0.01)
    return evaluate(embeddings, labels, names, keys, 0.001, options.pop("fallback", 1.1), **options)


def brute_force(embeddings, labels, k, strangers=None):
    """Non-mated nearest distances (enrolled photos then strangers), mated distances and hits."""
    totals = np.stack([embeddings[labels == j].sum(axis=0) for j in range(k)])
    means = unit(totals)
    distances = np.linalg.norm(embeddings[:, None] - means[None], axis=2)
    own = np.array(
        [np.linalg.norm(embeddings[i] - unit(totals[labels[i]] - embeddings[i])) for i in range(len(labels))]
    )
    distances[np.arange(len(labels)), labels] = np.inf
    non_mated = distances.min(axis=1)
    outside = np.empty(0)
    if strangers is not None and len(strangers):
        outside = np.linalg.norm(strangers[:, None] - means[None], axis=2).min(axis=1)
    return non_mated, outside, own, own < non_mated


# -- exact bounds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "trials", "lower", "upper"),
    [  # published Clopper-Pearson intervals (e.g. scipy.stats.binomtest(...).proportion_ci("exact"))
        (1, 10, 0.002529, 0.445016),
        (5, 10, 0.187086, 0.812914),
        (3, 1000, 0.000619, 0.008742),
        (0, 72, 0.0, 0.049944),
        (10, 10, 0.691503, 1.0),
    ],
)
def test_clopper_pearson_matches_the_published_intervals(errors, trials, lower, upper):
    low, high = clopper_pearson(errors, trials)
    assert low == pytest.approx(lower, abs=2e-6) and high == pytest.approx(upper, abs=2e-6)
    written = error_rate(errors, trials)
    assert written["lower_95"] <= low <= high <= written["upper_95"]  # rounded outward
    assert written["rate"] == pytest.approx(errors / trials)


def test_no_trials_give_no_rate_and_the_smallest_supported_rate():
    assert error_rate(0, 0) == {"errors": 0, "trials": 0, "rate": None, "lower_95": None, "upper_95": None}
    assert smallest_supported_rate(0) is None
    assert smallest_supported_rate(24) == pytest.approx(1 - 0.025 ** (1 / 24))  # 0.1425: 24 searches
    assert smallest_supported_rate(3688) < 0.001 < smallest_supported_rate(3687)  # ~3.7/n


# -- the threshold rules --------------------------------------------------------------------------------


def test_calibrated_accepts_no_more_non_mated_searches_than_the_target_allows():
    embeddings, labels, names, keys = gallery(40, 8, seed=1)
    strangers = strangers_of(60)
    evaluation = run(embeddings, labels, names, keys, target_fpir=0.02, strangers=strangers)
    summary = evaluation.summary
    non_mated, outside, mated, hit = brute_force(embeddings, labels, 40, strangers)
    searches = np.concatenate([non_mated, outside])
    allowed = math.floor(0.02 * searches.size)  # 380 searches: 7 allowed
    threshold = summary["threshold"]
    assert summary["threshold_source"] == "calibrated"
    assert np.count_nonzero(searches <= threshold) <= allowed < np.count_nonzero(searches <= threshold + 1e-4)
    open_set = OpenSetEvaluation.model_validate(summary["open_set"])  # the contract, exactly
    assert open_set.gallery_size == 40 and open_set.target_fpir == 0.02
    assert (open_set.fpir.errors, open_set.fpir.trials) == (np.count_nonzero(searches <= threshold), 380)
    assert open_set.fnir.errors == np.count_nonzero(~(hit & (mated <= threshold)))
    assert open_set.fnir.trials == 320
    assert open_set.known_strangers.trials == 60
    assert open_set.known_strangers.errors == np.count_nonzero(outside <= threshold)
    assert open_set.nearest_non_mated_distance == pytest.approx(searches.min(), abs=1e-6)
    assert open_set.smallest_supported_fpir == pytest.approx(1 - 0.025 ** (1 / 380), abs=1e-6)
    np.testing.assert_allclose(np.sort(evaluation.stranger_non_mated), np.sort(outside), atol=1e-9)
    np.testing.assert_allclose(evaluation.mated, mated, atol=1e-9)
    assert np.array_equal(evaluation.mated_hit, hit)


def test_known_strangers_count_as_non_mated_searches():
    embeddings, labels, names, keys = gallery(40, 8, seed=1)
    strangers = strangers_of(60)
    without = run(embeddings, labels, names, keys, target_fpir=0.005).summary
    with_strangers = run(embeddings, labels, names, keys, target_fpir=0.005, strangers=strangers).summary
    assert without["open_set"]["known_strangers"] is None
    assert (
        without["open_set"]["fpir"]["trials"] == 320 and with_strangers["open_set"]["fpir"]["trials"] == 380
    )
    # 320 searches at 0.005 allow 1; with the strangers 380 still allow 1 but the nearest are the strangers'
    assert with_strangers["threshold"] <= without["threshold"]


def test_a_stranger_nearer_than_every_enrolled_photo_sets_the_data_bound_threshold():
    embeddings, labels, names, keys = gallery(4, 6, seed=2)  # 24 non-mated searches: too few for 0.001
    non_mated, _, mated, _ = brute_force(embeddings, labels, 4)
    lookalike = unit(embeddings[labels == 1].mean(axis=0) + 0.02 * unit(np.ones(64)))[None]
    plain = run(embeddings, labels, names, keys, target_fpir=0.001).summary
    guarded = run(embeddings, labels, names, keys, target_fpir=0.001, strangers=lookalike).summary
    assert plain["threshold_source"] == guarded["threshold_source"] == "data-bound"
    nearest = min(non_mated.min(), np.linalg.norm(lookalike[0] - unit(embeddings[labels == 1].sum(axis=0))))
    assert guarded["open_set"]["nearest_non_mated_distance"] == pytest.approx(nearest, abs=1e-6)
    assert guarded["threshold"] < nearest < plain["threshold"]  # the stranger pulls the threshold down
    assert guarded["open_set"]["known_strangers"] == error_rate(0, 1)
    margin_rule = min(nearest * (1 - DATA_BOUND_FRACTION), (nearest + mated.max()) / 2)
    assert margin_rule - 1e-4 <= guarded["threshold"] < margin_rule


def test_the_operators_threshold_is_published_as_given_and_warned_when_looser():
    embeddings, labels, names, keys = gallery(4, 6, seed=2)
    non_mated = brute_force(embeddings, labels, 4)[0]
    ranked = np.sort(non_mated)
    loose = float(np.round((ranked[3] + ranked[4]) / 2, 6))  # accepts 4 of the 24 non-mated searches
    summary = run(embeddings, labels, names, keys, accept_threshold=loose).summary
    assert (summary["threshold"], summary["threshold_source"]) == (loose, "configured")
    assert "WARNING" in summary["threshold_note"]
    assert "accepts 4 of 24 non-mated searches" in summary["threshold_note"]
    assert summary["open_set"]["fpir"]["errors"] == 4
    strict = float(np.round(non_mated.min() / 2, 4))
    summary = run(embeddings, labels, names, keys, accept_threshold=strict).summary
    assert (summary["threshold"], summary["threshold_source"]) == (strict, "configured")
    assert "WARNING" not in summary["threshold_note"]


def test_accept_threshold_left_out_means_calibrate_and_an_explicit_one_is_kept():
    assert parse_settings([]).accept_threshold is None
    assert parse_settings([("h", {"embedder": "dlib-resnet"})]).accept_threshold is None
    assert parse_settings([("h", {"accept_threshold": "0.39"})]).accept_threshold == 0.39
    assert parse_settings([]).target_fpir == 0.001


def test_a_single_identity_uses_the_fallback_loudly():
    embeddings, labels, names, keys = gallery(1, 6, seed=3)
    summary = run(embeddings, labels, names, keys, fallback=0.34).summary
    assert (summary["threshold"], summary["threshold_source"]) == (0.34, "default")
    assert summary["threshold_note"].startswith("WARNING: no non-mated search")
    assert (
        summary["open_set"]["fpir"]["trials"] == 0 and summary["open_set"]["smallest_supported_fpir"] is None
    )


def test_the_search_det_curve_matches_the_definitions():
    embeddings, labels, names, keys = gallery(10, 5, seed=4, spread=0.9)
    evaluation = run(embeddings, labels, names, keys)
    thresholds, fpir, fnir = search_error_curve(evaluation.searches)
    assert np.all(np.diff(thresholds) > 0) and np.all(np.diff(fpir) >= 0) and np.all(np.diff(fnir) <= 0)
    for index in (0, len(thresholds) // 2, len(thresholds) - 1):
        t = thresholds[index]
        assert fpir[index] == pytest.approx(np.mean(evaluation.non_mated <= t))
        assert fnir[index] == pytest.approx(1 - np.mean(evaluation.mated_hit & (evaluation.mated <= t)))


# -- growth: FPIR grows with the gallery, so the threshold must tighten ----------------------------------


def test_a_larger_gallery_gives_a_stricter_threshold_at_the_same_target():
    small = gallery(20, 10, seed=5)
    large = gallery(400, 10, seed=5)  # its first 20 identities are the small gallery's
    fresh = strangers_of(3000, seed=6)  # people in neither gallery
    results = {}
    for name, (embeddings, labels, names, keys) in {"small": small, "large": large}.items():
        evaluation = run(embeddings, labels, names, keys, target_fpir=0.01)
        summary = evaluation.summary
        assert summary["threshold_source"] == "calibrated"
        fpir = summary["open_set"]["fpir"]
        assert fpir["rate"] <= 0.01 and fpir["lower_95"] <= fpir["rate"] <= fpir["upper_95"]
        searches = evaluate(
            embeddings,
            labels,
            names,
            keys,
            0.001,
            1.1,
            accept_threshold=summary["threshold"],
            strangers=fresh,
        ).summary["open_set"]["known_strangers"]
        results[name] = (summary["threshold"], fpir, searches)
    (small_t, _, small_fresh), (large_t, large_fpir, large_fresh) = results["small"], results["large"]
    assert large_t < small_t
    # The small gallery's threshold would let in far more strangers searching the large gallery ...
    reused = evaluate(*large, 0.001, 1.1, accept_threshold=small_t, strangers=fresh).summary
    assert reused["open_set"]["known_strangers"]["rate"] > 3 * large_fresh["upper_95"]
    # ... while each calibrated threshold holds for fresh strangers within its own run's bound
    assert large_fresh["rate"] <= large_fpir["upper_95"]
    assert small_fresh["rate"] <= results["small"][1]["upper_95"]
