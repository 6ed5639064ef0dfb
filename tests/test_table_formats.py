"""select with a Delta subset, select from a Delta input, and refresh, all through the CLI."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from spark_sensitivity.cli import main
from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.io.delta import read_delta


def test_delta_subset_then_delta_input_then_refresh(spark, tmp_path):
    write_gaussian_mixture(tmp_path / "all", n=3000, dim=5, clusters=4, seed=8, rows_per_file=3000)
    table = pq.read_table(tmp_path / "all")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    pq.write_table(table.slice(0, 2400), tmp_path / "old" / "part-0.parquet")
    pq.write_table(table.slice(2400), tmp_path / "new" / "part-0.parquet")

    first = tmp_path / "first"
    args = ["select", "--input", str(tmp_path / "old"), "--k", "4", "--sample-size", "200", "--quiet"]
    assert main([*args, "--output", str(first), "--output-format", "delta", "--drop-vector"]) == 0
    assert DeltaTable(str(first / "subset")).version() == 0
    # The table's history names where it lives, not the staging folder it was written in.
    created = DeltaTable(str(first / "subset")).history()[-1]
    assert created["operationParameters"]["location"] == f"file:{first / 'subset'}"
    assert ".staging" not in json.dumps(created)
    subset = read_delta(spark, str(first / "subset"))
    assert subset.agg({"count": "sum"}).first()[0] == 200
    assert (first / "model" / "metadata").exists()

    # A Delta table is also an input format.
    assert main([*args, "--input", str(first / "subset"), "--format", "delta", "--k", "2", "--vector-col", "cost",
                 "--output", str(tmp_path / "bad")]) == 2  # fmt: skip

    refreshed = tmp_path / "refreshed"
    code = main(
        [
            "refresh", "--model", str(first / "model"), "--new-input", str(tmp_path / "new"),
            "--previous-subset", str(first / "subset"), "--subset-format", "delta",
            "--output", str(refreshed), "--seed", "3", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    manifest = json.loads((refreshed / "manifest.json").read_text())
    assert manifest["n"] == 3000 and manifest["n_new"] == 600 and manifest["m_old"] == 200
    # The earlier run's table is left as it was; the refreshed subset is a Delta table of its own.
    assert DeltaTable(str(first / "subset")).version() == 0
    assert DeltaTable(str(first / "subset")).to_pyarrow_table().num_rows == subset.count()
    assert DeltaTable(str(refreshed / "subset")).history()[-1]["operationParameters"]["location"] == (
        f"file:{refreshed / 'subset'}"
    )
    whole = DeltaTable(str(refreshed / "subset")).to_pyarrow_table()
    assert DeltaTable(str(refreshed / "subset")).version() == 0
    assert pa.compute.sum(whole["count"]).as_py() == 200 + manifest["m_new"]
    assert abs(pa.compute.sum(whole["weight"]).as_py() / 3000 - 1) < 0.2


def test_json_csv_outputs_and_a_catalog_table(spark, tmp_path, capsys):
    write_gaussian_mixture(tmp_path / "in", n=900, dim=3, clusters=3, seed=1)
    base = ["select", "--input", str(tmp_path / "in"), "--k", "3", "--sample-size", "60", "--quiet"]
    for fmt in ("json", "csv"):
        assert main([*base, "--output", str(tmp_path / fmt), "--output-format", fmt]) == 0
        reader = spark.read.option("header", "true").option("inferSchema", "true")
        subset = reader.format(fmt).load(str(tmp_path / fmt / "subset"))
        assert subset.agg({"count": "sum"}).first()[0] == 60
    table = "ss_subset_test"
    assert main([*base, "--output", str(tmp_path / "t1"), "--output-table", table]) == 0
    assert spark.table(table).agg({"count": "sum"}).first()[0] == 60
    assert main([*base, "--output", str(tmp_path / "t2"), "--output-table", table]) == 2
    assert f"table {table} already exists; pass --overwrite" in capsys.readouterr().err
    assert not (tmp_path / "t2").exists()
    assert (
        main([*base, "--output", str(tmp_path / "t2"), "--output-table", table, "--overwrite", "--seed", "4"])
        == 0
    )
    assert str(tmp_path / "t2" / "subset") in spark.table(table).inputFiles()[0]
    spark.sql(f"DROP TABLE {table}")
