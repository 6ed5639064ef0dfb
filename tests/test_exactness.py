"""Exactness on real numbers: an offset on every coordinate changes neither the clusters nor the
subset, the nearest-center kernel is the float64 arg-min even at near-ties, and the per-row
randomness stays inside its bounds."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import blobs

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import main
from spark_sensitivity.core.kmeans import localkmeans
from spark_sensitivity.core.sampling import lossaware, rowrandom

N, DIM, K, M = 20_000, 8, 20, 500
OFFSETS = (0.0, 1e4, 1e6)


def _write(points: np.ndarray, folder, files: int) -> str:
    """The rows (id, embedding as array<double>) split round-robin over ``files`` Parquet files."""
    folder.mkdir()
    ids = np.arange(len(points))
    for part in range(files):
        rows = ids[part::files]
        flat = pa.array(points[rows].ravel())
        vectors = pa.FixedSizeListArray.from_arrays(flat, DIM).cast(pa.list_(pa.float64()))
        pq.write_table(
            pa.table({"id": pa.array(rows), "embedding": vectors}), folder / f"part-{part}.parquet"
        )
    return str(folder)


def _select(spark, path: str) -> tuple[np.ndarray, object]:
    """Every row's cluster (in id order) and the drawn subset (sorted by id), by fit + sample."""
    model = SensitivitySampler(k=K, idCol="id", featuresCol="embedding", seed=11).fit(
        spark.read.parquet(path)
    )
    assignments = model.summary.assignments.select("id", "cluster_id").toPandas().sort_values("id")
    drawn = model.sample(M).select("id", "cluster_id", "count", "weight").toPandas()
    model.summary.release()
    return assignments["cluster_id"].to_numpy(), drawn.sort_values("id").reset_index(drop=True)


@pytest.fixture(scope="module")
def selections(spark, tmp_path_factory):
    points, _ = blobs(N, DIM, K, seed=4)
    root = tmp_path_factory.mktemp("offsets")
    runs = {
        offset: _select(spark, _write(points + offset, root / f"one-{offset:g}", 1)) for offset in OFFSETS
    }
    runs["eight files, 1e6"] = _select(spark, _write(points + 1e6, root / "eight", 8))
    return runs


@pytest.mark.parametrize("run", [1e4, 1e6, "eight files, 1e6"])
def test_an_offset_changes_neither_the_clusters_nor_the_subset(selections, run):
    base_clusters, base_subset = selections[0.0]
    clusters, subset = selections[run]
    assert base_subset["count"].sum() == M
    np.testing.assert_array_equal(clusters, base_clusters)
    assert subset["id"].tolist() == base_subset["id"].tolist()
    assert subset["count"].tolist() == base_subset["count"].tolist()
    assert subset["cluster_id"].tolist() == base_subset["cluster_id"].tolist()
    np.testing.assert_allclose(subset["weight"], base_subset["weight"], rtol=1e-9)


def _brute_force(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    distances = ((points[:, None, :].astype(np.float64) - centers[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)


def test_kernel_is_the_float64_argmin_at_near_ties_and_large_offsets():
    rng = np.random.default_rng(3)
    centers = rng.normal(scale=4.0, size=(30, 16))
    # Points within 1e-9 of the bisector of two centers: float32 scores cannot tell them apart.
    pairs = rng.integers(30, size=(3000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    halfway = (centers[pairs[:, 0]] + centers[pairs[:, 1]]) / 2
    points = halfway + rng.normal(scale=1e-9, size=halfway.shape)
    for offset in (0.0, 1e4, 1e6, 1e8):
        index = localkmeans.nearest(points + offset, centers + offset)
        np.testing.assert_array_equal(index, _brute_force(points + offset, centers + offset))


def test_kernel_breaks_exact_ties_to_the_lowest_index_whatever_the_batching(monkeypatch):
    centers = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    points = np.array([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.5, -3.0], [-2.0, 0.0]] * 7)
    expected = np.tile([0, 0, 0, 0, 1], 7)
    np.testing.assert_array_equal(localkmeans.nearest(points, centers), expected)
    monkeypatch.setattr(localkmeans, "SCORE_BLOCK_ELEMENTS", 4 * 3)  # blocks of 3 rows
    np.testing.assert_array_equal(localkmeans.nearest(points + 1e6, centers + 1e6), expected)


def test_lloyd_on_offset_data_finds_the_same_centers():
    points, _ = blobs(4000, 4, 6, seed=8)
    start = points[:6]
    centers, _, cost = localkmeans.lloyd(points, start, 20, 0.0)
    moved, _, moved_cost = localkmeans.lloyd(points + 1e5, start + 1e5, 20, 0.0)
    np.testing.assert_allclose(moved - 1e5, centers, atol=1e-6)
    assert moved_cost == pytest.approx(cost, rel=1e-8)


_MASK64 = (1 << 64) - 1


def _unshift_xor(value: int, shift: int) -> int:
    """The inverse of v ^ (v >> shift) on 64 bits."""
    result = value
    for _ in range(64 // shift + 1):
        result = value ^ (result >> shift)
    return result


def _hash_giving(bits: int, stream: int) -> np.ndarray:
    """A row hash whose splitmix64 bits under ``stream`` (counter 0) are exactly ``bits``."""

    def mix(x: int) -> int:
        return int(rowrandom._splitmix64(np.array([x], dtype=np.uint64))[0])

    z = _unshift_xor(bits, 31)
    z = (z * pow(int(rowrandom._MIX2), -1, 1 << 64)) & _MASK64
    z = _unshift_xor(z, 27)
    z = (z * pow(int(rowrandom._MIX1), -1, 1 << 64)) & _MASK64
    z = _unshift_xor(z, 30)
    before = (z - int(rowrandom._GOLDEN)) & _MASK64
    key = (stream * int(rowrandom._MIX1)) & _MASK64
    hashed = before ^ mix(key)
    assert mix(hashed ^ mix(key)) == bits
    return np.array([hashed], dtype=np.uint64).view(np.int64)


def test_uniforms_stay_strictly_inside_zero_and_one_on_extreme_bits():
    for bits in (_MASK64, 0, (1 << 11) - 1, _MASK64 ^ ((1 << 12) - 1)):
        u = rowrandom.uniforms(_hash_giving(bits, stream=5), stream=5)
        assert 0.0 < u[0] < 1.0


def test_poisson_count_is_bounded_when_the_uniform_is_next_to_one():
    hashes = np.repeat(_hash_giving(_MASK64, stream=rowrandom.STREAM_DRAW_COUNT), 4)
    assert rowrandom.uniforms(hashes, rowrandom.STREAM_DRAW_COUNT)[0] == 1.0 - 2.0**-53
    rates = np.array([1e-6, 0.5, 5.0, 29.9])
    counts = rowrandom.poisson(rates, hashes, rowrandom.STREAM_DRAW_COUNT)
    # The 1 - 2^-53 quantiles are about 2, 14, 32 and 84 (scipy); well below the cap.
    assert counts.max() <= rowrandom.INVERSION_MAX_COUNT
    assert (counts >= np.array([2, 10, 30, 80])).all()


def _three_rows(folder) -> tuple[str, str]:
    """Rows 0 and 1 at 0, row 2 at 1 (k = 2: representatives 0 and 2); true losses 0, 1, 1 (total 2).
    Row 1 has the proxy loss of row 0 (0) and distance 0 to it."""
    folder.mkdir()
    vectors = pa.array([[0.0], [0.0], [1.0]], type=pa.list_(pa.float64()))
    pq.write_table(pa.table({"id": pa.array([0, 1, 2]), "embedding": vectors}), folder / "rows.parquet")
    pq.write_table(
        pa.table({"id": pa.array([0, 2]), "loss": pa.array([0.0, 1.0])}), folder / "losses.parquet"
    )
    return str(folder / "rows.parquet"), str(folder / "losses.parquet")


def test_plain_loss_aware_rule_is_biased_and_the_select_job_refuses_it(spark, tmp_path, capsys):
    rows, losses = _three_rows(tmp_path / "three")
    model = SensitivitySampler(k=2, idCol="id", featuresCol="embedding", seed=1).fit(spark.read.parquet(rows))
    true_loss = {0: 0.0, 1: 1.0, 2: 1.0}

    def estimate(share: float) -> float:
        selection = lossaware.prepare(model, spark.read.parquet(losses), uniform_share=share)
        drawn = selection.sample(4000, seed=3).select("id", "weight").collect()
        selection.release()
        return sum(row["weight"] * true_loss[row["id"]] for row in drawn)

    plain = lossaware.prepare(model, spark.read.parquet(losses), uniform_share=0.0)
    plain.release()
    assert (plain.zero_sensitivity_rows, plain.zero_sensitivity_example) == (1, 1)
    assert estimate(0.0) == pytest.approx(1.0)  # the bias: row 1 can never be drawn
    assert estimate(0.5) == pytest.approx(2.0, abs=0.15)
    model.summary.release()

    common = ["select", "--input", rows, "--k", "2", "--sample-size", "20", "--seed", "1", "--quiet"]
    common += ["--mode", "loss-aware", "--rep-losses", losses]
    assert main([*common, "--uniform-share", "0", "--output", str(tmp_path / "plain")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "gives 1 row (e.g. id 1) a sensitivity of 0" in error and "positive --uniform-share" in error
    assert not (tmp_path / "plain").exists()
    assert main([*common, "--uniform-share", "0.5", "--output", str(tmp_path / "floored")]) == 0
    facts = json.loads((tmp_path / "floored" / "manifest.json").read_text())["loss_aware"]
    assert facts["uniform_share"] == 0.5 and facts["zero_sensitivity_rows"] == 0
