"""The assignment pass reading Parquet files itself (assignReader / --assign-reader): the same rows,
assignment and subset as Spark's scan, and Spark's scan wherever the direct read could differ."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CONNECT, blobs

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli.app import main
from spark_sensitivity.io import parquet_scan
from spark_sensitivity.settings import SettingError


def write_files(folder, points: np.ndarray, files: int, row_group_rows: int) -> None:
    """``points`` with ids 0..n-1 as ``files`` Parquet files of row groups of ``row_group_rows``."""
    folder.mkdir(parents=True, exist_ok=True)
    for part, rows in enumerate(np.array_split(np.arange(len(points)), files)):
        table = pa.table(
            {
                "id": pa.array(rows, type=pa.int64()),
                "embedding": pa.array(list(points[rows].astype(np.float32)), type=pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, folder / f"part-{part:03d}.parquet", row_group_size=row_group_rows)


def escaped(path) -> str:
    """A path as Spark's reader takes it: glob characters escaped."""
    return str(path).replace("[", "\\[").replace("]", "\\]")


@pytest.fixture(scope="module")
def table_384(tmp_path_factory):
    """3,000 rows x 384 in a folder named with a space, "[", "%", "#" and an accent (which Hadoop
    leaves unescaped in file URIs): three files of 64-row groups."""
    folder = tmp_path_factory.mktemp("scan") / "lake [2026] %41 #é"
    points, _ = blobs(3000, 384, 12, seed=5)
    write_files(folder, points, files=3, row_group_rows=64)
    return folder


def fitted(spark, df, reader: str, **params):
    model = SensitivitySampler(k=12, seed=2, assignReader=reader, **params).fit(df)
    assigned = {
        row["id"]: (row["cluster_id"], row["cost"])
        for row in model.summary.assignments.select("id", "cluster_id", "cost").collect()
    }
    subset = sorted(
        (row["id"], row["count"], row["weight"])
        for row in model.sample(300, seed=4).select("id", "count", "weight").collect()
    )
    return model, assigned, subset


def test_same_assignment_and_subset_as_sparks_scan(spark, table_384):
    # Small splits: several row groups per split and splits that cut through files.
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "400k")
    try:
        df = spark.read.parquet(escaped(table_384))
        by_spark, spark_rows, spark_subset = fitted(spark, df, "spark")
        direct, direct_rows, direct_subset = fitted(spark, df, "pyarrow")
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    assert by_spark.fitInfo["assign_reader"] == "spark"
    assert direct.fitInfo["assign_reader"] == "pyarrow"
    assert "parts" in direct.fitInfo["assign_reader_reason"]
    assert len(direct_rows) == 3000
    assert direct_rows == spark_rows  # every row once, the same cluster and cost
    assert direct_subset == spark_subset
    assert direct.clusterStats.sizes.tolist() == by_spark.clusterStats.sizes.tolist()
    assert direct.clusterStats.total_cost == pytest.approx(by_spark.clusterStats.total_cost, rel=1e-12)


def test_auto_reads_a_plain_parquet_read_directly(spark, table_384):
    model = SensitivitySampler(k=4, seed=0).fit(
        spark.read.parquet(escaped(table_384)).select("embedding", "id")
    )
    assert model.fitInfo["assign_reader"] == "pyarrow"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda df: df.where("id % 2 = 0"), "Filter"),
        (lambda df: df.limit(100), "Limit"),
        (
            lambda df: df.selectExpr("id", "transform(embedding, x -> x * 2) AS embedding"),
            "computes a column",
        ),
        (lambda df: df.union(df), "Union|set_?op"),
    ],
)
def test_anything_but_a_plain_read_goes_through_spark(spark, table_384, change, why):
    df = change(spark.read.parquet(escaped(table_384)))
    model = SensitivitySampler(k=4, seed=0, checkUniqueIds=False).fit(df)
    assert model.fitInfo["assign_reader"] == "spark"
    assert re.search(why, model.fitInfo["assign_reader_reason"], re.IGNORECASE)
    assert model.clusterStats.n == df.count()  # the rows the DataFrame holds, not the files'
    with pytest.raises(SettingError, match=f"(?i)assignReader is pyarrow.*({why})"):
        SensitivitySampler(k=4, seed=0, checkUniqueIds=False, assignReader="pyarrow").fit(df)


def test_other_inputs_and_whitening_go_through_spark(spark, table_384, tmp_path):
    df = spark.read.parquet(escaped(table_384))
    model = SensitivitySampler(k=4, seed=0, whiten=True).fit(df)
    assert model.fitInfo["assign_reader"] == "spark"
    assert "whitened" in model.fitInfo["assign_reader_reason"]
    with pytest.raises(SettingError, match="whitened"):
        SensitivitySampler(k=4, seed=0, whiten=True, assignReader="pyarrow").fit(df)
    # A reader option that could change values.
    optioned = spark.read.option("datetimeRebaseMode", "CORRECTED").parquet(escaped(table_384))
    assert "option datetimerebasemode" in str.lower(
        SensitivitySampler(k=4).fit(optioned).fitInfo["assign_reader_reason"]
    )
    df.write.json(str(tmp_path / "json"))
    as_json = spark.read.schema(df.schema).json(str(tmp_path / "json"))
    assert SensitivitySampler(k=4).fit(as_json).fitInfo["assign_reader"] == "spark"


def test_string_ids_are_read_directly_and_timestamp_ids_by_spark(spark, tmp_path):
    points, _ = blobs(600, 8, 3, seed=2)
    frame = spark.createDataFrame(
        [(f"row-{i}", i, [float(x) for x in p]) for i, p in enumerate(points)],
        "key string, n long, embedding array<float>",
    )
    frame.write.parquet(str(tmp_path / "strings"))
    strings = spark.read.parquet(str(tmp_path / "strings"))
    by_spark = SensitivitySampler(k=3, idCol="key", seed=1, assignReader="spark").fit(strings)
    direct = SensitivitySampler(k=3, idCol="key", seed=1).fit(strings)
    assert direct.fitInfo["assign_reader"] == "pyarrow"
    assert sorted(direct.summary.assignments.collect()) == sorted(by_spark.summary.assignments.collect())
    frame.selectExpr("timestamp_seconds(n) AS t", "embedding").write.parquet(str(tmp_path / "times"))
    times = SensitivitySampler(k=3, idCol="t").fit(spark.read.parquet(str(tmp_path / "times")))
    assert "id column t is a timestamp" in times.fitInfo["assign_reader_reason"]


@pytest.mark.skipif(
    CONNECT, reason="partition columns are seen in the JVM's plan; over Connect a task refuses"
)
def test_a_partition_column_id_goes_through_spark(spark, tmp_path):
    points, _ = blobs(400, 8, 3, seed=1)
    for part in range(2):
        folder = tmp_path / f"id={part}"
        folder.mkdir()
        table = pa.table({"embedding": pa.array(list(points[part::2].astype(np.float32)))})
        pq.write_table(table, folder / "data.parquet")
    df = spark.read.parquet(str(tmp_path))
    model = SensitivitySampler(k=2, checkUniqueIds=False).fit(df)
    assert "partition column" in model.fitInfo["assign_reader_reason"]


def test_splits_cover_every_row_group_once(tmp_path):
    points, _ = blobs(5000, 16, 3, seed=0)
    write_files(tmp_path, points, files=4, row_group_rows=97)
    files = parquet_scan.file_sizes([(tmp_path / f"part-{i:03d}.parquet").as_uri() for i in range(4)])
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32()))])
    for max_split in (1000, 7777, 10**9):
        parts = parquet_scan.plan_parts(files, max_split, open_cost=100)
        reader = parquet_scan.ParquetParts(tuple(map(tuple, parts)), schema, 50, ("id",))
        ids = np.concatenate(
            [
                b.column(0).to_numpy()
                for b in reader(iter([pa.record_batch([pa.array(range(len(parts)))], ["i"])]))
            ]
        )
        assert sorted(ids.tolist()) == list(range(5000)), max_split
        assert all(split.end - split.start <= max_split for part in parts for split in part), (
            "no split is larger than asked"
        )


def test_a_file_without_the_id_column_is_named(tmp_path):
    pq.write_table(pa.table({"embedding": pa.array([[1.0, 2.0]])}), tmp_path / "a.parquet")
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float64()))])
    split = parquet_scan.Split((tmp_path / "a.parquet").as_uri(), 0, 10**9)
    reader = parquet_scan.ParquetParts(((split,),), schema, 10, ("id",))
    with pytest.raises(
        ValueError, match="column 'id' is not in the Parquet file .*a.parquet.*--assign-reader spark"
    ):
        list(reader(iter([pa.record_batch([pa.array([0])], ["i"])])))


def test_a_column_missing_from_one_file_reads_as_null_and_names_match_as_sparks_do(tmp_path):
    batch = pa.record_batch([pa.array([1, 2])], ["id"])
    schema = pa.schema([("id", pa.int32()), ("embedding", pa.list_(pa.float32()))])
    out = parquet_scan.conformed(batch, schema, {"id": "id"})
    assert out.schema == schema and out.column(1).null_count == 2
    # A file whose embedding column is spelled "Embedding": Spark (case-insensitive by default)
    # reads it, and so does the task; case-sensitive, both leave it null.
    pq.write_table(pa.table({"id": [7], "Embedding": pa.array([[1.0, 2.0]])}), tmp_path / "a.parquet")
    split = parquet_scan.Split((tmp_path / "a.parquet").as_uri(), 0, 10**9)
    task = iter([pa.record_batch([pa.array([0])], ["i"])])
    [read] = list(parquet_scan.ParquetParts(((split,),), schema, 10, ("id",))(task))
    assert read.column(1).to_pylist() == [[1.0, 2.0]]
    task = iter([pa.record_batch([pa.array([0])], ["i"])])
    [read] = list(parquet_scan.ParquetParts(((split,),), schema, 10, ("id",), case_sensitive=True)(task))
    assert read.column(1).null_count == 1


def test_ignoring_corrupt_or_missing_files_keeps_sparks_scan(spark, table_384):
    spark.conf.set("spark.sql.files.ignoreCorruptFiles", "true")
    try:
        model = SensitivitySampler(k=4).fit(spark.read.parquet(escaped(table_384)))
    finally:
        spark.conf.unset("spark.sql.files.ignoreCorruptFiles")
    assert "ignoreCorruptFiles" in model.fitInfo["assign_reader_reason"]


def test_cli_records_the_reader(spark, tmp_path, table_384):
    output = tmp_path / "out"
    for reader in ("spark", "pyarrow"):
        flags = ["select", "--input", escaped(table_384), "--output", str(output / reader), "--k", "6"]
        flags += ["--sample-size", "50", "--strategy", "sensitivity", "--assign-reader", reader, "--quiet"]
        assert main(flags) == 0
    manifests = {r: json.loads((output / r / "manifest.json").read_text()) for r in ("spark", "pyarrow")}
    assert manifests["pyarrow"]["kmeans_fit"]["assign_reader"] == "pyarrow"
    assert manifests["spark"]["kmeans_fit"]["assign_reader"] == "spark"
    assert manifests["pyarrow"]["kmeans_cost"] == pytest.approx(manifests["spark"]["kmeans_cost"], rel=1e-12)
    subsets = {
        r: sorted((row["id"], row["count"]) for row in pq.read_table(output / r / "subset").to_pylist())
        for r in manifests
    }
    assert subsets["spark"] == subsets["pyarrow"]


def test_cli_refuses_pyarrow_for_another_format(spark, tmp_path, table_384, capsys):
    spark.read.parquet(escaped(table_384)).write.json(str(tmp_path / "json"))
    flags = ["select", "--input", str(tmp_path / "json"), "--format", "json", "--output", str(tmp_path / "o")]
    assert main([*flags, "--k", "6", "--sample-size", "50", "--assign-reader", "pyarrow", "--quiet"]) != 0
    assert "--assign-reader is pyarrow" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_dry_run_names_the_reader(spark, tmp_path, table_384, capsys):
    flags = ["select", "--input", escaped(table_384), "--output", str(tmp_path / "o"), "--dry-run"]
    assert main([*flags, "--sample-size", "50"]) == 0
    [assign] = [stage for stage in json.loads(capsys.readouterr().out)["stages"] if "assign" in stage]
    assert "the tasks read the Parquet files with pyarrow" in assign
    assert main([*flags, "--sample-size", "50", "--whiten"]) == 0
    [assign] = [stage for stage in json.loads(capsys.readouterr().out)["stages"] if "assign" in stage]
    assert "Spark's scan: the embeddings are whitened first" in assign
    assert main([*flags, "--sample-size", "50", "--whiten", "--assign-reader", "pyarrow"]) != 0
    assert "--assign-reader is pyarrow" in capsys.readouterr().err
