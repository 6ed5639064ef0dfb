"""Semantic deduplication: exact against brute force, partition-invariant, planted duplicates found,
the select path, and one clear line for bad input."""

import dataclasses
import json
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import embeddings_frame
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import main
from spark_sensitivity.core.dedup.kernel import ClusterDeduper, brute_force, normalize_rows
from spark_sensitivity.core.dedup.search import (
    GROUP_COL,
    DedupSettings,
    assign_neighbors,
    find_duplicates,
    unit_rows,
)
from spark_sensitivity.core.dedup.split import regroup, split_giant_clusters, split_plan
from spark_sensitivity.core.kmeans.cluster import KMeansSettings
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.settings import ClusteringFields, DedupConfig, settings_of


def _planted(seed=0, n=400, dim=16, groups=8, pairs=30, triples=10, noise=1e-4):
    """Blobs plus planted copies with tiny noise (no natural pair is within eps = 0.001 here).

    Returns the points and the planted groups (ids of a source row and its one or two copies)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(groups, dim))
    base = means[rng.integers(0, groups, n)] + rng.normal(size=(n, dim))
    sources = rng.choice(n, size=pairs + triples, replace=False)
    copy_of = [*sources, *sources[pairs:]]
    copies = [base[s] + rng.normal(scale=noise, size=dim) for s in copy_of]
    groups_of = {int(s): {int(s)} for s in sources}
    for i, s in enumerate(copy_of):
        groups_of[int(s)].add(n + i)
    return np.vstack([base, np.array(copies)]), list(groups_of.values())


def _chained(seed=3, n=300, dim=6):
    """Points with many near-threshold neighbours, so the greedy order matters."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n // 3, dim))
    return np.vstack(
        [base, base + rng.normal(scale=0.15, size=base.shape), base + rng.normal(scale=0.3, size=base.shape)]
    )


def test_kernel_in_blocks_equals_brute_force():
    x = _chained()
    for threshold in (0.9, 0.97, 0.995):
        removed, match = brute_force(x, threshold)
        assert 0 < removed.sum() < len(x)
        for block in (1, 7, 64, len(x)):
            deduper = ClusterDeduper(x.shape[1], threshold, block)
            results = [deduper.add(x[s : s + block]) for s in range(0, len(x), block)]
            got = np.concatenate([r.removed for r in results])
            kept_positions = np.flatnonzero(~got)
            matched = np.concatenate([r.match for r in results])[got]
            assert np.array_equal(got, removed)
            assert np.array_equal(kept_positions[matched], match[removed])


def _centers(points, k, seed=0):
    unit = normalize_rows(points)
    return unit[np.random.default_rng(seed).choice(len(points), k, replace=False)]


def _reference(spark, df, centers, settings):
    """Brute force per cluster, in the documented order, from the assignment collected to numpy."""
    assigned = assign_neighbors(df, "id", "embedding", centers).withColumn(
        "h", rowrandom.row_hash("id", settings.seed)
    )
    rows = assigned.select("id", "embedding", "cluster_id", "center_distance", "h").collect()
    expected = {}
    for j in {r.cluster_id for r in rows}:
        members = [r for r in rows if r.cluster_id == j]
        sign = -1 if settings.keep == "farthest" else 1
        members.sort(key=lambda r: (sign * r.center_distance, r.h, r.id))
        removed, match = brute_force(np.array([r.embedding for r in members]), settings.threshold)
        for i in np.flatnonzero(removed):
            expected[members[i].id] = members[match[i]].id
    return expected


def _found(df, centers, settings):
    assigned = assign_neighbors(df, "id", "embedding", centers)
    with find_duplicates(assigned, "id", "embedding", centers.shape[1], settings) as found:
        rows = found.collect()
    return {r.id: r.duplicate_of for r in rows}, rows


@pytest.mark.parametrize("keep", ["farthest", "nearest"])
def test_spark_equals_brute_force_within_clusters(spark, keep):
    points = _chained()
    df = embeddings_frame(spark, points, partitions=3)
    centers = _centers(points, 4)
    settings = DedupSettings(eps=0.03, keep=keep, block_rows=16)
    found, rows = _found(df, centers, settings)
    assert found == _reference(spark, df, centers, settings)
    unit = normalize_rows(points.astype(np.float32))  # the frame holds array<float>
    for row in rows:
        assert row.similarity == pytest.approx(float(unit[row.id] @ unit[row.duplicate_of]), abs=1e-12)
        assert row.similarity >= settings.threshold and not row.cross_cluster


def test_same_duplicates_for_1_and_16_input_partitions(spark):
    points = _chained(seed=5)
    centers = _centers(points, 3, seed=1)
    settings = DedupSettings(eps=0.05, block_rows=10)
    one, _ = _found(embeddings_frame(spark, points, partitions=1), centers, settings)
    sixteen, _ = _found(embeddings_frame(spark, points, partitions=16), centers, settings)
    assert one == sixteen and len(one) > 20


def test_keep_rule_decides_which_copy_stays(spark):
    center = np.array([1.0, 0.0, 0.0])
    near = np.array([1.0, 0.01, 0.0])
    far = np.array([1.0, 0.012, 0.0])  # cosine with `near` > 0.9999; farther from the center
    df = embeddings_frame(spark, np.vstack([near, far]), partitions=2)
    centers = np.vstack([center, [-1.0, 0.0, 0.0]])
    farthest, _ = _found(df, centers, DedupSettings(eps=0.001, keep="farthest"))
    nearest, _ = _found(df, centers, DedupSettings(eps=0.001, keep="nearest"))
    assert farthest == {0: 1} and nearest == {1: 0}


def test_second_nearest_cluster_finds_pairs_split_across_clusters(spark):
    # Two centers; each pair straddles their bisector, so its rows fall in different clusters.
    centers = normalize_rows(np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]]))
    spread = np.tan(np.linspace(-1.2, 1.2, 20))  # 0.13 rad apart: no two of one side are close
    left = np.column_stack([np.ones(20), np.full(20, 1e-4), spread])
    right = left * np.array([1.0, -1.0, 1.0])
    df = embeddings_frame(spark, np.vstack([left, right]), partitions=2)
    alone, _ = _found(df, centers, DedupSettings(eps=0.001))
    assert alone == {}
    paired, rows = _found(df, centers, DedupSettings(eps=0.001, neighbors=2))
    assert paired == {20 + i: i for i in range(20)}  # the row of the higher cluster id goes
    assert all(row.cross_cluster and row.cluster_id == 1 for row in rows)


def _write(path, points):
    path.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "id": pa.array(np.arange(len(points)), pa.int64()),
            "embedding": pa.array(points.astype(np.float32).tolist(), pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, path / "part-0.parquet")
    return path


@pytest.fixture(scope="module")
def planted_input(tmp_path_factory):
    points, groups = _planted()
    return _write(tmp_path_factory.mktemp("planted"), points), groups, len(points)


@pytest.mark.parametrize("neighbors", ["1", "2"])
def test_dedup_command_finds_planted_copies(spark, tmp_path, planted_input, neighbors):
    table, groups, n = planted_input
    copies = sum(len(group) - 1 for group in groups)
    out = tmp_path / "out"
    args = ["dedup", "--input", str(table), "--k", "8", "--dedup-eps", "0.001", "--output", str(out)]
    assert main([*args, "--dedup-neighbors", neighbors, "--quiet"]) == 0
    duplicates = spark.read.parquet(str(out / "duplicates"))
    pairs = {r.id: r.duplicate_of for r in duplicates.collect()}
    # Recall and precision 1: all rows but one of every planted group go, each naming one that stays.
    group_of = {i: g for g, group in enumerate(groups) for i in group}
    assert len(pairs) == copies
    assert all(group_of[i] == group_of[j] and j not in pairs for i, j in pairs.items())
    assert all(len(group - pairs.keys()) == 1 for group in groups)
    kept = spark.read.parquet(str(out / "kept"))
    assert kept.count() == n - copies
    assert kept.join(duplicates, "id").count() == 0
    manifest = json.loads((out / "manifest.json").read_text())["dedup"]
    assert manifest["removed_rows"] == copies and manifest["kept_rows"] == n - copies
    assert sum(manifest["removed_per_cluster"].values()) == copies


def test_select_with_dedup_draws_from_kept_rows(spark, tmp_path, planted_input):
    table, groups, n = planted_input
    copies = sum(len(group) - 1 for group in groups)
    out = tmp_path / "out"
    args = ["select", "--input", str(table), "--k", "8", "--sample-size", "300", "--seed", "3"]
    assert main([*args, "--dedup-eps", "0.001", "--output", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dedup"]["removed_rows"] == copies
    assert manifest["n_valid"] == n - copies
    assert manifest["sum_of_weights"] == pytest.approx(n - copies, rel=0.1)
    assert spark.read.parquet(str(out / "duplicates")).count() == copies
    subset = spark.read.parquet(str(out / "subset"))
    assert subset.join(spark.read.parquet(str(out / "duplicates")), "id").count() == 0


def _error(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dedup-eps", "0.1", "--vector-col", "vec"], "error: input has no column 'vec'"),
    ],
)
def test_bad_dedup_settings(spark, tmp_path, capsys, planted_input, extra, message):
    out = tmp_path / "out"
    code = main(["dedup", "--input", str(planted_input[0]), "--output", str(out), "--quiet", *extra])
    assert code == 2 and _error(capsys).startswith(message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "message"),
    [("--k", "argument --k: must be at least 1, got 0"),
     ("--dedup-block-rows", "argument --dedup-block-rows: must be at least 1, got 0")],
)  # fmt: skip
def test_a_non_positive_count_is_refused_when_the_flags_are_parsed(
    tmp_path, capsys, planted_input, flag, message
):
    with pytest.raises(SystemExit) as exit_info:
        main(["dedup", "--input", str(planted_input[0]), "--output", str(tmp_path / "out"), "--dedup-eps", "0.1",
              flag, "0"])  # fmt: skip
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["select", "dedup"])
@pytest.mark.parametrize("eps", ["0", "1", "1.5", "-0.2"])
def test_an_eps_outside_0_1_is_refused_when_the_flags_are_parsed(
    tmp_path, capsys, planted_input, command, eps
):
    out = tmp_path / "out"
    args = [command, "--input", str(planted_input[0]), "--sample-size", "5", "--output", str(out)]
    if command == "dedup":
        args.remove("--sample-size"), args.remove("5")
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--dedup-eps", eps, "--quiet"])
    assert exit_info.value.code == 2
    assert f"argument --dedup-eps: must be in (0, 1), got {eps}" in capsys.readouterr().err
    assert not out.exists()


def test_invalid_embeddings_are_named(spark, tmp_path, capsys):
    table = tmp_path / "in"
    table.mkdir()
    vectors = [[0.1, 0.2], None, [float("nan"), 1.0], [0.3, 0.1]] * 5
    pq.write_table(
        pa.table(
            {"id": pa.array(range(20), pa.int64()), "embedding": pa.array(vectors, pa.list_(pa.float64()))}
        ),
        table / "part-0.parquet",
    )
    out = tmp_path / "out"
    args = ["dedup", "--input", str(table), "--k", "2", "--dedup-eps", "0.1", "--output", str(out), "--quiet"]
    assert main(args) == 2
    assert _error(capsys).startswith("error: embedding column 'embedding' has 10 rows that are null")
    assert main([*args, "--on-invalid", "skip"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())["dedup"]
    assert manifest["invalid_rows"] == 10
    kept = spark.read.parquet(str(out / "kept"))
    assert kept.count() == manifest["kept_rows"] == 2  # the two distinct valid vectors
    assert kept.where(F.col("embedding").isNull()).count() == 0


def _dense_duplicates(n, dim=384, seed=0, sources=5, spread=0.05):
    """n rows near a few sources at the text model's dimension: most pairs within cosine 0.95."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(sources, dim))
    noise = rng.normal(size=(n, dim)) * spread * np.sqrt(1.0 / dim) * np.linalg.norm(centers, axis=1).mean()
    return centers[rng.integers(0, sources, n)] + noise


def test_kernel_memory_does_not_grow_with_the_cluster_on_dense_duplicates():
    # Every pair of a block is a candidate here; gathering all their rows at once took 13 GB at
    # 2,048-row blocks and d = 384. numpy reports its buffers to tracemalloc.
    peaks = []
    for n in (2_048, 8_192):
        x = _dense_duplicates(n)
        deduper = ClusterDeduper(x.shape[1], 0.95, block_rows=1_024)
        tracemalloc.start()
        removed = sum(int(deduper.add(x[s : s + 1_024]).removed.sum()) for s in range(0, n, 1_024))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert removed >= n - 10  # nearly all rows are copies of the 5 sources
    assert peaks[1] < 1.2 * peaks[0]  # four times the rows, the same peak
    assert peaks[1] < 64 << 20  # bounded by the block: 1,024^2 candidate pairs and chunks of rows


def test_unit_rows_scale_each_row_in_numpy(spark):
    points = np.random.default_rng(2).normal(size=(50, 384)) + 1e3
    points[3] = 0.0
    rows = unit_rows(embeddings_frame(spark, points, element="double"), "id", "embedding").collect()
    got = np.array([r.embedding for r in sorted(rows, key=lambda r: r.id)])
    assert np.allclose(got, normalize_rows(points), rtol=0, atol=1e-15)
    assert not got[3].any()


def test_kmeans_settings_take_every_declared_field_from_the_config_and_the_params():
    declared = settings_of(ClusteringFields)
    assert {f.name for f in dataclasses.fields(KMeansSettings)} == set(declared)
    # A value unlike every default for each field, so a field left at its default is caught.
    values = dict(k=7, seed=9, max_iter=3, tol=0.5, init_mode="random", init_steps=5, fit_fraction=0.25,
                  points_per_center=11, fit_engine="mllib", driver_fit_max_mb=3, accelerator="cpu")  # fmt: skip
    assert set(values) == set(declared)
    for name, value in values.items():
        assert declared[name].default != value, name
    config = DedupConfig(input="in", output="out", dedup_eps=0.1, **values)
    assert dataclasses.asdict(KMeansSettings.from_config(config)) == values
    sampler = SensitivitySampler(**{declared[name].param: value for name, value in values.items()})
    assert dataclasses.asdict(sampler._kmeans_settings()) == values


def _blobs(n=1_200, dim=24, seed=4, copies=150):
    """Three blobs, with planted loose copies of random rows (within cosine 0.99 of their source,
    about 3 apart in blobs of radius 5: a split puts many copies in another part)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=6.0, size=(3, dim))
    base = means[rng.integers(0, 3, n)] + rng.normal(size=(n, dim))
    sources = rng.choice(n, copies, replace=False)
    return np.vstack([base, base[sources] + rng.normal(scale=0.6, size=(copies, dim))])


def _split_run(spark, points, partitions, neighbors, max_rows):
    df = embeddings_frame(spark, points, partitions=partitions)
    centers = _centers(points, 3, seed=2)
    settings = DedupSettings(eps=0.01, neighbors=neighbors, max_cluster_rows=max_rows, block_rows=64)
    assigned = assign_neighbors(df, "id", "embedding", centers)
    sizes = {r[0]: r[1] for r in assigned.groupBy("cluster_id").count().collect()}
    parts = split_plan(sizes, max_rows)
    kmeans = KMeansSettings(k=3, seed=5)
    grouped = regroup(
        assigned,
        "embedding",
        centers,
        split_giant_clusters(assigned, "id", "embedding", 24, sizes, parts, kmeans),
    )
    group_sizes = [r[0] for r in grouped.groupBy(GROUP_COL).count().select("count").collect()]
    with find_duplicates(grouped, "id", "embedding", 24, settings) as found:
        rows = found.collect()
    return {r.id: r.duplicate_of for r in rows}, rows, parts, group_sizes


def test_giant_clusters_are_split_and_the_result_is_partition_invariant(spark):
    points = _blobs()
    whole, _ = _found(embeddings_frame(spark, points), _centers(points, 3, seed=2), DedupSettings(eps=0.01))
    assert len(whole) >= 100  # most planted copies, found without a split
    one, rows, parts, group_sizes = _split_run(spark, points, 1, neighbors=1, max_rows=200)
    eight, _, _, _ = _split_run(spark, points, 8, neighbors=1, max_rows=200)
    assert one == eight
    assert len(parts) >= 2 and len(group_sizes) > 3 and max(group_sizes) < 3 * 200
    unit = normalize_rows(points.astype(np.float32))
    assert all(unit[i] @ unit[j] >= 0.99 - 1e-12 and j not in one for i, j in one.items())
    assert all(row.cluster_id in (0, 1, 2) for row in rows)  # the top-level cluster is reported
    # Splitting misses copies that land in two parts; the neighbouring part finds them again.
    paired, _, _, _ = _split_run(spark, points, 2, neighbors=2, max_rows=200)
    assert len(one) < len(whole) and len(paired) >= len(one) and len(paired) >= 0.97 * len(whole)


def test_dedup_command_splits_a_giant_cluster(spark, tmp_path, planted_input):
    table, groups, n = planted_input
    copies = sum(len(group) - 1 for group in groups)
    out = tmp_path / "out"
    args = ["dedup", "--input", str(table), "--k", "2", "--dedup-eps", "0.001", "--output", str(out)]
    assert main([*args, "--dedup-max-cluster-rows", "100", "--dedup-neighbors", "2", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())["dedup"]
    assert manifest["split_clusters"] >= 1 and manifest["groups"] > 2
    assert manifest["largest_group"] < manifest["largest_cluster"]
    assert manifest["removed_rows"] >= 0.9 * copies


def test_a_giant_isotropic_cluster_splits_into_groups_under_the_limit(spark):
    # Isotropic noise around one mean at d = 384: parts are chosen by direction (cosine to the part
    # centers), not by Euclidean distance, under which the part center nearest the mean (the
    # average of the most rows, the shortest vector) would take nearly every row.
    rng = np.random.default_rng(3)
    mean = rng.normal(size=384)
    points = mean / np.linalg.norm(mean) * 4.0 + rng.normal(size=(3_000, 384)) / np.sqrt(384)
    df = embeddings_frame(spark, points)
    centers = normalize_rows(points.mean(axis=0, keepdims=True))
    assigned = assign_neighbors(df, "id", "embedding", centers)
    sizes = {0: 3_000}
    parts = split_plan(sizes, 1_000)
    assert parts == {0: 6}
    found = split_giant_clusters(assigned, "id", "embedding", 384, sizes, parts, KMeansSettings(k=1, seed=5))
    grouped = regroup(assigned, "embedding", centers, found)
    group_sizes = sorted(r[0] for r in grouped.groupBy(GROUP_COL).count().select("count").collect())
    assert sum(group_sizes) == 3_000 and len(group_sizes) >= 4
    assert max(group_sizes) <= 1_000, group_sizes
