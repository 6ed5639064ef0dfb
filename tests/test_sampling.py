"""Statistical properties of the draws, on real local Spark with fixed seeds."""

import numpy as np
import pytest
from conftest import blobs, embeddings_frame
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core.sampling import sample
from spark_sensitivity.core.sampling.rowrandom import row_hash

N, DIM, K = 3000, 4, 6


@pytest.fixture(scope="module")
def data(spark):
    points, _ = blobs(N, DIM, K, seed=11)
    df = embeddings_frame(spark, points, partitions=3).persist()
    model = SensitivitySampler(k=K, seed=5, pointsPerCenter=0).fit(df)
    yield df, model, points
    model.summary.release()
    df.unpersist()


def _draw(model, seed, m):
    scored = model.summary.assignments.withColumn(sample.HASH_COL, row_hash("id", seed))
    draws = sample.draw(scored, model.clusterStats, m)
    rows = draws.frame.select("cluster_id", "count", "weight", "probability").collect()
    draws.frame.unpersist()
    return rows


def test_exactly_m_draws_and_weight_formula(data):
    _, model, _ = data
    for m in (1, 17, 400):
        rows = _draw(model, seed=m, m=m)
        assert sum(r["count"] for r in rows) == m
        for r in rows:
            assert r["weight"] == pytest.approx(r["count"] / (m * r["probability"]), rel=1e-12)


def test_weights_unbiased_for_n_and_cluster_sizes(data):
    _, model, _ = data
    m, seeds = 200, 40
    sizes = model.clusterStats.sizes
    totals, per_cluster = [], []
    for seed in range(seeds):
        rows = _draw(model, seed=1000 + seed, m=m)
        totals.append(sum(r["weight"] for r in rows))
        cluster_sum = np.zeros(K)
        for r in rows:
            cluster_sum[r["cluster_id"]] += r["weight"]
        per_cluster.append(cluster_sum)
    assert abs(np.mean(totals) / N - 1) < 0.02
    per_cluster = np.array(per_cluster)
    stderr = per_cluster.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(per_cluster.mean(axis=0) - sizes) < 4 * stderr + 0.01 * sizes)


def test_draws_follow_the_sensitivity_distribution(data):
    _, model, _ = data
    assigned = model.summary.assignments.select("cluster_id", "cost").toPandas()
    q = model.clusterStats.sensitivity(assigned.cluster_id.to_numpy(), assigned.cost.to_numpy())
    q /= q.sum()
    expected = np.bincount(assigned.cluster_id, weights=q, minlength=K)
    m, seeds = 300, 20
    observed = np.zeros(K)
    for seed in range(seeds):
        for r in _draw(model, seed=seed, m=m):
            observed[r["cluster_id"]] += r["count"]
    share = observed / (m * seeds)
    sigma = np.sqrt(expected * (1 - expected) / (m * seeds))
    assert np.all(np.abs(share - expected) < 4 * sigma)


def test_same_seed_same_subset_whatever_the_partitioning(spark, data):
    df, _, points = data
    first = SensitivitySampler(k=K, seed=9, fitFraction=0.5).fit(df)
    again = SensitivitySampler(k=K, seed=9, fitFraction=0.5).fit(
        embeddings_frame(spark, points, partitions=7)
    )
    a = {r["id"]: (r["count"], r["weight"]) for r in first.sample(250).collect()}
    b = {r["id"]: (r["count"], r["weight"]) for r in again.sample(250).collect()}
    other = {r["id"] for r in first.sample(250, seed=10).collect()}
    first.summary.release()
    again.summary.release()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][0] == b[key][0]
        assert a[key][1] == pytest.approx(b[key][1], rel=1e-12)
    assert other != set(a)


def test_sample_of_new_data_uses_its_own_statistics(spark, data):
    df, model, _ = data
    half = df.where(F.col("id") % 2 == 0)
    subset = model.sample(300, seed=3, dataset=half).collect()
    assert sum(r["count"] for r in subset) == 300
    assert all(r["id"] % 2 == 0 for r in subset)
    assert "embedding" in subset[0].asDict()
