"""The loss-aware variant: representatives, the scoring formula, unbiased weights and roles."""

import numpy as np
import pytest
from conftest import blobs, embeddings_frame
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core.sampling import lossaware
from spark_sensitivity.workflows import evaluate

N, DIM, K = 1500, 3, 5


@pytest.fixture(scope="module")
def fitted(spark):
    points, _ = blobs(N, DIM, K, seed=21)
    df = embeddings_frame(spark, points, element="double").persist()
    model = SensitivitySampler(k=K, seed=3, pointsPerCenter=0).fit(df)
    # A loss that varies inside clusters: distance to the origin, plus a per-id wiggle.
    losses = np.linalg.norm(points, axis=1) + (np.arange(N) % 5) * 0.3
    loss_df = spark.createDataFrame([(i, float(v)) for i, v in enumerate(losses)], "id long, loss double")
    selection = lossaware.prepare(model, loss_df)
    yield df, model, points, losses, loss_df, selection
    selection.release()
    model.summary.release()
    df.unpersist()


def test_representatives_are_the_points_nearest_their_centers(fitted):
    _, model, points, _, _, _ = fitted
    reps = lossaware.model_representatives(model).collect()
    assigned = model.summary.assignments.select("id", "cluster_id").toPandas()
    centers = np.array(model.clusterCenters())
    assert sorted(r["cluster_id"] for r in reps) == list(range(K))
    for rep in reps:
        members = assigned.id[assigned.cluster_id == rep["cluster_id"]].to_numpy()
        distances = np.linalg.norm(points[members] - centers[rep["cluster_id"]], axis=1)
        assert rep["id"] == members[distances.argmin()]
        assert rep["distance"] == pytest.approx(distances.min(), rel=1e-9)


def test_scores_follow_the_loss_aware_formula(fitted):
    _, _, points, losses, _, selection = fitted
    scored = selection.scored.toPandas().sort_values("id")
    rep_of = {r["cluster_id"]: r["id"] for r in selection.representatives}
    reps = np.array([rep_of[c] for c in scored.cluster_id])
    expected_cost = ((points[scored.id.to_numpy()] - points[reps]) ** 2).sum(axis=1)
    np.testing.assert_allclose(scored.cost.to_numpy(), expected_cost, rtol=1e-6, atol=1e-9)
    scorer = selection.scorer
    proxy = losses[reps]
    # Balanced lambda: the proxy term and the distance term carry the same mass; the floor 10 %.
    assert proxy.sum() == pytest.approx(scorer.lam * expected_cost.sum(), rel=1e-6)
    s = scorer.sensitivity(scored.cluster_id.to_numpy(), scored.cost.to_numpy())
    np.testing.assert_allclose(s, proxy + scorer.lam * expected_cost + scorer.floor, rtol=1e-9)
    assert scorer.total_sensitivity == pytest.approx(s.sum(), rel=1e-9)
    assert scorer.floor * N / s.sum() == pytest.approx(lossaware.DEFAULT_UNIFORM_SHARE, rel=1e-9)


def test_sample_has_the_representatives_and_exactly_m_draws(fitted):
    _, _, _, _, _, selection = fitted
    rows = selection.sample(120, seed=4).collect()
    reps = [r for r in rows if r["role"] == lossaware.REPRESENTATIVE]
    assert {r["id"] for r in reps} == {r["id"] for r in selection.representatives}
    assert len({r["id"] for r in rows}) == len(rows)
    assert sum(r["count"] for r in rows) == 120
    for r in rows:
        assert (r["weight"] > 0) == (r["count"] > 0)
        if r["count"]:
            assert r["weight"] == pytest.approx(r["count"] / (120 * r["probability"]), rel=1e-12)
    assert {r["role"] for r in rows if r["count"] and r["id"] not in {x["id"] for x in reps}} == {"sample"}


def test_weighted_and_difference_estimates_are_unbiased(fitted):
    _, _, _, losses, loss_df, selection = fitted
    seeds = list(range(60))
    draws = evaluate.repeated_draws(selection.scored, selection.scorer, 40, seeds, "id")
    with_proxy = draws.join(F.broadcast(selection.proxy_frame()), on="cluster_id")
    rows = with_proxy.join(loss_df, on="id").toPandas()
    draws.unpersist()
    ht = rows.assign(v=rows.weight * rows.loss).groupby("seed").v.sum()
    diff = rows.assign(v=rows.weight * (rows.loss - rows.proxy_loss)).groupby("seed").v.sum()
    diff = diff + selection.proxy_total
    weights = rows.groupby("seed").weight.sum()
    total = losses.sum()
    for estimates in (ht, diff):
        assert len(estimates) == len(seeds)
        stderr = estimates.std(ddof=1) / np.sqrt(len(seeds))
        assert abs(estimates.mean() - total) < 4 * stderr
    assert abs(weights.mean() - N) < 4 * weights.std(ddof=1) / np.sqrt(len(seeds))


def test_missing_or_bad_representative_losses_are_rejected(spark, fitted):
    _, model, _, _, loss_df, selection = fitted
    rep_ids = [r["id"] for r in selection.representatives]
    partial = loss_df.where(F.col("id") != rep_ids[0])
    with pytest.raises(
        ValueError, match=rf"no 'loss' for 1 of the {K} representatives \(e\.g\. ids {rep_ids[0]}\)"
    ):
        lossaware.prepare(model, partial)
    negative = loss_df.withColumn("loss", F.when(F.col("id") == rep_ids[1], -1.0).otherwise(F.col("loss")))
    with pytest.raises(ValueError, match="negative or non-finite losses"):
        lossaware.prepare(model, negative)
    with pytest.raises(ValueError, match="has no column 'score'"):
        lossaware.prepare(model, loss_df, loss_col="score")


def test_balanced_scorer_edge_cases():
    sizes = np.array([10, 0, 30])
    scorer = lossaware.LossAwareSensitivity.balanced(
        sizes, np.array([5.0, 0.0, 15.0]), np.array([1.0, 0.0, 2.0])
    )
    assert scorer.lam == pytest.approx((10 * 1 + 30 * 2) / 20)
    plain = lossaware.LossAwareSensitivity.balanced(
        sizes, np.array([5.0, 0.0, 15.0]), np.array([1.0, 0.0, 2.0]), lam=2.0, uniform_share=0.0
    )
    assert plain.floor == 0 and plain.total_sensitivity == pytest.approx(70 + 2.0 * 20)
    nothing = lossaware.LossAwareSensitivity.balanced(sizes, np.zeros(3), np.zeros(3))
    assert nothing.floor == 1.0 and nothing.total_sensitivity == 40
    with pytest.raises(ValueError, match="uniform share must be in"):
        lossaware.LossAwareSensitivity.balanced(sizes, np.ones(3), np.ones(3), uniform_share=1.0)
    with pytest.raises(ValueError, match="lambda must be"):
        lossaware.LossAwareSensitivity.balanced(sizes, np.ones(3), np.ones(3), lam=-1.0)


def test_new_data_gets_its_own_representatives(fitted):
    df, model, _, _, loss_df, _ = fitted
    half = df.where(F.col("id") % 2 == 0)
    assert all(r["id"] % 2 == 0 for r in lossaware.model_representatives(model, half).collect())
    selection = lossaware.prepare(model, loss_df, dataset=half)
    rows = selection.sample(30, seed=1).collect()
    selection.release()
    assert selection.n == N // 2
    assert sum(r["count"] for r in rows) == 30 and all(r["id"] % 2 == 0 for r in rows)
