"""Delta Lake through the delta-rs data source: one commit per job, time travel, safe failures."""

import os

import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import functions as F

from spark_sensitivity.io.delta import (
    DELTA_RS_FORMAT,
    delta_format,
    native_delta_available,
    read_delta,
    write_delta,
)


def rows(spark, first, count, partitions=3):
    data = [(i, [float(i), 1.0], f"row {i}", i / 2) for i in range(first, first + count)]
    return spark.createDataFrame(
        data, "id long, embedding array<float>, note string, weight double"
    ).repartition(partitions)


def sorted_rows(df):
    return df.orderBy("id").collect()


def data_files(path):
    return sorted(name for name in os.listdir(path) if name.endswith(".parquet"))


def test_the_delta_rs_source_is_used_without_the_delta_jars(spark):
    assert not native_delta_available(spark)
    assert delta_format(spark) == DELTA_RS_FORMAT


def test_each_write_is_one_commit_and_time_travel_shows_the_earlier_table(spark, tmp_path):
    table = str(tmp_path / "subset")
    first, second = rows(spark, 0, 40), rows(spark, 100, 25)
    write_delta(first, table)
    version_zero_files = DeltaTable(table).file_uris()
    assert DeltaTable(table).version() == 0 and len(version_zero_files) == 3  # one file per task
    write_delta(second, table, "overwrite")

    history = DeltaTable(table).history()
    assert [entry["version"] for entry in history] == [1, 0]
    assert sorted_rows(read_delta(spark, table)) == sorted_rows(second)
    assert sorted_rows(read_delta(spark, table, version=0)) == sorted_rows(first)
    assert read_delta(spark, table).schema == first.schema

    write_delta(rows(spark, 200, 5), table, "append")
    assert DeltaTable(table).version() == 2 and read_delta(spark, table).count() == 30


def test_existing_tables_are_kept_unless_asked(spark, tmp_path):
    table = str(tmp_path / "t")
    write_delta(rows(spark, 0, 10), table)
    with pytest.raises(FileExistsError, match="already exists"):
        write_delta(rows(spark, 10, 10), table, "error")
    write_delta(rows(spark, 10, 10), table, "ignore")
    with pytest.raises(ValueError, match="unknown write mode 'upsert'"):
        write_delta(rows(spark, 10, 10), table, "upsert")
    with pytest.raises(ValueError, match="column 'id' is .*int.* in the rows but .*long.* in Delta table"):
        write_delta(rows(spark, 10, 10).withColumn("id", F.col("id").cast("int")), table, "append")
    assert DeltaTable(table).version() == 0 and read_delta(spark, table).count() == 10


def test_a_failed_job_commits_nothing_and_leaves_no_files(spark, tmp_path):
    table = str(tmp_path / "t")
    write_delta(rows(spark, 0, 10), table)
    files_before = data_files(table)
    # One task that fails half way through its rows, after its file was started.
    failing = rows(spark, 10, 30, partitions=1).withColumn(
        "weight", F.when(F.col("id") == 35, F.raise_error(F.lit("boom"))).otherwise(F.col("weight"))
    )
    with pytest.raises(Exception, match="boom"):
        write_delta(failing, table, "append")
    assert DeltaTable(table).version() == 0
    assert data_files(table) == files_before
    assert read_delta(spark, table).count() == 10


def test_empty_and_partitioned_tables_read(spark, tmp_path):
    empty = str(tmp_path / "empty")
    write_delta(rows(spark, 0, 10).where("id < 0"), empty)
    assert read_delta(spark, empty).count() == 0
    assert read_delta(spark, empty).columns == ["id", "embedding", "note", "weight"]

    partitioned = str(tmp_path / "partitioned")
    table = rows(spark, 0, 12).withColumn("part", (F.col("id") % 3).cast("string")).toArrow()
    write_deltalake(partitioned, table, partition_by=["part"])
    back = read_delta(spark, partitioned)
    assert back.groupBy("part").count().orderBy("part").collect() == [("0", 4), ("1", 4), ("2", 4)]
    with pytest.raises(ValueError, match="partitioned by"):
        write_delta(back, partitioned, "append")


def test_missing_table_is_a_clear_error(spark, tmp_path):
    with pytest.raises(ValueError, match="no Delta table at"):
        read_delta(spark, str(tmp_path / "nothing"))
