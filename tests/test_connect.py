"""Spark Connect: the select job gives the same subset over Connect as in a classic session."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CONNECT, blobs

from spark_sensitivity.cli import main

pytestmark = pytest.mark.skipif(CONNECT, reason="compares a classic run with a Connect run")


def _subset(folder):
    table = pq.read_table(folder / "subset").sort_by("id")
    return table.column("id").to_pylist(), table.column("count").to_pylist(), np.array(table.column("weight"))


@pytest.mark.parametrize("engine", ["driver", "executors", "mllib"])
def test_connect_and_classic_runs_give_the_same_subset(spark, tmp_path, engine):
    points, _ = blobs(3000, 6, 5, seed=4)
    source = tmp_path / "input"
    source.mkdir()
    for part in range(3):  # several files, as a lake table has
        rows = slice(part * 1000, (part + 1) * 1000)
        table = pa.table(
            {
                "id": pa.array(range(rows.start, rows.stop), pa.int64()),
                "embedding": pa.array(points[rows].tolist(), pa.list_(pa.float64())),
            }
        )
        pq.write_table(table, source / f"part-{part}.parquet")
    args = ["select", "--input", str(source), "--k", "8", "--sample-size", "200", "--seed", "11",
            "--fit-engine", engine, "--quiet"]  # fmt: skip

    assert main([*args, "--output", str(tmp_path / "classic")]) == 0
    env = {**os.environ, "SPARK_REMOTE": "local[2]"}
    connect = subprocess.run(
        [sys.executable, "-m", "spark_sensitivity", *args, "--output", str(tmp_path / "connect")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # a hung client fails the test instead of the whole run
    )
    assert connect.returncode == 0, connect.stderr[-2000:]

    ids, counts, weights = _subset(tmp_path / "classic")
    ids_c, counts_c, weights_c = _subset(tmp_path / "connect")
    assert ids == ids_c and counts == counts_c
    np.testing.assert_allclose(weights_c, weights, rtol=1e-12)
    classic = json.loads((tmp_path / "classic" / "manifest.json").read_text())
    over_connect = json.loads((tmp_path / "connect" / "manifest.json").read_text())
    assert over_connect["kmeans_cost"] == pytest.approx(classic["kmeans_cost"], rel=1e-12)
    assert classic["kmeans_fit"]["kmeans_engine"] == over_connect["kmeans_fit"]["kmeans_engine"] == engine
    assert (classic["versions"]["spark_connect"], over_connect["versions"]["spark_connect"]) == (False, True)


def test_connect_output_is_refused_where_the_server_cannot_read_it(tmp_path):
    env = {**os.environ, "SPARK_REMOTE": "local[2]"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "spark_sensitivity",
            "select",
            "--input",
            str(tmp_path / "in"),
            "--sample-size",
            "5",
            "--output",
            "s3a://bucket/out",
            "--quiet",
        ],  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(lines) == 1
    assert "over Spark Connect, s3a://bucket/out cannot be published" in lines[0]
