"""Target-matched selection: draws that follow a target's cluster shares, weights that estimate the
target's means, uncovered and thin clusters reported, through the Model, the CLI and bad input."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import main
from spark_sensitivity.core.sampling.target import target_quotas

DIM = 16
LAKE_SIZES = np.array([3000, 2000, 1500, 1000, 1000, 500, 500, 150])
TARGET_BLOBS = {5: 180, 6: 90, 7: 30}  # shares 0.6, 0.3, 0.1; the lake's are 0.05, 0.05, 0.015
CENTERS = np.random.default_rng(0).normal(scale=20, size=(len(LAKE_SIZES), DIM))


def _blob_rows(counts: dict[int, int] | np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    counts = dict(enumerate(counts)) if isinstance(counts, np.ndarray) else counts
    labels = np.repeat(list(counts), list(counts.values()))
    rng = np.random.default_rng(seed)
    return labels, CENTERS[labels] + rng.normal(size=(len(labels), DIM))


def _frame(spark, labels, vectors, ids=True, partitions=2):
    rows = [(int(label), vector.tolist()) for label, vector in zip(labels, vectors, strict=True)]
    schema = "blob int, embedding array<double>"
    if ids:
        rows = [(i, *row) for i, row in enumerate(rows)]
        schema = "id long, " + schema
    return spark.createDataFrame(rows, schema).repartition(partitions)


@pytest.fixture(scope="module")
def lake(spark):
    labels, vectors = _blob_rows(LAKE_SIZES, seed=1)
    return _frame(spark, labels, vectors), labels, vectors


@pytest.fixture(scope="module")
def target(spark):
    labels, vectors = _blob_rows(TARGET_BLOBS, seed=2)
    return _frame(spark, labels, vectors, ids=False), labels, vectors


def _fit(frame, strategy="stratified"):
    # seed 2: k-means finds the 8 blobs (seed 1 merges the smallest into another).
    return SensitivitySampler(k=len(LAKE_SIZES), seed=2, pointsPerCenter=0, strategy=strategy).fit(frame)


def test_quotas_follow_the_target_shares_with_one_draw_per_reached_cluster():
    quotas = target_quotas(np.array([0, 180, 90, 30, 0]), np.array([10, 500, 500, 150, 0]), 400)
    assert quotas.tolist() == [0, 239, 120, 41, 0] and quotas.sum() == 400
    # Fewer draws than reached clusters: proportional only; a cluster without lake rows gets none.
    assert target_quotas(np.array([5, 3, 2, 9]), np.array([9, 9, 9, 0]), 2).tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="no target row falls in a cluster that holds lake rows"):
        target_quotas(np.array([0, 4]), np.array([5, 0]), 3)


@pytest.mark.parametrize("strategy", ["stratified", "sensitivity"])
def test_draws_follow_the_target_and_weights_estimate_its_means_without_bias(lake, target, strategy):
    frame, lake_labels, lake_vectors = lake
    model = _fit(frame, strategy)
    # f = the first coordinate. The target's mean under the method's assumption (the target spread
    # inside a cluster as the lake is): sum_j t_j / T * (the lake's mean of f in cluster j).
    truth = sum(
        count / 300 * lake_vectors[lake_labels == blob, 0].mean() for blob, count in TARGET_BLOBS.items()
    )
    estimates, totals = [], []
    for seed in range(12):
        subset = model.sample(400, seed=seed, target=target[0]).toPandas()
        assert subset["count"].sum() == 400
        draws = subset.groupby("blob")["count"].sum().to_dict()
        assert set(draws) == set(TARGET_BLOBS)  # nothing from clusters the target does not reach
        if strategy == "stratified":
            assert draws == {5: 239, 6: 120, 7: 41}  # the exact allocation
            assert subset["weight"].sum() == pytest.approx(300, rel=1e-12)  # sum of weights = T
        else:  # i.i.d.: the shares in expectation, 0.6 / 0.3 / 0.1 of 400
            assert abs(draws[5] - 240) < 45 and abs(draws[7] - 40) < 25
        f = np.array([v[0] for v in subset["embedding"]])
        estimates.append((subset["weight"] * f).sum() / subset["weight"].sum())
        totals.append(subset["weight"].sum())
    spread = np.std(estimates, ddof=1) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - truth) < 4 * spread + 1e-9
    assert abs(np.mean(totals) / 300 - 1) < 0.05  # sum(weight) estimates T
    info = model.lastSampleInfo["target"]
    assert info["rows"] == 300 and info["clusters_reached"] == 3
    lake_share, target_share = LAKE_SIZES / LAKE_SIZES.sum(), np.zeros(len(LAKE_SIZES))
    target_share[list(TARGET_BLOBS)] = np.array(list(TARGET_BLOBS.values())) / 300
    assert info["total_variation"] == pytest.approx(0.5 * np.abs(target_share - lake_share).sum(), rel=1e-9)
    assert 0 < info["uncovered"] <= 10  # about 1 % of in-cluster rows lie beyond the lake's 99th percentile
    model.summary.release()


def test_uncovered_and_thin_clusters_are_reported(spark, lake):
    frame, _, _ = lake
    model = _fit(frame)
    labels, vectors = _blob_rows({7: 100, 0: 20}, seed=5)
    vectors[-20:] += 80.0  # 20 rows far from every center: the lake has nothing like them
    aimed = _frame(spark, labels, vectors, ids=False)
    subset = model.sample(1000, seed=0, target=aimed).toPandas()
    info = model.lastSampleInfo["target"]
    assert 20 <= info["uncovered"] <= 25 and info["uncovered_share"] == pytest.approx(info["uncovered"] / 120)
    # Blob 7 has 150 lake rows but about 5/6 of 1,000 draws: each of its rows is repeated.
    assert info["thin_clusters"] >= 1
    thin = info["thin_cluster_examples"][0]
    assert thin["lake_rows"] == 150 and thin["draws_per_row"] > 5
    repeated = subset[subset["blob"] == 7]
    assert len(repeated) == 150 and repeated["count"].min() >= 5
    assert subset["count"].sum() == 1000
    model.summary.release()


def test_same_input_target_and_seed_give_the_same_subset_on_any_partitioning(spark, lake, target):
    frame, labels, vectors = lake
    subsets = []
    for partitions in (1, 5):
        model = _fit(_frame(spark, labels, vectors, partitions=partitions))
        picked = model.sample(300, seed=4, target=target[0].repartition(partitions))
        subsets.append(sorted(map(tuple, picked.select("id", "count", "weight").collect())))
        model.summary.release()
    assert subsets[0] == subsets[1]


def test_bad_targets_get_one_line_naming_the_target(spark, lake):
    frame, _, _ = lake
    model = _fit(frame)
    short = spark.createDataFrame([([1.0, 2.0],)], "embedding array<double>")
    with pytest.raises(ValueError, match="^target: embedding column 'embedding' has 1 rows .* wrong length"):
        model.sample(10, target=short)
    with pytest.raises(ValueError, match="the target has no rows"):
        model.sample(10, target=short.limit(0))
    nan = spark.createDataFrame([([float("nan")] * DIM,)], "embedding array<double>")
    with pytest.raises(ValueError, match="^target: .*not finite"):
        model.sample(10, target=nan)
    with pytest.raises(ValueError, match="the target has no column 'embedding'"):
        model.sample(10, target=short.withColumnRenamed("embedding", "vec"))
    representatives = model.copy({model.strategy: "prototypes"})
    with pytest.raises(ValueError, match="strategy prototypes does not draw to a target"):
        representatives.sample(10, target=short)
    model.summary.release()


def test_select_target_from_the_command_line(spark, lake, target, tmp_path, capsys):
    _, labels, vectors = lake
    ids = pa.array(np.arange(len(labels)), pa.int64())
    embedding = pa.array([v.tolist() for v in vectors], pa.list_(pa.float64()))
    pq.write_table(pa.table({"id": ids, "blob": labels, "embedding": embedding}), tmp_path / "lake.parquet")
    _, target_labels, target_vectors = target
    vec = pa.array([v.tolist() for v in target_vectors], pa.list_(pa.float64()))
    pq.write_table(pa.table({"vec": vec, "blob": target_labels}), tmp_path / "target.parquet")
    out = tmp_path / "out"
    flags = ["--k", "8", "--sample-size", "400", "--seed", "2", "--report", "--report-col", "blob"]
    flags += ["--target", str(tmp_path / "target.parquet"), "--target-vector-col", "vec"]
    assert main(["select", "--input", str(tmp_path / "lake.parquet"), "--output", str(out), *flags]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["strategy_used"] == "stratified"
        and "follow the target's cluster shares" in manifest["auto_reason"]
    )
    facts = manifest["target"]
    assert (
        facts["rows"] == 300 and facts["path"].endswith("target.parquet") and len(facts["cluster_rows"]) == 8
    )
    subset = pq.read_table(out / "subset").to_pandas()
    assert subset.groupby("blob")["count"].sum().to_dict() == {5: 239, 6: 120, 7: 41}
    page = (out / "report" / "index.html").read_text()
    assert '<table id="target">' in page and "share of the target" in page
    capsys.readouterr()
    refresh = ["refresh", "--model", str(out / "model"), "--previous-subset", str(out / "subset")]
    assert (
        main([*refresh, "--new-input", str(tmp_path / "lake.parquet"), "--output", str(out.with_name("r"))])
        == 2
    )
    assert "was drawn to a --target" in capsys.readouterr().err

    # --target refuses what cannot follow it, before any work.
    bad = out.with_name("bad")
    argv = ["select", "--input", str(tmp_path / "lake.parquet"), "--output", str(bad), "--sample-size", "10"]
    assert main([*argv, "--target", str(tmp_path / "target.parquet"), "--strategy", "representatives"]) == 2
    assert "--target draws uniformly within each cluster" in capsys.readouterr().err
    assert main([*argv, "--target", str(tmp_path / "target.parquet")]) == 2  # no column 'embedding'
    assert "has no column 'embedding'" in capsys.readouterr().err
    assert not bad.exists()
