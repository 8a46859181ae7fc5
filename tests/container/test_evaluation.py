"""facetrain.evaluation (with its embedding_distances and threshold_calibration) on embeddings of known
geometry (no model, no torch)."""

from __future__ import annotations

import math
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from facetrain.contract.hyperparameters import SettingsError, parse_settings
from facetrain.evaluation import evaluate
from facetrain.threshold_calibration import BIN_WIDTH, MIN_GENUINE


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def clusters(sizes, dim=16, spread=0.35, seed=0):
    """One orthogonal direction per identity, photos scattered around it; returns embeddings, labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(sizes)]
    rows, labels = [], []
    for index, size in enumerate(sizes):
        rows.append(centres[index] + spread * rng.normal(size=(size, dim)))
        labels += [index] * size
    return unit(np.concatenate(rows)), np.array(labels)


def names(count):
    return [f"id{i}" for i in range(count)]


def keys(labels):
    return [f"id{label}/{i}.jpg" for i, label in enumerate(labels)]


def reference(embeddings, labels, k):
    """Brute force: explicit leave-one-out means, every distance kept."""
    x = embeddings.astype(np.float64)
    means = []
    for j in range(k):
        total = x[labels == j].sum(axis=0)
        means.append(total / np.linalg.norm(total))
    genuine, impostor, correct = [], [], []
    for i, (row, label) in enumerate(zip(x, labels, strict=True)):
        others = {j: float(np.linalg.norm(row - means[j])) for j in range(k) if j != label}
        impostor.extend(others.values())
        if np.count_nonzero(labels == label) >= 2:
            rest = x[(labels == label) & (np.arange(len(x)) != i)].sum(axis=0)
            own = float(np.linalg.norm(row - rest / np.linalg.norm(rest)))
            genuine.append(own)
            correct.append(all(own < d for d in others.values()))
    return np.array(genuine), np.array(impostor), correct


def nearest_other(embeddings, labels, k):
    """Brute force non-mated searches: each photo's nearest mean of another identity."""
    x, labels = embeddings.astype(np.float64), np.asarray(labels)
    totals = np.stack([x[labels == j].sum(axis=0) for j in range(k)])
    means = totals / np.linalg.norm(totals, axis=1, keepdims=True)
    distances = np.linalg.norm(x[:, None, :] - means[None], axis=2)
    distances[np.arange(len(x)), labels] = np.inf
    return distances.min(axis=1)


def run(embeddings, labels, k, target_far=0.01, default=1.1, **options):
    return evaluate(embeddings, labels, names(k), keys(labels), target_far, default, **options)


def test_two_photos_leave_one_out_mean_is_the_other_photo():
    theta = 0.3
    embeddings = unit([[math.cos(theta), math.sin(theta), 0], [math.cos(theta), -math.sin(theta), 0]])
    evaluation = run(embeddings, [0, 0], 1)
    # each photo's own mean without it is the other photo: distance 2 sin(theta), not the (closer) full mean
    np.testing.assert_allclose(evaluation.genuine, [2 * math.sin(theta)] * 2, atol=1e-6)
    summary = evaluation.summary
    assert summary["identification_accuracy"] == 1.0
    assert summary["impostor"]["count"] == 0
    assert summary["false_accept_rate"] is None
    assert summary["threshold_source"] == "default"


def test_leave_one_out_mean_is_renormalised():
    # photo 0 = e0; the others are e1 and e2: their mean without photo 0 is (e1+e2)/sqrt(2)
    embeddings = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    evaluation = run(embeddings, [0, 0, 0], 1)
    # |e0 - (e1+e2)/sqrt2| = sqrt(1 + 1) = sqrt2 (an un-normalised mean would give sqrt(1.5))
    np.testing.assert_allclose(evaluation.genuine, [math.sqrt(2)] * 3, atol=1e-6)


def test_matches_brute_force_and_chunking_changes_nothing():
    embeddings, labels = clusters([5, 2, 7, 1, 4], spread=0.9, seed=3)
    genuine, impostor, correct = reference(embeddings, labels, 5)
    whole = run(embeddings, labels, 5)
    chunked = run(embeddings, labels, 5, chunk_elements=7)
    for evaluation in (whole, chunked):
        np.testing.assert_allclose(evaluation.genuine, genuine, atol=1e-9)
        summary = evaluation.summary
        assert summary["photos_evaluated"] == 18  # the single-photo identity is not a probe
        assert summary["identities_evaluated"] == 4
        assert summary["identification_accuracy"] == pytest.approx(np.mean(correct), abs=1e-6)
        assert summary["impostor"]["count"] == len(impostor) == 19 * 4  # every photo vs 4 other means
        assert summary["impostor"]["min"] == pytest.approx(impostor.min(), abs=1e-6)
        assert summary["impostor"]["max"] == pytest.approx(impostor.max(), abs=1e-6)
        assert summary["impostor"]["mean"] == pytest.approx(impostor.mean(), abs=1e-6)
        assert summary["impostor"]["p50"] == pytest.approx(np.percentile(impostor, 50), abs=2 * BIN_WIDTH)
        assert summary["genuine"]["p95"] == pytest.approx(np.percentile(genuine, 95), abs=1e-6)
    assert chunked.summary == whole.summary
    assert np.array_equal(chunked.impostor_counts, whole.impostor_counts)
    assert 0 < np.mean(correct) < 1  # the spread makes some photos land nearer another mean


def test_threshold_calibrated_at_target_fpir_with_its_false_reject_rate():
    # behaviour changed (issue 24): calibrated on non-mated searches at target_fpir, not pairs at target_far
    embeddings, labels = clusters([30] * 8, dim=32, spread=0.6, seed=1)
    genuine, impostor, _ = reference(embeddings, labels, 8)
    non_mated = nearest_other(embeddings, labels, 8)
    target = 0.01
    evaluation = run(embeddings, labels, 8, target_fpir=target)
    summary = evaluation.summary
    assert summary["threshold_source"] == "calibrated"
    allowed = math.floor(target * non_mated.size)  # 240 non-mated searches: 2 allowed
    assert allowed == 2
    cut = np.sort(non_mated)[allowed]
    threshold = summary["threshold"]
    assert threshold < cut <= threshold + 1e-4  # the largest 4-decimal value accepting ≤ 2 searches
    assert round(threshold, 4) == threshold
    assert np.count_nonzero(non_mated <= threshold) <= allowed
    np.testing.assert_allclose(np.sort(evaluation.non_mated), np.sort(non_mated), atol=1e-9)
    accepted = int(np.count_nonzero(impostor <= threshold))  # the per-pair figures, exact, beside
    assert summary["false_accepts"] == accepted
    assert summary["false_accept_rate"] == pytest.approx(accepted / impostor.size, abs=1e-6)
    assert summary["false_rejects"] == int(np.count_nonzero(genuine > threshold))
    assert summary["false_reject_rate"] == pytest.approx(np.mean(genuine > threshold), abs=1e-6)
    assert evaluation.threshold == threshold


def test_a_looser_target_gives_a_looser_threshold():
    embeddings, labels = clusters([30] * 8, dim=32, spread=0.6, seed=1)
    strict = run(embeddings, labels, 8, target_fpir=0.005).summary
    loose = run(embeddings, labels, 8, target_fpir=0.05).summary
    assert strict["threshold_source"] == loose["threshold_source"] == "calibrated"
    assert strict["threshold"] < loose["threshold"]
    assert strict["false_reject_rate"] >= loose["false_reject_rate"]


def test_too_few_searches_give_a_data_bound_threshold_and_say_why():
    # behaviour changed (issue 24): no longer the configured fallback, but below every non-mated search
    embeddings, labels = clusters([6, 6, 6, 6], seed=2)  # 24 non-mated searches (72 impostor pairs)
    impostor = reference(embeddings, labels, 4)[1]
    non_mated = nearest_other(embeddings, labels, 4)
    summary = run(embeddings, labels, 4, target_far=0.001, default=0.9).summary
    assert summary["threshold_source"] == "data-bound"
    assert summary["threshold"] < non_mated.min()
    assert "24 non-mated searches, 1000 needed" in summary["threshold_note"]
    assert summary["false_accepts"] == 0 == np.count_nonzero(impostor <= summary["threshold"])
    assert summary["open_set"]["fpir"]["errors"] == 0 and summary["open_set"]["fpir"]["trials"] == 24
    assert summary["target_far"] == 0.001


def test_too_few_genuine_distances_falls_back():
    # 2000 photos, but only 4 identities with 2 photos: 8 genuine distances < MIN_GENUINE
    embeddings, labels = clusters([2, 2, 2, 2] + [1] * 12, dim=24, seed=4)
    summary = run(embeddings, labels, 16, target_fpir=0.1).summary
    assert summary["genuine"]["count"] == 8 < MIN_GENUINE
    assert summary["impostor"]["count"] == 20 * 15
    assert summary["threshold_source"] == "data-bound"  # was "default" before issue 24
    assert "8 mated, 10 needed" in summary["threshold_note"]


def test_no_identity_with_two_photos_gives_null_accuracy():
    embeddings, labels = clusters([1, 1, 1])
    summary = run(embeddings, labels, 3).summary
    assert summary["identification_accuracy"] is None
    assert summary["false_reject_rate"] is None
    assert summary["genuine"] == {
        "count": 0,
        "min": None,
        "p50": None,
        "p95": None,
        "max": None,
        "mean": None,
    }
    assert summary["impostor"]["count"] == 6
    assert all(row["loo_accuracy"] is None and not row["evaluated"] for row in summary["per_identity"])


def test_mislabelled_photo_is_flagged_and_costs_its_identity_accuracy():
    embeddings, labels = clusters([6, 6, 6], spread=0.1, seed=5)
    embeddings = np.concatenate([embeddings, unit([[0, 0, 1] + [0] * 13])])  # looks like id2 ...
    labels = np.append(labels, 0)  # ... filed under id0
    summary = run(embeddings, labels, 3, default=1.0).summary
    assert summary["suspected_mislabels_total"] == 1
    [suspect] = summary["suspected_mislabels"]
    assert suspect["photo"] == "id0/18.jpg"
    assert suspect["identity"] == "id0"
    assert suspect["closest_identity"] == "id2"
    assert suspect["distance_to_closest"] < suspect["distance_to_own_mean"]
    assert suspect["distance_to_closest"] < 0.3 < suspect["distance_to_own_mean"]
    rows = {row["identity"]: row for row in summary["per_identity"]}
    assert rows["id0"]["loo_accuracy"] == pytest.approx(6 / 7, abs=1e-6)
    assert rows["id0"]["suspected_mislabels"] == 1
    assert rows["id0"]["margin"] < 0  # one of its photos is nearer another identity
    assert rows["id1"]["loo_accuracy"] == 1.0 and rows["id1"]["margin"] > 0
    assert summary["identification_accuracy"] == pytest.approx(18 / 19, abs=1e-6)


def test_per_identity_table_and_closest_pairs():
    # id0 and id1 share most of their direction; id2 is apart
    base = np.eye(8)
    a, b = base[0] + 0.1 * base[3], base[0] - 0.1 * base[3]
    c = base[0] + 0.6 * base[1]
    d, e = base[2] + 0.1 * base[4], base[2] - 0.1 * base[4]
    embeddings = unit([a, b, c, c, d, e])
    labels = np.array([0, 0, 1, 1, 2, 2])
    rejections = {"id1": {"no_face": 2, "too_small": 1}, "gone": {"identity_excluded": 1}}
    summary = run(embeddings, labels, 3, rejections=rejections).summary
    rows = {row["identity"]: row for row in summary["per_identity"]}
    assert [row["identity"] for row in summary["per_identity"]] == ["id0", "id1", "id2", "gone"]
    assert rows["id0"]["nearest_identity"] == "id1" and rows["id1"]["nearest_identity"] == "id0"
    expected = np.linalg.norm(unit(base[0]) - unit(base[0] + 0.6 * base[1]))
    assert rows["id0"]["nearest_distance"] == pytest.approx(expected, abs=1e-6)
    assert rows["id1"]["photos_rejected"] == 3
    assert rows["id1"]["rejections"] == {"no_face": 2, "too_small": 1}
    assert rows["gone"]["enrolled"] is False and rows["gone"]["photos_used"] == 0
    assert summary["closest_pairs"][0]["identities"] == ["id0", "id1"]
    assert summary["closest_pairs"][0]["distance"] == pytest.approx(expected, abs=1e-6)
    assert len(summary["closest_pairs"]) == 3
    distances = [pair["distance"] for pair in summary["closest_pairs"]]
    assert distances == sorted(distances)


def test_memory_does_not_grow_with_photos_times_identities():
    # 20,000 photos x 500 identities: the full distance matrix alone would be 80 MB of float64
    rng = np.random.default_rng(7)
    embeddings = unit(rng.normal(size=(20_000, 32))).astype(np.float32)
    labels = rng.integers(0, 500, size=20_000)
    tracemalloc.start()
    try:
        evaluation = evaluate(embeddings, labels, names(500), keys(labels), 0.001, 1.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert evaluation.summary["impostor"]["count"] == 20_000 * 499
    assert evaluation.summary["threshold_source"] == "calibrated"
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_evaluation_and_report_do_not_import_torch():
    code = "import sys, facetrain.evaluation, facetrain.report\nprint('torch' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("value", ["0", "-0.01", "0.2", "abc"])
def test_target_far_is_validated(value):
    with pytest.raises(SettingsError, match="'target_far'"):
        parse_settings([("hyperparameters", {"target_far": value})])


def test_target_far_default_and_value():
    assert parse_settings([]).target_far == 0.001
    assert parse_settings([("hyperparameters", {"target_far": "0.01"})]).target_far == 0.01


def test_error_rate_curve_over_all_thresholds():
    from facetrain.threshold_calibration import error_rate_curve

    genuine = np.array([0.10, 0.20, 0.30, 0.40])
    counts = np.zeros(round(2.0 / BIN_WIDTH), np.int64)
    for distance in (0.25, 0.35, 0.45, 0.55):
        counts[int(distance / BIN_WIDTH)] += 1
    thresholds, far, frr = error_rate_curve(genuine, counts)

    assert np.all(np.diff(thresholds) > 0) and np.all(np.diff(far) >= 0) and np.all(np.diff(frr) <= 0)

    def at(threshold: float) -> tuple[float, float]:  # the rates hold from one change to the next
        index = int(np.searchsorted(thresholds, threshold, side="right")) - 1
        return float(far[index]), float(frr[index])

    assert at(0.15) == (0.0, 0.75)
    assert at(0.22) == (0.0, 0.5)  # 0.1 and 0.2 accepted, no impostor yet
    assert at(0.27) == (0.25, 0.5)
    assert at(0.42) == (0.5, 0.0)
    assert at(1.5) == (1.0, 0.0) == (far[-1], frr[-1])
    empty = error_rate_curve(np.empty(0), counts)
    assert all(part.size == 0 for part in empty)
