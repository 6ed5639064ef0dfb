"""The numeric kernels against a plain numpy reference."""

import numpy as np
import pyarrow as pa

from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.kmeans.cluster import fit_fraction
from spark_sensitivity.core.kmeans.kernels import nearest_centers
from spark_sensitivity.core.sampling.score import ClusterStats


def test_nearest_centers_matches_brute_force():
    rng = np.random.default_rng(0)
    points, centers = rng.normal(size=(500, 6)), rng.normal(size=(7, 6))
    distances = ((points[:, None, :] - centers[None]) ** 2).sum(axis=2)
    assignment, cost = nearest_centers(points, centers, z=2)
    np.testing.assert_array_equal(assignment, distances.argmin(axis=1))
    np.testing.assert_allclose(cost, distances.min(axis=1), rtol=1e-12)
    _, cost1 = nearest_centers(points, centers, z=1)
    np.testing.assert_allclose(cost1, np.sqrt(distances.min(axis=1)), rtol=1e-12)


def test_sensitivity_formula_and_total():
    rng = np.random.default_rng(1)
    cluster_ids = rng.integers(0, 5, size=300)
    cluster_ids[cluster_ids == 3] = 4  # cluster 3 stays empty
    costs = rng.exponential(size=300)
    sizes = np.bincount(cluster_ids, minlength=6)
    totals = np.bincount(cluster_ids, weights=costs, minlength=6)
    stats = ClusterStats(sizes, totals)
    s = stats.sensitivity(cluster_ids, costs)
    np.testing.assert_allclose(s, costs / costs.sum() + 1.0 / sizes[cluster_ids])
    assert stats.nonempty == 4
    assert np.isclose(s.sum(), 1 + stats.nonempty)
    assert np.isclose(stats.total_sensitivity, s.sum())
    sensitivity, probability = stats.compute(cluster_ids, costs)
    assert np.isclose(probability.sum(), 1.0)


def test_zero_cost_leaves_only_the_uniform_term():
    stats = ClusterStats(np.array([2, 3]), np.array([0.0, 0.0]))
    s = stats.sensitivity(np.array([0, 0, 1, 1, 1]), np.zeros(5))
    np.testing.assert_allclose(s, [0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])
    assert stats.total_sensitivity == 2


def test_batch_matrix_flags_null_short_and_non_finite_rows():
    values = pa.array(
        [[1.0, 2.0], None, [1.0], [np.nan, 0.0], [3.0, 4.0], [None, 1.0]], pa.list_(pa.float64())
    )
    matrix, valid = batch_matrix(values, 2)
    np.testing.assert_array_equal(valid, [True, False, False, False, True, False])
    np.testing.assert_array_equal(matrix[valid], [[1.0, 2.0], [3.0, 4.0]])
    assert np.isfinite(matrix).all()


def test_fit_fraction_counts_the_rows_only_when_it_needs_them():
    def never() -> int:
        raise AssertionError("counted the rows")

    assert fit_fraction(0.3, 256, 10, never) == 0.3
    assert fit_fraction(None, 0, 10, never) == 1.0
    assert fit_fraction(None, 256, 10, lambda: 25_600) == 0.1
    assert fit_fraction(None, 256, 10, lambda: 100) == 1.0
    assert fit_fraction(None, 256, 10, lambda: 0) == 1.0
