"""The k-means engines (numpy on the driver, Lloyd on the executors, MLlib) and the kernel they share."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs, embeddings_frame
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core.kmeans import cluster, localkmeans


def _brute_force_nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


def test_kernel_matches_brute_force_across_score_blocks(monkeypatch):
    rng = np.random.default_rng(3)
    points, centers = rng.normal(size=(1000, 16)), rng.normal(size=(40, 16)) * 2
    monkeypatch.setattr(localkmeans, "SCORE_BLOCK_ELEMENTS", 40 * 7)  # blocks of 7 rows, a ragged last one
    index = localkmeans.nearest(points, centers)
    exact = _brute_force_nearest(points, centers)
    # float32 scores may swap near-ties only; the chosen center is never measurably farther.
    chosen = localkmeans.squared_distances(points, centers, index)
    best = localkmeans.squared_distances(points, centers, exact)
    assert (index == exact).mean() > 0.999
    np.testing.assert_allclose(chosen, best, rtol=1e-5)


def test_distinct_rows_counts_values_not_signs_of_zero():
    x = np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [2.0, 2.0]], dtype=np.float32)
    assert list(localkmeans.distinct_rows(x)) == [0, 2, 4]


def test_distinct_count_looks_past_the_head_only_when_needed():
    repeated = np.zeros((100, 3), dtype=np.float32)
    repeated[90:, 0] = np.arange(1, 11)  # 11 distinct rows, 10 of them after the first 4k rows
    assert localkmeans.count_distinct_rows(repeated, k=5) == 11
    spread = np.arange(300, dtype=np.float32).reshape(100, 3)
    assert localkmeans.count_distinct_rows(spread, k=5) == 20  # the first 20 rows suffice


@pytest.mark.parametrize("init_mode", ["k-means||", "random"])
def test_local_fit_finds_separated_clusters(init_mode):
    points, component = blobs(4000, 8, 6, seed=1)
    x = points.astype(np.float32)
    centers, iterations, cost = localkmeans.fit(
        x, k=6, max_iter=30, tol=1e-6, init_mode=init_mode, init_steps=2, seed=0
    )
    assert centers.shape == (6, 8) and 0 < iterations <= 30
    one_center = localkmeans.lloyd(x, x[:1], 1, 0.0)[2]
    assert cost < one_center / 5
    if init_mode == "k-means||":
        # Each true component maps to one center, and the noise (unit variance, 8 dimensions) is
        # all that is left: about 8 per point.
        labels = localkmeans.nearest(points, centers)
        assert len(set(zip(component.tolist(), labels.tolist(), strict=True))) == 6
        assert cost / len(points) == pytest.approx(8.0, rel=0.1)


def test_lloyd_never_raises_the_cost():
    points, _ = blobs(2000, 5, 10, seed=4)
    x = points.astype(np.float32)
    costs = [localkmeans.lloyd(x, x[:10], steps, 0.0)[2] for steps in (1, 2, 4, 8)]
    assert all(later <= earlier * (1 + 1e-9) for earlier, later in zip(costs, costs[1:], strict=False))
    assert costs[-1] < costs[0]


def test_weighted_lloyd_equals_repeating_rows():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    weights = rng.integers(1, 4, size=300).astype(np.float64)
    start = x[:5]
    weighted = localkmeans.lloyd(x, start, 10, 0.0, weights)
    repeated = localkmeans.lloyd(np.repeat(x, weights.astype(int), axis=0), start, 10, 0.0)
    np.testing.assert_allclose(weighted[0], repeated[0], rtol=1e-9, atol=1e-9)
    assert weighted[2] == pytest.approx(repeated[2], rel=1e-9)


def test_auto_engine_keeps_large_samples_off_the_driver():
    settings = cluster.KMeansSettings(k=10, driver_fit_max_mb=100)
    heap = 4 << 30
    assert cluster.choose_engine(settings, rows=100_000, dim=128, heap_bytes=heap) == "driver"  # 49 MiB
    assert cluster.choose_engine(settings, rows=300_000, dim=128, heap_bytes=heap) == "executors"  # 146 MiB
    # Under the byte limit, but more than a quarter of a 512 MiB heap.
    assert cluster.choose_engine(settings, rows=300_000, dim=128, heap_bytes=512 << 20) == "executors"
    forced = cluster.KMeansSettings(k=10, fit_engine="driver", driver_fit_max_mb=0)
    assert cluster.choose_engine(forced, rows=10**9, dim=768, heap_bytes=heap) == "driver"


@pytest.fixture(scope="module")
def mixture(spark):
    points, _ = blobs(3000, 6, 8, seed=11)
    return embeddings_frame(spark, points, partitions=3)


def test_engines_agree_on_cost_and_are_recorded(mixture):
    fits = {
        engine: SensitivitySampler(k=8, seed=2, fitEngine=engine, pointsPerCenter=0).fit(mixture)
        for engine in ("driver", "mllib")
    }
    try:
        costs = {engine: model.clusterStats.total_cost for engine, model in fits.items()}
        assert {engine: model.fitInfo["kmeans_engine"] for engine, model in fits.items()} == {
            "driver": "driver",
            "mllib": "mllib",
        }
        # The driver's greedy k-means++ (2 + ln k trials a center, MLlib tries one) finds the 8 blobs:
        # unit noise in 6 dimensions, about 6 per point. MLlib may settle in a worse optimum.
        assert costs["driver"] / 3000 == pytest.approx(6.0, rel=0.05)
        assert costs["driver"] <= costs["mllib"] * 1.01
    finally:
        for model in fits.values():
            model.summary.release()


def test_auto_picks_the_driver_for_a_small_sample_and_the_executors_over_the_limit(mixture):
    small = SensitivitySampler(k=8, seed=2).fit(mixture)
    over = SensitivitySampler(k=8, seed=2, driverFitMaxMB=0).fit(mixture)
    try:
        assert small.fitInfo["kmeans_engine"] == "driver"
        assert over.fitInfo["kmeans_engine"] == "executors"
    finally:
        small.summary.release()
        over.summary.release()


def test_driver_engine_refuses_k_above_the_distinct_points(spark):
    rows = [(i, [float(i % 3), 0.0]) for i in range(60)]
    frame = spark.createDataFrame(rows, "id long, embedding array<double>")
    with pytest.raises(ValueError, match="k=5 is larger than the 3 distinct points"):
        SensitivitySampler(k=5, fitEngine="driver").fit(frame)


def test_unknown_engine_is_refused(mixture):
    with pytest.raises(
        ValueError, match="fitEngine must be one of auto, driver, executors, mllib, got 'gpu'"
    ):
        SensitivitySampler(k=3, fitEngine="gpu").fit(mixture)


def test_assign_without_the_vector_keeps_every_other_column(mixture):
    frame = mixture.withColumn("label", F.col("id") % 2)
    centers = np.zeros((2, 6))
    centers[1] += 1.0
    kept = cluster.assign(frame, "embedding", centers, 2)
    lean = cluster.assign(frame, "embedding", centers, 2, keep_vector=False)
    assert kept.columns == ["id", "embedding", "label", "cluster_id", "cost"]
    assert lean.columns == ["id", "label", "cluster_id", "cost"]
    a = kept.drop("embedding").orderBy("id").collect()
    b = lean.orderBy("id").collect()
    assert a == b


def test_executors_engine_fits_what_the_driver_fits(mixture):
    """Same sample, same seeds (k-means|| on the driver), the same exact arg-min: only the order in
    which the per-cluster sums are added differs."""
    fits = {
        engine: SensitivitySampler(k=8, seed=2, fitEngine=engine, pointsPerCenter=0).fit(mixture)
        for engine in ("driver", "executors")
    }
    try:
        assert fits["executors"].fitInfo["kmeans_engine"] == "executors"
        np.testing.assert_allclose(
            fits["executors"].clusterCenters(), fits["driver"].clusterCenters(), rtol=1e-9
        )
        assert fits["executors"].fitInfo["kmeans_fit_cost"] == pytest.approx(
            fits["driver"].fitInfo["kmeans_fit_cost"], rel=1e-9
        )
        assert fits["executors"].fitInfo["kmeans_iterations"] == fits["driver"].fitInfo["kmeans_iterations"]
    finally:
        for model in fits.values():
            model.summary.release()


def test_executors_engine_does_not_depend_on_the_input_partitioning(spark):
    points, _ = blobs(4000, 5, 12, seed=21)
    centers = []
    for partitions in (1, 7):
        frame = embeddings_frame(spark, points, partitions=partitions)
        model = SensitivitySampler(k=12, seed=4, fitEngine="executors", pointsPerCenter=0).fit(frame)
        centers.append(np.array(model.clusterCenters()))
        model.summary.release()
    np.testing.assert_array_equal(centers[0], centers[1])


def test_executors_engine_refuses_k_above_the_distinct_points(spark):
    rows = [(i, [float(i % 3), 0.0]) for i in range(60)]
    frame = spark.createDataFrame(rows, "id long, embedding array<double>")
    with pytest.raises(ValueError, match="k=5 is larger than the 3 distinct points"):
        SensitivitySampler(k=5, fitEngine="executors").fit(frame)
