"""Baseline selectors: each returns exactly its budget, and does what it says."""

import numpy as np
import pytest
from conftest import blobs, embeddings_frame
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core.baselines import leverage, selectors
from spark_sensitivity.core.sampling import uniform as reference

N = 1200


@pytest.fixture(scope="module")
def frame(spark):
    points, component = blobs(N, 3, 4, seed=8)
    return embeddings_frame(spark, points, element="double").persist(), points, component


def test_uniform_is_exact_distinct_seeded_and_partition_invariant(spark, frame):
    df, points, _ = frame
    picked = reference.uniform(df, "id", 100, seed=1).select("id", "weight").collect()
    assert len(picked) == 100 == len({r["id"] for r in picked})
    assert all(r["weight"] == pytest.approx(N / 100) for r in picked)
    again = reference.uniform(embeddings_frame(spark, points, partitions=5), "id", 100, seed=1).collect()
    other = reference.uniform(df, "id", 100, seed=2).collect()
    assert {r["id"] for r in again} == {r["id"] for r in picked}
    assert {r["id"] for r in other} != {r["id"] for r in picked}
    many = reference.uniform_many(df, "id", 30, [1, 2, 3]).groupBy("seed").count().collect()
    assert sorted((r["seed"], r["count"]) for r in many) == [(1, 30), (2, 30), (3, 30)]
    with pytest.raises(ValueError, match="must be between 1 and the 1200 rows"):
        reference.uniform(df, "id", N + 1, seed=1)


def test_allocation_sums_to_the_budget_within_caps():
    sizes = np.array([500, 3, 0, 97, 400])
    quotas = reference.allocate(sizes, 50)
    assert quotas.sum() == 50 and quotas[2] == 0 and np.all(quotas[sizes > 0] >= 1)
    assert np.all(quotas <= sizes)
    assert abs(quotas[0] - 25) <= 1 and abs(quotas[4] - 20) <= 1
    neyman = reference.allocate(sizes, 50, scores=np.array([0.0, 1.0, 1.0, 10.0, 0.0]))
    assert neyman.sum() == 50 and neyman[3] == 47
    assert reference.allocate(sizes, int(sizes.sum())).tolist() == sizes.tolist()
    with pytest.raises(ValueError, match="below the 4 non-empty strata"):
        reference.allocate(sizes, 3)


def test_stratified_takes_its_quota_from_each_cluster(frame):
    df, _, _ = frame
    model = SensitivitySampler(k=4, seed=1, pointsPerCenter=0).fit(df)
    sizes = model.clusterStats.sizes
    picked = reference.stratified(model.summary.assignments, "id", sizes, 60, seed=3).toPandas()
    model.summary.release()
    quotas = reference.allocate(sizes, 60)
    assert len(picked) == 60 == picked.id.nunique()
    counts = picked.groupby("cluster_id").size()
    assert [counts.get(j, 0) for j in range(4)] == quotas.tolist()
    assert picked.weight.sum() == pytest.approx(N)


def test_k_center_greedy_covers_every_blob_first(frame):
    df, points, component = frame
    # Four far-apart blobs: the first four farthest-first picks land in four different blobs.
    picked = selectors.k_center_greedy(df, "id", "embedding", 4, seed=5).collect()
    assert len(picked) == 4
    assert len({component[r["id"]] for r in picked}) == 4
    more = selectors.k_center_greedy(df, "id", "embedding", 50, seed=5, pool_size=400).collect()
    assert len({r["id"] for r in more}) == 50
    labelled = df.where(F.col("id") < 10)
    rest = selectors.k_center_greedy(df, "id", "embedding", 20, seed=5, labelled=labelled).collect()
    assert len(rest) == 20 and all(r["id"] >= 10 for r in rest)


def test_farthest_first_is_a_two_approximation():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 2))
    chosen = selectors.farthest_first(points, 10, start=0)
    radius = np.sqrt(((points[:, None] - points[chosen][None]) ** 2).sum(-1)).min(axis=1).max()
    # The 11th pick would be at distance `radius`: 11 points pairwise >= radius apart, so any 10
    # centers leave one of them at >= radius / 2.
    assert len(set(chosen)) == 10 and radius > 0
    pairwise = np.sqrt(((points[chosen][:, None] - points[chosen][None]) ** 2).sum(-1))
    assert pairwise[np.triu_indices(10, 1)].min() >= radius - 1e-9


def test_margin_and_entropy_pick_the_least_sure_rows(spark):
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.full(4, 0.5), size=300)
    df = spark.createDataFrame(
        [(i, [float(x) for x in p]) for i, p in enumerate(probs)], "id long, probs array<double>"
    )
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin_ids = {r["id"] for r in selectors.margin(df, "id", "probs", 25).collect()}
    assert margin_ids == set(np.argsort(top2[:, 1] - top2[:, 0])[:25].tolist())
    ent = -(probs * np.log(probs)).sum(axis=1)
    entropy_rows = selectors.entropy(df, "id", "probs", 25).collect()
    assert {r["id"] for r in entropy_rows} == set(np.argsort(-ent)[:25].tolist())
    assert entropy_rows[0]["entropy"] == pytest.approx(ent.max(), rel=1e-9)
    excluded = selectors.margin(df, "id", "probs", 25, exclude=df.where(F.col("id") < 150))
    assert excluded.count() == 25 and excluded.where(F.col("id") < 150).count() == 0
    with pytest.raises(ValueError, match="probability column 'nope' is not in the input"):
        selectors.entropy(df, "id", "nope", 5)


def test_leverage_scores_are_exact_and_sampling_draws_m(spark):
    rng = np.random.default_rng(2)
    a = np.hstack([np.ones((400, 1)), rng.standard_t(2, size=(400, 4))])
    df = spark.createDataFrame(
        [(i, [float(x) for x in row]) for i, row in enumerate(a)], "id long, a array<double>"
    )
    lev = leverage.leverage_scores(df, "id", "a").toPandas().sort_values("id")
    q, _ = np.linalg.qr(a)
    np.testing.assert_allclose(lev.leverage.to_numpy(), (q**2).sum(axis=1), rtol=1e-7, atol=1e-12)
    assert lev.leverage.sum() == pytest.approx(5.0)
    drawn = selectors.proportional_sample(spark.createDataFrame(lev), "id", "leverage", 80, seed=1).toPandas()
    assert drawn["count"].sum() == 80
    np.testing.assert_allclose(drawn.weight, drawn["count"] / (80 * drawn.leverage / 5.0), rtol=1e-9)
