"""Incremental refresh: a new stratum of appended rows keeps the subset unbiased for the whole table."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import blobs
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler, SensitivitySamplerModel
from spark_sensitivity.cli import main
from spark_sensitivity.cli.app import parse_args
from spark_sensitivity.core.sampling.score import ClusterStats
from spark_sensitivity.io.delta import delta_version, read_delta, write_delta
from spark_sensitivity.settings import RefreshConfig
from spark_sensitivity.workflows import refresh as refresh_workflow
from spark_sensitivity.workflows.refresh import (
    MAX_COST_DRIFT,
    allocate_draws,
    cost_drift,
    draw_new_stratum,
    refit_reasons,
    score_new_rows,
)

OLD, NEW, LATER = 1200, 400, 200


def run_refresh(spark, model_path, **settings):
    """The refresh workflow on a config built from keyword settings."""
    return refresh_workflow.run_refresh(spark, RefreshConfig(model=model_path, **settings))


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


# The command line as its console script runs it.
CLI = "import sys; from spark_sensitivity.cli import main; sys.exit(main(sys.argv[1:]))"


def cli(cwd, *argv):
    """The command line in a process of its own, started in ``cwd`` (its JVM resolves paths there).

    Always a classic session: under the Connect suite a second local Connect server could not bind
    the port the suite's own server holds."""
    command = [sys.executable, "-c", CLI, *argv, "--quiet"]
    connect = (
        "SPARK_REMOTE",
        "SPARK_LOCAL_REMOTE",
        "SPARK_CONNECT_MODE_ENABLED",
        "SPARK_CONNECT_AUTHENTICATE_TOKEN",
    )
    env = {k: v for k, v in os.environ.items() if k not in connect}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def relative_run(spark, tmp_path_factory, points):
    """A select run given relative paths in one folder; a refresh later runs from another."""
    root = tmp_path_factory.mktemp("lineage")
    (root / "a").mkdir()
    (root / "b").mkdir()
    frame(spark, points[:OLD], 0).write.parquet(str(root / "in1"))
    run = cli(
        root / "a", "select", "--input", "../in1", "--k", "4", "--sample-size", "100", "--output", "out"
    )
    assert run.returncode == 0, run.stderr
    return root


def test_refresh_from_another_folder_checks_the_inputs_select_read(spark, relative_run, points):
    root = relative_run
    manifest = json.loads((root / "a" / "out" / "manifest.json").read_text())
    assert manifest["inputs"] == [{"path": str(root / "in1"), "format": "parquet"}]
    # Rows 0-399 again: the relative path recorded as typed made this pass with "2000 rows in all".
    frame(spark, points[:NEW], 0).write.parquet(str(root / "again"))
    run = cli(root / "b", "refresh", "--model", "../a/out/model", "--previous-subset", "../a/out/subset",
              "--new-input", "../again", "--output", "refreshed")  # fmt: skip
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(f"error: {NEW} new rows have ids that the earlier input {root / 'in1'} ")
    assert not (root / "b" / "refreshed").exists()


def test_an_earlier_input_that_cannot_be_read_is_refused_unless_the_flag_says(
    spark, relative_run, tmp_path, points, capsys
):
    root = relative_run
    fresh = tmp_path / "fresh"
    frame(spark, points[OLD : OLD + NEW], OLD).write.parquet(str(fresh))
    moved = tmp_path / "old_rows"
    shutil.copytree(root / "a" / "out", tmp_path / "run")
    (root / "in1").rename(moved)
    args = ["refresh", "--model", str(tmp_path / "run" / "model"), "--previous-subset",
            str(tmp_path / "run" / "subset"), "--new-input", str(fresh)]  # fmt: skip
    try:
        assert main([*args, "--output", str(tmp_path / "refused"), "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"error: the earlier input {root / 'in1'} cannot be read (")
        assert (
            "set --skip-unreadable-earlier-inputs to refresh anyway" in error and len(error.splitlines()) == 1
        )
        assert not (tmp_path / "refused").exists()

        assert main([*args, "--output", str(tmp_path / "through"), "--skip-unreadable-earlier-inputs"]) == 0
        manifest = json.loads((tmp_path / "through" / "manifest.json").read_text())
        unchecked = manifest["earlier_inputs_unchecked"]
        assert len(unchecked) == 1 and unchecked[0].startswith(f"{root / 'in1'}: cannot be read")
        assert "earlier inputs not checked: " + unchecked[0] in capsys.readouterr().out
        assert manifest["inputs"][-1] == {"path": str(fresh), "format": "parquet"}
    finally:
        moved.rename(root / "in1")

    # A manifest of an earlier version recorded the input as typed: relative to a folder unknown here.
    manifest_path = tmp_path / "run" / "manifest.json"
    old_style = json.loads(manifest_path.read_text())
    del old_style["inputs"]
    manifest_path.write_text(json.dumps(old_style))
    assert main([*args, "--output", str(tmp_path / "relative"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: the earlier input ../in1 is recorded as a relative path")
    assert not (tmp_path / "relative").exists()


@pytest.fixture
def edited(saved, tmp_path):
    """A copy of the saved model and a way to edit its metadata as a hostile user would."""
    model = tmp_path / "model"
    shutil.copytree(saved[0] / "model", model)
    (part,) = (model / "metadata").glob("part-*")

    original = json.loads(part.read_text())

    def edit(change) -> str:
        part.write_text(change(dict(original)) if callable(change) else change)
        return str(model / "metadata")

    return model, edit


def test_edited_model_metadata_is_refused_naming_the_file_and_the_key(spark, edited, tmp_path):
    model, edit = edited
    planted = tmp_path / "planted"
    code = f"__import__('pathlib').Path({str(planted)!r}).touch()"
    where = edit(lambda m: json.dumps({**m, "paramMap": {**m["paramMap"], "k": code}}))
    with pytest.raises(
        ValueError, match=rf"^model metadata {where}: paramMap param 'k' has a value of the wrong type"
    ):
        SensitivitySamplerModel.load(str(model))
    assert not planted.exists()
    where = edit(lambda m: json.dumps({**m, "paramMap": {**m["paramMap"], "evil": 1}}))
    with pytest.raises(ValueError, match=rf"^model metadata {where}: paramMap has an unknown param 'evil'$"):
        SensitivitySamplerModel.load(str(model))
    edit(lambda m: json.dumps({**m, "paramMap": {**m["paramMap"], "k": 0}}))
    with pytest.raises(ValueError, match=rf"^model metadata {where}: k must be at least 1, got 0$"):
        SensitivitySamplerModel.load(str(model))
    edit(lambda m: json.dumps({**m, "fitInfo": "x" * 10_000}))
    with pytest.raises(ValueError, match=rf"^model metadata {where}: 'fitInfo' must be a JSON object$"):
        SensitivitySamplerModel.load(str(model))
    edit("{'uid': not json")
    with pytest.raises(ValueError, match=rf"^model metadata {where} is not JSON \("):
        SensitivitySamplerModel.load(str(model))


def test_a_missing_model_gets_one_line_before_spark_starts(saved, tmp_path):
    folder, _ = saved
    common = ["--previous-subset", str(folder / "previous"), "--new-input", str(folder / "new")]
    # No Java on the PATH: had the command started Spark, it would fail with a gateway error instead.
    env = {"PATH": str(Path(sys.executable).parent), "JAVA_HOME": str(tmp_path / "no-java")}
    empty = tmp_path / "empty"
    empty.mkdir()
    for model, message in [
        ("missing/model", "error: model missing/model does not exist or is not a folder"),
        (str(empty), f"error: model {empty} has no metadata/"),
    ]:
        argv = ["refresh", "--model", model, *common, "--output", str(tmp_path / "out")]
        run = subprocess.run(
            [sys.executable, "-c", CLI, *argv], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert run.returncode == 2
        assert run.stderr.strip().startswith(message) and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_refresh_help_lists_each_input_format_once(capsys):
    with pytest.raises(SystemExit):
        parse_args(["refresh", "--help"])
    out = capsys.readouterr().out
    assert "--format {parquet,json,csv,orc,delta,iceberg,table}" in out
    assert "--skip-unreadable-earlier-inputs" in out and "counted twice" in " ".join(out.split())


def test_new_rows_of_the_wrong_length_fail_or_are_skipped_as_refresh_says(spark, tmp_path, saved, points):
    folder, _ = saved
    rows = [
        (5_000 + i, [float(x) for x in p] + ([0.5] if i < 3 else []), "n") for i, p in enumerate(points[:50])
    ]
    spark.createDataFrame(rows, "id long, embedding array<double>, note string").write.parquet(
        str(tmp_path / "bad")
    )
    args = ["refresh", "--model", str(folder / "model"), "--new-input", str(tmp_path / "bad"),
            "--previous-subset", str(folder / "previous"), "--skip-unreadable-earlier-inputs", "--quiet"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "failed")]) == 2
    assert not (tmp_path / "failed").exists()
    assert main([*args, "--output", str(tmp_path / "skipped"), "--on-invalid", "skip"]) == 0
    manifest = json.loads((tmp_path / "skipped" / "manifest.json").read_text())
    subset = spark.read.parquet(str(tmp_path / "skipped" / "subset"))
    assert subset.where(F.col("id").between(5_000, 5_002)).count() == 0  # the 3 long rows left out
    assert (manifest["n_new"], manifest["new_invalid_rows"]) == (47, 3)
