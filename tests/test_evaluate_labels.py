"""evaluate --label-col: the held-out split, the classifier, both arms of the comparison, the CLI."""

import contextlib
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import blobs

from spark_sensitivity.cli import main
from spark_sensitivity.core.classifier import fit_logistic
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.settings import EvaluateConfig
from spark_sensitivity.workflows import evaluate_labels as labels

N = 800


def write_table(path, points, label_values):
    flat = pa.array(np.asarray(points, dtype=np.float64).ravel())
    embedding = pa.FixedSizeListArray.from_arrays(flat, points.shape[1]).cast(pa.list_(pa.float64()))
    pq.write_table(
        pa.table({"id": pa.array(np.arange(len(points))), "embedding": embedding, "label": label_values}),
        path,
    )
    return str(path)


@pytest.fixture(scope="module")
def blob_table(tmp_path_factory):
    """Separated blobs whose labels are the blob ids, as strings."""
    points, component = blobs(N, 3, 4, seed=21)
    folder = tmp_path_factory.mktemp("labels")
    return write_table(folder / "blobs.parquet", points, pa.array([f"blob-{c}" for c in component]))


@pytest.fixture(scope="module")
def cli_run(spark, blob_table, tmp_path_factory):
    """One CLI run at budgets 8 (auto: representatives) and 40 (auto: sensitivity), two seeds."""
    out = tmp_path_factory.mktemp("run") / "evaluation"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            ["evaluate", "--input", blob_table, "--label-col", "label", "--sample-sizes", "8,40",
             "--seeds", "2", "--output", str(out)]
        )  # fmt: skip
    return code, printed.getvalue(), json.loads((out / "evaluation.json").read_text())


def test_logistic_regression_fits_a_separable_set_exactly():
    rng = np.random.default_rng(4)
    means = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]) * 3 + 100.0  # far from the origin: standardised
    y = rng.integers(0, 3, size=150)
    x = means[y] + rng.uniform(-1, 1, size=(150, 2))
    model = fit_logistic(x, y, 3)
    assert (model.predict(x) == y).all()
    # Only the weights' ratios matter, and a row of weight 0 (here mislabelled) is ignored.
    wrong = np.r_[y, (y[:20] + 1) % 3]
    weights = np.r_[np.ones(150), np.zeros(20)]
    ignored = fit_logistic(np.vstack([x, x[:20]]), wrong, 3, sample_weight=weights)
    scaled = fit_logistic(np.vstack([x, x[:20]]), wrong, 3, sample_weight=7 * weights)
    assert (ignored.predict(x) == y).all()
    np.testing.assert_allclose(ignored.coef, scaled.coef, rtol=1e-9)
    heavy = fit_logistic(
        np.vstack([x, x[:20]]), wrong, 3, sample_weight=np.r_[np.ones(150), np.full(20, 50.0)]
    )
    assert not (heavy.predict(x) == y).all()
    # A class with no training row is never predicted for points of the other classes.
    assert set(fit_logistic(x, y, 5).predict(x)) <= {0, 1, 2}


def test_split_is_disjoint_from_the_selection_pool_and_fixed_across_seeds(spark, blob_table):
    frame = spark.read.parquet(blob_table)
    config = EvaluateConfig(input=blob_table, label_col="label", sample_sizes=(8,), seeds=1)
    table = labels.split_table(frame, config)
    again = labels.split_table(
        frame, EvaluateConfig(input=blob_table, label_col="label", sample_sizes=(8,), seeds=3, first_seed=5)
    )
    try:
        test_ids = {r.id for r in table.test.select("id").collect()}
        train_ids = {r.id for r in table.train.select("id").collect()}
        assert test_ids == {r.id for r in again.test.select("id").collect()}
        assert not test_ids & train_ids and len(test_ids | train_ids) == N
        assert abs(len(test_ids) - 0.2 * N) < 4 * np.sqrt(N * 0.2 * 0.8)
        assert table.classes == [f"blob-{c}" for c in range(4)] and table.dim == 3
        subsets = labels.StrategySubsets(spark, table, config)
        try:
            picked, choice = subsets.draw(8, seed=1)
            ids = {r.id for r in picked.select("id").collect()}
            assert len(ids) == 8 and ids <= train_ids, ids & test_ids
            assert choice.strategy == "representatives" and "auto chose representatives" in choice.reason
        finally:
            subsets.release()
        # The distributed accuracy equals the accuracy computed here on the (small) test rows.
        rows = table.test.collect()
        x = np.array([r.embedding for r in rows])
        y = np.array([table.classes.index(r.label) for r in rows])
        model = fit_logistic(x[: len(x) // 2], y[: len(y) // 2], 4)
        crude = fit_logistic(x[:5], y[:5], 4, iterations=1)
        accuracy, scored = labels.heldout_accuracies(table, [model, crude], config)
        assert scored == len(rows)
        np.testing.assert_allclose(accuracy, [(m.predict(x) == y).mean() for m in (model, crude)])
    finally:
        table.release()
        again.release()


def test_both_arms_score_high_on_blob_labels(cli_run):
    code, _, report = cli_run
    assert code == 0
    assert report["classes"] == 4 and report["n_train"] + report["n_test"] == N
    results = {(r["sample_size"], r["training"]): r for r in report["results"]}
    assert sorted(results) == [(8, "unweighted"), (8, "weighted"), (40, "unweighted"), (40, "weighted")]
    for r in results.values():
        assert len(r["strategy_accuracy"]) == len(r["uniform_accuracy"]) == 2
        assert r["wins"] + r["losses"] <= 2 and r["difference_se"] is not None
        assert r["difference_mean"] == pytest.approx(np.mean(r["strategy_accuracy"]) - r["uniform_mean"])
    for training in ("unweighted", "weighted"):
        assert results[(40, training)]["strategy_mean"] > 0.9
        assert results[(40, training)]["uniform_mean"] > 0.9
    # Blobs separated this well: one representative per cluster already labels most rows right.
    assert results[(8, "unweighted")]["strategy_mean"] > 0.8
    assert results[(8, "weighted")]["strategy_used"] == {"representatives (k = 8)": 2}
    assert results[(40, "weighted")]["strategy_used"] == {"sensitivity (k = 100)": 2}
    assert "auto chose sensitivity" in results[(40, "weighted")]["auto_reasons"][0]


def test_cli_prints_the_table(cli_run):
    _, printed, report = cli_run
    assert f"{report['n_train']} training rows, {report['n_test']} held-out test rows, 4 classes" in printed
    assert "strategy mean/median" in printed and "difference ± se" in printed
    row = next(line for line in printed.splitlines() if line.split()[:2] == ["40", "weighted"])
    assert row.endswith("sensitivity (k = 100)") and " pts " in row
    assert "B = 8: auto chose representatives with k = 8" in printed


def run_failing(capsys, table, *flags):
    code = main(
        ["evaluate", "--input", table, "--label-col", "label", "--sample-sizes", "8", "--seeds", "1", *flags]
    )
    return code, capsys.readouterr().err.strip()


def test_bad_labels_and_budgets_get_one_line(spark, blob_table, tmp_path, capsys):
    code, err = run_failing(capsys, blob_table, "--label-col", "class")
    assert code == 2 and err == (
        "error: --label-col: the table has no column 'class' (columns: ['id', 'embedding', 'label'])"
    )
    code, err = run_failing(capsys, blob_table, "--sample-sizes", "700")
    assert (
        code == 2
        and err.startswith("error: sample size 700 is larger than the ")
        and err.endswith(" training rows")
    )
    points = np.random.default_rng(1).normal(size=(1100, 2))
    single = write_table(tmp_path / "single.parquet", points[:50], pa.array(np.full(50, 7)))
    code, err = run_failing(capsys, single)
    assert code == 2 and err == "error: label column 'label' has a single class (7): nothing to classify"
    many = write_table(tmp_path / "many.parquet", points, pa.array(np.arange(1100)))
    code, err = run_failing(capsys, many)
    assert code == 2 and err == "error: label column 'label' has more than 1,000 classes"
    assert "\n" not in err


def test_the_split_has_its_own_stream():
    assert rowrandom.STREAMS["eval_test"] == rowrandom.STREAM_EVAL_TEST
    assert list(rowrandom.STREAMS.values()).count(rowrandom.STREAM_EVAL_TEST) == 1
