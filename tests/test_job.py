"""The job end to end: spark-submit in local mode, the CLI's errors, and atomic publishing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import CONNECT, REPO

from spark_sensitivity.cli import main
from spark_sensitivity.io.datasets import write_gaussian_mixture

SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
# spark-submit starts a classic driver (over Connect the commands run with --remote; test_connect.py).
classic_only = pytest.mark.skipif(CONNECT, reason="spark-submit runs a classic driver")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "mixture"
    write_gaussian_mixture(path, n=5000, dim=8, clusters=6, seed=4, rows_per_file=2000)
    return path


def _submit(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    command = [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false"]
    command += [str(REPO / "jobs" / "select_subset.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@classic_only
def test_spark_submit_writes_the_three_outputs(table, tmp_path):
    out = tmp_path / "selection"
    result = _submit(
        "--input", str(table), "--id-col", "id", "--vector-col", "embedding",
        "--k", "12", "--sample-size", "400", "--seed", "7", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"output: {out}" in result.stdout
    subset = pq.read_table(out / "subset").to_pandas()
    clusters = pq.read_table(out / "clusters").to_pandas()
    manifest = json.loads((out / "manifest.json").read_text())
    assert subset["count"].sum() == 400
    assert set(subset.columns) >= {
        "id",
        "cluster_id",
        "cost",
        "sensitivity",
        "probability",
        "count",
        "weight",
        "component",
        "embedding",
    }
    assert abs(subset["weight"].sum() / 5000 - 1) < 0.15
    assert len(clusters) == 12 and clusters["size"].sum() == 5000
    assert manifest["n"] == 5000 and manifest["m"] == 400 and manifest["k"] == 12
    assert manifest["seed"] == 7 and manifest["parameters"]["vector_col"] == "embedding"
    assert set(manifest["timings"]) >= {
        "read_seconds",
        "kmeans_seconds",
        "assign_reduce_seconds",
        "sample_seconds",
        "write_seconds",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


@classic_only
def test_spark_submit_exits_non_zero_with_one_line_error(table, tmp_path):
    result = _submit(
        "--input", str(table), "--vector-col", "nope", "--sample-size", "10", "--output", str(tmp_path / "o")
    )
    assert result.returncode == 2
    # spark-submit merges the Python driver's stderr into its stdout.
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == ["error: input has no column 'nope' (columns: ['id', 'component', 'embedding'])"]
    assert "Traceback" not in output
    assert not (tmp_path / "o").exists()


def test_existing_output_is_kept_without_overwrite(spark, table, tmp_path, capsys):
    out = tmp_path / "selection"
    args = [
        "select",
        "--input",
        str(table),
        "--k",
        "4",
        "--sample-size",
        "50",
        "--output",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    first = json.loads((out / "manifest.json").read_text())["created"]
    (out / "marker").write_text("old")
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "marker").read_text() == "old"
    assert main([*args, "--overwrite", "--seed", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert not (out / "marker").exists() and manifest["seed"] == 3 and manifest["created"] >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["selection"]


def test_failed_run_keeps_the_old_output(spark, table, tmp_path, capsys):
    out = tmp_path / "selection"
    out.mkdir()
    (out / "marker").write_text("old")
    (out / "manifest.json").write_text("{}")  # an earlier output of this tool
    code = main(
        [
            "select",
            "--input",
            str(table),
            "--k",
            "100000",
            "--sample-size",
            "5",
            "--output",
            str(out),
            "--overwrite",
        ]
    )
    assert code == 2
    assert "k=100000 is larger than" in capsys.readouterr().err
    assert (out / "marker").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["selection"]


def test_csv_and_json_inputs(spark, table, tmp_path):
    df = spark.read.parquet(str(table)).limit(600)
    df.selectExpr("id", "to_json(embedding) AS embedding").write.option("header", True).csv(
        str(tmp_path / "csv")
    )
    df.write.json(str(tmp_path / "json"))
    for fmt in ("csv", "json"):
        out = tmp_path / f"out-{fmt}"
        code = main(
            [
                "select",
                "--input",
                str(tmp_path / fmt),
                "--format",
                fmt,
                "--k",
                "3",
                "--sample-size",
                "30",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        assert code == 0
        assert pq.read_table(out / "subset")["count"].to_numpy().sum() == 30
