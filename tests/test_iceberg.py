"""Iceberg tables through pyiceberg and a real SQLite catalog: select writes the subset and clusters
tables in one commit each, reads Iceberg inputs (with time travel), and bad input commits nothing."""

import json
import os

import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyspark.sql import functions as F

from spark_sensitivity.cli import main
from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.io.iceberg import RUN_ID_PROPERTY, IcebergOutput, read_iceberg


@pytest.fixture
def lake(tmp_path):
    """A SQLite catalog with a warehouse folder, its --catalog-option flags, and the input table
    lake.points with two snapshots (400 rows, then 200 more)."""
    (tmp_path / "warehouse").mkdir()
    props = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    catalog = SqlCatalog("default", **props)
    write_gaussian_mixture(tmp_path / "raw", n=600, dim=4, clusters=3, seed=5, rows_per_file=600)
    rows = pq.read_table(tmp_path / "raw")
    catalog.create_namespace("lake")
    points = catalog.create_table("lake.points", schema=rows.schema)
    points.append(rows.slice(0, 400))
    points.append(rows.slice(400))
    flags = [f for key, value in props.items() for f in ("--catalog-option", f"{key}={value}")]
    return catalog, flags, props


def select(tmp_path, flags, output, *extra):
    return main(
        [
            "select", "--input", "lake.points", "--format", "iceberg", *flags, "--k", "3",
            "--sample-size", "120", "--output", str(tmp_path / output), "--quiet", *extra,
        ]
    )  # fmt: skip


def error_line(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def snapshot_ids(catalog, name):
    return [s.snapshot_id for s in catalog.load_table(name).snapshots()] if catalog.table_exists(name) else []


def staged_files(tmp_path):
    return [
        name for _, _, names in os.walk(tmp_path / "warehouse") for name in names if name.startswith("ss-")
    ]


def test_select_commits_the_subset_and_clusters_and_a_rerun_adds_a_snapshot(spark, tmp_path, lake):
    catalog, flags, _ = lake
    out_flags = [*flags, "--catalog-option", "token=s3cr3t", "--output-format", "iceberg"]
    assert select(tmp_path, out_flags, "first", "--output-table", "sel.subset", "--run-id", "r1") == 0

    subset = catalog.load_table("sel.subset")
    rows = subset.scan().to_arrow()
    folder = pq.read_table(tmp_path / "first" / "subset")
    assert sum(rows["count"].to_pylist()) == 120 and rows.num_rows == folder.num_rows
    assert sorted(zip(rows["id"].to_pylist(), rows["weight"].to_pylist(), strict=True)) == sorted(
        zip(folder["id"].to_pylist(), folder["weight"].to_pylist(), strict=True)
    )
    assert len(subset.snapshots()) == 1
    assert subset.current_snapshot().summary[RUN_ID_PROPERTY] == "r1"
    clusters = catalog.load_table("sel.subset_clusters").scan().to_arrow()
    assert sorted(clusters["cluster_id"].to_pylist()) == [0, 1, 2]
    assert sum(clusters["size"].to_pylist()) == 600  # the input's current snapshot: 400 + 200 rows

    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert manifest["iceberg"]["subset"]["snapshot_id"] == subset.current_snapshot().snapshot_id
    assert manifest["parameters"]["catalog_options"]["token"] == "***"
    assert "s3cr3t" not in (tmp_path / "first" / "manifest.json").read_text()
    first_snapshot = subset.current_snapshot().snapshot_id

    # A rerun replaces the rows in a new snapshot; the first run's subset stays readable.
    again = [*out_flags, "--output-table", "sel.subset", "--seed", "9", "--overwrite"]
    assert select(tmp_path, again, "second") == 0
    subset = catalog.load_table("sel.subset")
    assert snapshot_ids(catalog, "sel.subset")[0] == first_snapshot and len(subset.snapshots()) == 2
    current = subset.scan().to_arrow()
    assert sum(current["count"].to_pylist()) == 120
    assert sorted(current["id"].to_pylist()) == sorted(
        pq.read_table(tmp_path / "second" / "subset")["id"].to_pylist()
    )
    earlier = read_iceberg(spark, "sel.subset", lake[2], {"snapshot-id": str(first_snapshot)})
    assert sorted(r.id for r in earlier.select("id").collect()) == sorted(rows["id"].to_pylist())
    assert len(catalog.load_table("sel.subset_clusters").snapshots()) == 2
    # Each run wrote one data file per table (one task each), all referenced by a snapshot.
    referenced = {
        os.path.basename(task.file.file_path)
        for name in ("sel.subset", "sel.subset_clusters")
        for snapshot in catalog.load_table(name).snapshots()
        for task in catalog.load_table(name).scan(snapshot_id=snapshot.snapshot_id).plan_files()
    }
    assert sorted(staged_files(tmp_path)) == sorted(referenced) and len(referenced) == 4


def test_existing_rows_are_kept_without_overwrite_and_a_late_schema_mismatch_commits_nothing(
    spark, tmp_path, lake, capsys
):
    catalog, flags, _ = lake
    out_flags = [*flags, "--output-format", "iceberg", "--output-table", "lake.points"]
    before = snapshot_ids(catalog, "lake.points")
    assert select(tmp_path, out_flags, "kept") == 2
    assert error_line(capsys).startswith(
        "error: Iceberg table lake.points already has rows; pass --overwrite"
    )

    # lake.points has no cluster_id, count or weight: found once the subset is sampled and written.
    assert select(tmp_path, [*out_flags, "--overwrite"], "late") == 2
    assert error_line(capsys).startswith(
        "error: column 'cluster_id' is int in the subset but missing in Iceberg table lake.points"
    )
    assert snapshot_ids(catalog, "lake.points") == before
    assert not catalog.table_exists("lake.points_clusters")
    assert staged_files(tmp_path) == []
    assert not (tmp_path / "kept").exists() and not (tmp_path / "late").exists()


def test_iceberg_input_and_time_travel(spark, tmp_path, lake):
    catalog, flags, props = lake
    points = catalog.load_table("lake.points")
    first, _ = snapshot_ids(catalog, "lake.points")
    df = read_iceberg(spark, "lake.points", props, {})
    assert df.select(F.spark_partition_id()).distinct().count() == 2  # one data file per append
    assert sorted(r.id for r in df.select("id").collect()) == sorted(
        points.scan().to_arrow()["id"].to_pylist()
    )
    assert df.schema["embedding"].dataType.simpleString() == "array<float>"

    assert select(tmp_path, flags, "old", "--input-option", f"snapshot-id={first}") == 0
    assert json.loads((tmp_path / "old" / "manifest.json").read_text())["n"] == 400
    stamp = points.snapshot_by_id(first).timestamp_ms
    assert select(tmp_path, flags, "stamp", "--input-option", f"as-of-timestamp={stamp}") == 0
    assert json.loads((tmp_path / "stamp" / "manifest.json").read_text())["n"] == 400
    # The catalog's properties can come from the config file, as a mapping.
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"catalog-option": props, "input-option": {"snapshot-id": first}}))
    assert select(tmp_path, ["--config", str(config)], "config") == 0
    assert json.loads((tmp_path / "config" / "manifest.json").read_text())["n"] == 400
    assert select(tmp_path, flags, "now") == 0
    assert json.loads((tmp_path / "now" / "manifest.json").read_text())["n"] == 600


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--catalog-option", "uri=sqlite:////nonexistent/catalog.db"], "error: Iceberg catalog sqlite:////nonexistent/catalog.db does not exist"),
        (["--input", "lake.nope"], "error: Iceberg table lake.nope does not exist in catalog 'default'"),
        (["--input", "points"], "error: --input must name an Iceberg table as namespace.table, got 'points'"),
        (["--vector-col", "vec"], "error: input has no column 'vec'"),
        (["--id-col", "key"], "error: input has no column 'key'"),
        (["--input-option", "snapshot-id=42"], "error: Iceberg table lake.points has no snapshot 42"),
        (["--input-option", "as-of-timestamp=1000"], "error: Iceberg table lake.points has no snapshot at or before timestamp 1000 ms"),
        (["--input-option", "version=1"], "error: unknown Iceberg input option 'version'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_commits_nothing(spark, tmp_path, lake, capsys, extra, message):
    catalog, flags, _ = lake
    before = snapshot_ids(catalog, "lake.points")
    args = [*flags, "--output-format", "iceberg", "--output-table", "out.subset"]
    assert select(tmp_path, args, "out", *extra) == 2
    assert error_line(capsys).startswith(message)
    assert snapshot_ids(catalog, "lake.points") == before
    assert not catalog.table_exists("out.subset") and not catalog.table_exists("out.subset_clusters")
    assert not (tmp_path / "out").exists() and staged_files(tmp_path) == []


def test_catalog_options_are_needed(spark, tmp_path, capsys):
    assert main(["select", "--input", "lake.points", "--format", "iceberg", "--sample-size", "5",
                 "--output", str(tmp_path / "out"), "--quiet"]) == 2  # fmt: skip
    assert error_line(capsys).startswith(
        "error: Iceberg tables need the catalog's properties: --catalog-option"
    )


def test_a_failure_after_the_commit_undoes_it(spark, tmp_path, lake):
    """What a run does when publishing its folder fails after the tables were committed."""
    catalog, _, props = lake
    before = catalog.load_table("lake.points").current_snapshot().snapshot_id
    output = IcebergOutput(props, "lake.points", overwrite=True)
    points = read_iceberg(spark, "lake.points", props, {})
    output.stage("subset", points.where("id < 10"))
    output.stage("clusters", spark.createDataFrame([(0, 5)], "cluster_id int, size long"))
    committed = output.commit("undo-test")
    table = catalog.load_table("lake.points")
    assert table.current_snapshot().snapshot_id == committed["subset"]["snapshot_id"] != before
    assert table.scan().to_arrow().num_rows == 10 and catalog.table_exists("lake.points_clusters")

    output.abort()
    table = catalog.load_table("lake.points")
    assert table.current_snapshot().snapshot_id == before and table.scan().to_arrow().num_rows == 600
    assert not catalog.table_exists("lake.points_clusters") and staged_files(tmp_path) == []


def test_a_partitioned_output_table_is_refused_before_any_file_is_written(spark, tmp_path, lake):
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    catalog, _, props = lake
    points = catalog.load_table("lake.points")
    spec = PartitionSpec(PartitionField(source_id=points.schema().find_field("component").field_id,
                                        field_id=1000, transform=IdentityTransform(), name="component"))  # fmt: skip
    catalog.create_table("lake.parted", schema=points.schema(), partition_spec=spec)
    output = IcebergOutput(props, "lake.parted", overwrite=True)
    with pytest.raises(
        ValueError, match="Iceberg table lake.parted is partitioned; the subset is written to"
    ):
        output.stage("subset", read_iceberg(spark, "lake.points", props, {}))
    assert staged_files(tmp_path) == [] and catalog.load_table("lake.parted").current_snapshot() is None
