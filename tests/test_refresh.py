"""Incremental refresh: a new stratum of appended rows keeps the subset unbiased for the whole table."""

import json
import shutil

import numpy as np
import pytest
from conftest import blobs
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler, SensitivitySamplerModel
from spark_sensitivity.core.score import ClusterStats
from spark_sensitivity.io.delta import delta_version, read_delta, write_delta
from spark_sensitivity.workflows.refresh import (
    MAX_COST_DRIFT,
    allocate_draws,
    cost_drift,
    draw_new_stratum,
    refit_reasons,
    run_refresh,
    score_new_rows,
)

OLD, NEW, LATER = 1200, 400, 200


def frame(spark, points, first_id):
    rows = [(first_id + i, [float(x) for x in p], f"row {first_id + i}") for i, p in enumerate(points)]
    return spark.createDataFrame(rows, "id long, embedding array<double>, note string").repartition(2)


@pytest.fixture(scope="module")
def points():
    return blobs(OLD + NEW + LATER, 3, 4, seed=11)[0]


@pytest.fixture(scope="module")
def old_frame(spark, points):
    return frame(spark, points[:OLD], 0).persist()


@pytest.fixture(scope="module")
def new_frame(spark, points):
    return frame(spark, points[OLD : OLD + NEW], OLD).persist()


@pytest.fixture(scope="module")
def model(old_frame):
    fitted = SensitivitySampler(k=4, seed=1, pointsPerCenter=0).fit(old_frame)
    yield fitted
    fitted.summary.release()


def inverse_probability_sums(stats, rows, k):
    """Per cluster: sum of 1/q_i and n_j (the exact variance of a weight sum is (sum 1/q - n^2)/m)."""
    clusters = np.array([r["cluster_id"] for r in rows])
    s = stats.sensitivity(clusters, np.array([r["cost"] for r in rows]))
    q = s / s.sum()
    return np.bincount(clusters, 1 / q, minlength=k), np.bincount(clusters, minlength=k)


def test_union_of_strata_is_unbiased_for_the_whole_table(model, new_frame):
    scored = score_new_rows(model, new_frame)
    m_old, m_new, seeds = 600, 300, range(6)
    estimates = []
    for seed in seeds:
        old = model.sample(m_old, seed=seed).select("cluster_id", "count", "weight").collect()
        new = draw_new_stratum(scored, m_new, seed=100 + seed)
        new_rows = new.frame.select("cluster_id", "count", "weight").collect()
        new.frame.unpersist()
        assert sum(r["count"] for r in new_rows) == m_new
        per_cluster = np.zeros(4)
        for r in old + new_rows:
            per_cluster[r["cluster_id"]] += r["weight"]
        estimates.append(per_cluster)
    estimates = np.array(estimates)

    old_inv, old_n = inverse_probability_sums(model.clusterStats, model.summary.assignments.collect(), 4)
    new_inv, new_n = inverse_probability_sums(scored.stats, scored.assigned.collect(), 4)
    scored.release()
    truth = old_n + new_n
    var = (old_inv - old_n**2) / m_old + (new_inv - new_n**2) / m_new
    var_total = (old_inv.sum() - OLD**2) / m_old + (new_inv.sum() - NEW**2) / m_new
    standard_error = np.sqrt(var / len(seeds))
    assert np.all(np.abs(estimates.mean(axis=0) - truth) <= 4 * standard_error)
    assert abs(estimates.sum(axis=1).mean() - (OLD + NEW)) <= 4 * np.sqrt(var_total / len(seeds))
    # The test has power: leaving out the new stratum (a bias of NEW) is over 10 standard errors.
    assert np.sqrt(var_total / len(seeds)) < NEW / 10


def test_new_draws_follow_the_sensitivity_mass_of_the_new_rows():
    old = ClusterStats(np.array([300, 100]), np.array([30.0, 10.0]))
    alike = ClusterStats(np.array([150, 50]), np.array([15.0, 5.0]))
    costly = ClusterStats(np.array([150, 50]), np.array([60.0, 20.0]))
    assert allocate_draws(old, alike, 200) == 100  # same per-row picture: draws in proportion to rows
    assert allocate_draws(old, costly, 200) > 100
    assert cost_drift(old, alike) == pytest.approx(1.0)
    assert cost_drift(old, costly) == pytest.approx(4.0)
    assert refit_reasons(1.1, 1000, 1500) == []
    assert len(refit_reasons(4.0, 1000, 2500)) == 2


def test_drift_is_measured_under_the_saved_centers(spark, model, new_frame, points):
    alike = score_new_rows(model, new_frame)
    shifted = score_new_rows(model, frame(spark, points[OLD : OLD + NEW] + 4.0, OLD))
    try:
        assert 0.7 < cost_drift(model.clusterStats, alike.stats) < 1.4
        assert cost_drift(model.clusterStats, shifted.stats) > MAX_COST_DRIFT
    finally:
        alike.release()
        shifted.release()


@pytest.fixture(scope="module")
def saved(spark, tmp_path_factory, points):
    """A folder with a saved model and previous subset of the old rows (then deleted), and new rows."""
    folder = tmp_path_factory.mktemp("saved")
    frame(spark, points[:OLD], 0).write.parquet(str(folder / "old"))
    frame(spark, points[OLD : OLD + NEW], OLD).write.parquet(str(folder / "new"))
    frame(spark, points[OLD + NEW :], OLD + NEW).write.parquet(str(folder / "later"))
    fitted = SensitivitySampler(k=4, seed=1, pointsPerCenter=0).fit(spark.read.parquet(str(folder / "old")))
    fitted.write().save(str(folder / "model"))
    fitted.sample(150, seed=3).write.parquet(str(folder / "previous"))
    fitted.summary.release()
    shutil.rmtree(folder / "old")  # a refresh that touched the old rows would fail now
    return folder, fitted


def test_refresh_job_scores_only_new_rows_and_chains(spark, tmp_path, saved, new_frame):
    folder, fitted = saved
    manifest = run_refresh(
        spark,
        model_path=str(folder / "model"),
        new_input=str(folder / "new"),
        previous_subset=str(folder / "previous"),
        output=str(tmp_path / "refresh1"),
        seed=5,
    )
    refreshed = SensitivitySamplerModel.load(str(tmp_path / "refresh1" / "model"))
    new_stats = ClusterStats(
        refreshed.clusterStats.sizes - fitted.clusterStats.sizes,
        refreshed.clusterStats.costs - fitted.clusterStats.costs,
    )
    new_sizes = np.bincount(
        [r[0] for r in fitted.transform(new_frame).select("cluster_id").collect()], minlength=4
    )
    np.testing.assert_array_equal(new_stats.sizes, new_sizes)
    np.testing.assert_array_equal(np.array(refreshed.clusterCenters()), np.array(fitted.clusterCenters()))
    assert (manifest["n_old"], manifest["n_new"], manifest["m_old"]) == (OLD, NEW, 150)
    assert manifest["m_new"] == allocate_draws(fitted.clusterStats, new_stats, 150)
    assert abs(manifest["m_new"] - 150 * NEW / OLD) < 15  # new rows like the old: about in proportion
    assert manifest["m"] == 150 + manifest["m_new"] and not manifest["refit_advised"]
    saved_manifest = json.loads((tmp_path / "refresh1" / "manifest.json").read_text())
    assert saved_manifest["m_new"] == manifest["m_new"]

    subset = spark.read.parquet(str(tmp_path / "refresh1" / "subset"))
    old_part = subset.where(F.col("id") < OLD).orderBy("id").collect()
    assert old_part == spark.read.parquet(str(folder / "previous")).orderBy("id").collect()
    new_part = subset.where(F.col("id") >= OLD)
    assert new_part.agg(F.sum("count")).first()[0] == manifest["m_new"]
    assert new_part.where(F.col("note") != F.concat(F.lit("row "), F.col("id"))).count() == 0

    second = run_refresh(
        spark,
        model_path=str(tmp_path / "refresh1" / "model"),
        new_input=str(folder / "later"),
        previous_subset=str(tmp_path / "refresh1" / "subset"),
        output=str(tmp_path / "refresh2"),
        sample_size=40,
        seed=6,
    )
    assert (second["n_old"], second["n_new"], second["m_old"], second["m_new"]) == (
        OLD + NEW,
        LATER,
        manifest["m"],
        40,
    )
    history = SensitivitySamplerModel.load(str(tmp_path / "refresh2" / "model")).fitInfo
    assert history["rows_at_fit"] == OLD and [r["new_rows"] for r in history["refreshes"]] == [NEW, LATER]


def test_delta_refresh_writes_its_own_table_and_leaves_the_previous_one(spark, tmp_path, saved):
    folder, _ = saved
    previous = spark.read.parquet(str(folder / "previous"))
    table = str(folder / "subset_table")  # next to the model: one run's output
    write_delta(previous, table)
    manifest = run_refresh(
        spark,
        model_path=str(folder / "model"),
        new_input=str(folder / "new"),
        previous_subset=table,
        subset_format="delta",
        output=str(tmp_path / "refresh"),
        seed=5,
    )
    assert manifest["previous_subset_version"] == 0 and delta_version(table) == 0
    assert read_delta(spark, table).orderBy("id").collect() == previous.orderBy("id").collect()
    after = read_delta(spark, str(tmp_path / "refresh" / "subset"))
    assert after.where(F.col("id") < OLD).orderBy("id").collect() == previous.orderBy("id").collect()
    assert after.agg(F.sum("count")).first()[0] == 150 + manifest["m_new"]
    assert delta_version(str(tmp_path / "refresh" / "subset")) == 0


def test_reused_ids_and_missing_columns_are_rejected(spark, tmp_path, saved, points):
    folder, _ = saved
    frame(spark, points[:NEW], 0).write.parquet(str(tmp_path / "reused"))
    common = {
        "model_path": str(folder / "model"),
        "previous_subset": str(folder / "previous"),
        "output": str(tmp_path / "out"),
    }
    with pytest.raises(ValueError, match=r"reuse ids of the previous subset \(e\.g\. ids \d+"):
        run_refresh(spark, new_input=str(tmp_path / "reused"), **common)
    spark.read.parquet(str(folder / "new")).drop("note").write.parquet(str(tmp_path / "no_note"))
    with pytest.raises(ValueError, match="the new rows have no column 'note'"):
        run_refresh(spark, new_input=str(tmp_path / "no_note"), **common)
    assert not (tmp_path / "out").exists()
