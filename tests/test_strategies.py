"""Selection strategies: exact sizes, weights that sum to n, determinism, partitioning, the CLI flag."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import blobs, embeddings_frame

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import main
from spark_sensitivity.core.sampling import strategies
from spark_sensitivity.io.datasets import write_gaussian_mixture

N = 2000


@pytest.fixture(scope="module")
def points():
    return blobs(N, 4, 6, seed=11)[0]


@pytest.fixture(scope="module")
def frame(spark, points):
    return embeddings_frame(spark, points, partitions=3).persist()


@pytest.fixture(scope="module")
def model(frame):
    fitted = SensitivitySampler(k=8, seed=5).fit(frame)
    yield fitted
    fitted.summary.release()


def _pick(model, strategy, m, seed=3, dataset=None):
    model.set(model.strategy, strategy)
    try:
        rows = model.sample(m, seed=seed, dataset=dataset).drop("embedding").toPandas()
    finally:
        model.set(model.strategy, strategies.SENSITIVITY)
    return rows.sort_values("id").reset_index(drop=True)


def _assignments(model):
    return model.summary.assignments.toPandas()


@pytest.mark.parametrize(("strategy", "m"), [("stratified", 150), ("prototypes", 150), ("prototypes", 1500)])
def test_cluster_strategies_keep_exactly_m_rows_with_weights_summing_to_n(model, strategy, m):
    rows = _pick(model, strategy, m)
    assert len(rows) == m and rows["id"].is_unique and (rows["count"] == 1).all()
    assert rows["weight"].sum() == pytest.approx(N, rel=1e-12)
    sizes = model.clusterStats.sizes
    quotas = strategies.quotas(model.clusterStats, m)
    per_cluster = rows.groupby("cluster_id").size()
    assert all(per_cluster.get(j, 0) == quotas[j] for j in range(len(sizes)))
    assert quotas.sum() == m and (quotas >= 1).all()
    # proportional allocation: no cluster is more than one row (plus its guaranteed one) off
    assert np.all(np.abs(quotas - m * sizes / sizes.sum()) <= 2)
    weights = rows.groupby("cluster_id")["weight"].sum()
    assert weights.to_numpy() == pytest.approx(sizes[weights.index.to_numpy()], rel=1e-12)
    assert rows["probability"].to_numpy() == pytest.approx(1 / rows["weight"].to_numpy(), rel=1e-12)


def test_prototypes_keep_the_nearest_rows_at_small_budgets_and_the_farthest_at_large(model):
    everything = _assignments(model)
    for m, hardest in ((150, False), (1500, True)):
        assert (m / N >= strategies.PROTOTYPES_HARD_FROM) == hardest
        kept = set(_pick(model, "prototypes", m)["id"])
        for _, cluster in everything.groupby("cluster_id"):
            inside = cluster["id"].isin(kept)
            if hardest:
                assert cluster["cost"][inside].min() >= cluster["cost"][~inside].max()
            else:
                assert cluster["cost"][inside].max() <= cluster["cost"][~inside].min()


def test_representatives_are_the_rows_nearest_each_center_weighted_by_cluster_size(frame):
    fitted = SensitivitySampler(k=20, seed=5, strategy="representatives").fit(frame)
    try:
        rows = fitted.sample(20, seed=1).drop("embedding").toPandas()
        everything = _assignments(fitted)
    finally:
        fitted.summary.release()
    sizes = fitted.clusterStats.sizes
    assert len(rows) == fitted.clusterStats.nonempty == 20 and rows["count"].sum() == 20
    assert rows["weight"].sum() == pytest.approx(N, rel=1e-12)
    nearest = everything.sort_values(["cost", "id"]).groupby("cluster_id").head(1)
    assert set(rows["id"]) == set(nearest["id"])
    assert rows["weight"].to_numpy() == pytest.approx(sizes[rows["cluster_id"].to_numpy()])
    with pytest.raises(ValueError, match="must equal k=20"):
        fitted.sample(30)


def test_stratified_subsets_are_uniform_within_clusters(model):
    """Over seeds every row of a cluster is kept about equally often (m_j / n_j)."""
    hits = np.zeros(N)
    seeds = 12
    for seed in range(seeds):
        hits[_pick(model, "stratified", 400, seed=seed)["id"].to_numpy()] += 1
    everything = _assignments(model)
    quotas = strategies.quotas(model.clusterStats, 400)
    largest = int(np.argmax(model.clusterStats.sizes))
    ids = everything["id"][everything["cluster_id"] == largest].to_numpy()
    rate = quotas[largest] / model.clusterStats.sizes[largest]
    assert hits[ids].mean() / seeds == pytest.approx(rate, rel=1e-9)  # exactly m_j per seed
    # a fixed half of the cluster (by id) gets half of the picks, within 4 standard errors
    half = ids[: len(ids) // 2]
    expected = seeds * rate * len(half)
    assert abs(hits[half].sum() - expected) < 4 * np.sqrt(expected)


def test_same_seed_same_subset_and_other_seed_another(model):
    for strategy in ("stratified", "prototypes", "sensitivity"):
        first, again = _pick(model, strategy, 120, seed=4), _pick(model, strategy, 120, seed=4)
        assert first["id"].tolist() == again["id"].tolist()
        assert first["weight"].tolist() == again["weight"].tolist()
    other = _pick(model, "stratified", 120, seed=5)
    assert set(other["id"]) != set(_pick(model, "stratified", 120, seed=4)["id"])


def test_sensitivity_strategy_is_the_default_draw(model):
    default = model.sample(100, seed=2).drop("embedding").toPandas().sort_values("id")
    explicit = _pick(model, "sensitivity", 100, seed=2)
    assert default["id"].tolist() == explicit["id"].tolist()
    assert default["weight"].tolist() == explicit["weight"].tolist()
    assert explicit["count"].sum() == 100
    assert explicit["weight"].sum() == pytest.approx(N, rel=0.15)


def test_the_same_subset_for_1_and_8_partitions(spark, points):
    subsets = {}
    for partitions in (1, 8):
        data = embeddings_frame(spark, points, partitions=partitions)
        fitted = SensitivitySampler(k=8, seed=5).fit(data)
        try:
            subsets[partitions] = {
                s: _pick(fitted, s, 150, seed=9) for s in ("stratified", "prototypes", "sensitivity")
            }
        finally:
            fitted.summary.release()
    for strategy, rows in subsets[1].items():
        assert rows["id"].tolist() == subsets[8][strategy]["id"].tolist(), strategy
        assert rows["weight"].to_numpy() == pytest.approx(
            subsets[8][strategy]["weight"].to_numpy(), rel=1e-12
        )


def test_unknown_strategy_and_impossible_budgets_are_refused(frame, model):
    with pytest.raises(ValueError, match="unknown strategy 'nearest'; choose one of sensitivity, "):
        SensitivitySampler(k=3, strategy="nearest").fit(frame)
    with pytest.raises(ValueError, match="below the 8 non-empty clusters"):
        _pick(model, "stratified", 5)
    with pytest.raises(ValueError, match="k must equal the sample size"):
        strategies.resolve("representatives", 10, 50)


def test_auto_picks_representatives_at_small_budgets_and_stratified_above():
    limit = strategies.AUTO_REPRESENTATIVES_MAX_M
    assert strategies.resolve("auto", None, limit) == ("representatives", limit)
    assert strategies.resolve("auto", None, limit + 1) == ("stratified", strategies.DEFAULT_K)
    assert strategies.resolve("auto", 50, 300) == ("stratified", 50)
    assert strategies.resolve("auto", 300, 300) == ("representatives", 300)
    assert strategies.resolve("representatives", None, 40) == ("representatives", 40)
    assert strategies.resolve("sensitivity", None, 40) == ("sensitivity", strategies.DEFAULT_K)
    assert strategies.resolve("loss-aware", 7, 40) == ("loss-aware", 7)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("strategies") / "mixture"
    write_gaussian_mixture(path, n=1500, dim=4, clusters=5, seed=2)
    return path


def _select(table, out, *flags):
    return main(["select", "--input", str(table), "--seed", "3", "--quiet", "--output", str(out), *flags])


def test_select_job_writes_each_strategy_with_the_same_columns(spark, table, tmp_path):
    columns = None
    for strategy, extra, rows in (
        ("stratified", ["--k", "6"], 60),
        ("prototypes", ["--k", "6"], 60),
        ("auto", [], 20),  # no --k: k = 20, and n / m = 75 rows per representative: representatives
    ):
        out = tmp_path / strategy
        assert _select(table, out, "--sample-size", str(rows), "--strategy", strategy, *extra) == 0
        subset = pq.read_table(out / "subset").to_pandas()
        manifest = json.loads((out / "manifest.json").read_text())
        assert subset["count"].sum() == rows == len(subset)
        assert subset["weight"].sum() == pytest.approx(1500, rel=1e-12)
        assert manifest["strategy_requested"] == strategy
        columns = columns or list(subset.columns)
        assert list(subset.columns) == columns
    assert manifest["strategy"] == manifest["strategy_used"] == "representatives"
    assert manifest["k"] == manifest["k_used"] == 20
    assert manifest["auto_reason"].startswith("auto chose representatives with k = 20 because m = 20 <= 1000")


def test_strategy_loss_aware_is_the_loss_aware_mode(spark, table, tmp_path):
    out = tmp_path / "step1"
    assert _select(table, out, "--sample-size", "30", "--k", "5", "--strategy", "loss-aware") == 0
    assert len(pq.read_table(out / "representatives")) == 5
    assert json.loads((out / "manifest.json").read_text())["mode"] == "loss-aware"


def test_select_job_refuses_bad_strategies_with_one_line(spark, table, tmp_path, capsys):
    assert (
        _select(table, tmp_path / "a", "--sample-size", "30", "--strategy", "representatives", "--k", "5")
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: strategy representatives") and "\n" not in error
    with pytest.raises(SystemExit) as raised:
        _select(table, tmp_path / "b", "--sample-size", "30", "--strategy", "nearest")
    assert raised.value.code == 2
    assert "invalid choice: 'nearest'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
