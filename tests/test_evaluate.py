"""Evaluation: repeated draws match single draws, estimates and RMSE, the job's configuration and output."""

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import blobs, embeddings_frame
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import evaluate as evaluate_cli
from spark_sensitivity.cli.flags import config_from_args
from spark_sensitivity.core.sampling import sample
from spark_sensitivity.core.sampling.rowrandom import row_hash
from spark_sensitivity.settings import EvaluateConfig
from spark_sensitivity.workflows import evaluate

N = 1000


@pytest.fixture(scope="module")
def loss_table(spark):
    points, component = blobs(N, 3, 4, seed=13)
    losses = component * 2.0 + np.abs(points[:, 0]) * 0.1 + 0.5
    df = embeddings_frame(spark, points, element="double").join(
        spark.createDataFrame([(i, float(v)) for i, v in enumerate(losses)], "id long, loss double"), on="id"
    )
    table = evaluate.LossTable(df, "id", "embedding", "loss")
    yield table, losses
    table.frame.unpersist()


def test_repeated_draws_are_the_single_draws_of_each_seed(loss_table):
    table, _ = loss_table
    model = SensitivitySampler(k=4, seed=2, pointsPerCenter=0).fit(table.frame)
    scored = model.summary.assignments
    many = evaluate.repeated_draws(scored, model.clusterStats, 64, [5, 6, 7], "id").toPandas()
    for seed in (5, 7):
        single = sample.draw(scored.withColumn(sample.HASH_COL, row_hash("id", seed)), model.clusterStats, 64)
        expected = sorted((r["id"], r["count"], r["weight"]) for r in single.frame.collect())
        got = many[many.seed == seed].sort_values("id")
        assert [(i, c) for i, c, _ in expected] == list(zip(got.id, got["count"], strict=True))
        np.testing.assert_allclose(got.weight, [w for _, _, w in expected], rtol=1e-12)
    assert many.groupby("seed")["count"].sum().tolist() == [64, 64, 64]
    model.summary.release()


def test_weighted_estimate_of_a_sample(loss_table):
    table, losses = loss_table
    picked = table.frame.where(F.col("id") < 10).select("id", F.lit(N / 10).alias("weight"))
    estimate = evaluate.weighted_estimate(picked, table.losses, N, "id", "loss")
    assert estimate == pytest.approx(losses[:10].mean(), rel=1e-12)


def test_evaluate_reports_rmse_next_to_uniform(loss_table):
    table, losses = loss_table
    assert table.n == N and table.true_mean == pytest.approx(losses.mean())
    seeds = list(range(40))
    results = evaluate.evaluate(table, "loss-aware", [60], seeds, evaluate.SchemeSettings(k=4))
    assert [(r.estimator, r.sample_size, r.loss_evaluations) for r in results] == [
        ("weighted", 60, 64),
        ("difference", 60, 64),
    ]
    for r in results:
        errors = r.relative_errors
        assert len(errors) == 40 and r.rmse == pytest.approx(np.sqrt(np.mean(errors**2)))
        # Unbiased: the mean error is within 4 standard errors of zero.
        assert abs(errors.mean()) < 4 * errors.std(ddof=1) / np.sqrt(40)
        assert 0 < r.uniform_rmse < 0.2
    # Losses are nearly constant within clusters, so the representatives' losses are a strong control.
    assert results[1].rmse < 0.5 * results[1].uniform_rmse
    (uniform,) = evaluate.evaluate(table, "uniform", [64], seeds)
    assert uniform.rmse == pytest.approx(results[0].uniform_rmse)
    assert uniform.summary()["rmse_vs_uniform"] == 1.0


def test_bad_losses_and_unknown_schemes_are_rejected(spark, loss_table):
    table, _ = loss_table
    bad = table.frame.withColumn("loss", F.when(F.col("id") == 17, float("nan")).otherwise(F.col("loss")))
    with pytest.raises(ValueError, match=r"'loss' is null or not finite for 1 rows \(e\.g\. ids 17\)"):
        evaluate.LossTable(bad, "id", "embedding", "loss")
    with pytest.raises(ValueError, match="the table has no column 'score'"):
        evaluate.LossTable(table.frame, "id", "embedding", "score")
    with pytest.raises(ValueError, match="unknown scheme 'best'"):
        evaluate.evaluate(table, "best", [10], [0])


def test_evaluate_job_writes_its_report(spark, loss_table, tmp_path):
    _, losses = loss_table
    points, _ = blobs(N, 3, 4, seed=13)
    flat = pa.array(points.astype(np.float64).ravel())
    pq.write_table(
        pa.table(
            {
                "id": pa.array(np.arange(N)),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, 3).cast(pa.list_(pa.float64())),
                "loss": pa.array(losses),
            }
        ),
        tmp_path / "table.parquet",
    )
    parser = argparse.ArgumentParser()
    evaluate_cli.add_evaluate_arguments(parser)
    out = tmp_path / "report"
    args = parser.parse_args(
        ["--input", str(tmp_path / "table.parquet"), "--scheme", "uniform", "--scheme", "stratified",
         "--sample-sizes", "20,80", "--seeds", "10", "--k", "4", "--output", str(out)]
    )  # fmt: skip
    report = evaluate.run_evaluate(spark, config_from_args(EvaluateConfig, args))
    written = json.loads((out / "evaluation.json").read_text())
    assert written["n"] == N and written["true_mean"] == pytest.approx(losses.mean())
    assert [(r["scheme"], r["sample_size"]) for r in written["results"]] == [
        ("uniform", 20), ("uniform", 80), ("stratified", 20), ("stratified", 80),
    ]  # fmt: skip
    assert "stratified" in evaluate.format_report(report)
    with pytest.raises(SystemExit):
        parser.parse_args(["--input", "x", "--sample-sizes", "0,5"])


def test_defaults_differ_by_mode():
    parser = argparse.ArgumentParser()
    evaluate_cli.add_evaluate_arguments(parser)
    loss = config_from_args(EvaluateConfig, parser.parse_args(["--input", "x"])).resolved()
    assert (loss.seeds, loss.k, loss.schemes) == (100, 100, ["model-free", "loss-aware"])
    labels = config_from_args(
        EvaluateConfig, parser.parse_args(["--input", "x", "--label-col", "y"])
    ).resolved()
    assert (labels.seeds, labels.k, labels.strategy, labels.test_share) == (10, None, "auto", 0.2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--input", "x", "--label-col", "y", "--strategy", "loss-aware"])
