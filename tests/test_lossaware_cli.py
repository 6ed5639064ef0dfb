"""The loss-aware select mode (two steps) and the evaluate command, through the CLI."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spark_sensitivity.cli import main
from spark_sensitivity.io.datasets import write_gaussian_mixture


def test_select_job_loss_aware_two_steps(spark, tmp_path):
    table = tmp_path / "mixture"
    write_gaussian_mixture(table, n=2000, dim=4, clusters=5, seed=2)
    common = ["select", "--input", str(table), "--k", "6", "--sample-size", "50", "--seed", "3", "--quiet"]
    first = tmp_path / "step1"
    assert main([*common, "--mode", "loss-aware", "--output", str(first)]) == 0
    reps = pq.read_table(first / "representatives").to_pandas()
    assert len(reps) == 6 and not (first / "subset").exists()
    assert "next_step" in json.loads((first / "manifest.json").read_text())
    losses = pa.table({"id": pa.array(reps.id.to_numpy()), "loss": pa.array(reps.id.to_numpy() % 3 + 0.5)})
    pq.write_table(losses, tmp_path / "losses.parquet")
    second = tmp_path / "step2"
    code = main(
        [
            *common,
            "--mode",
            "loss-aware",
            "--rep-losses",
            str(tmp_path / "losses.parquet"),
            "--output",
            str(second),
        ]
    )
    assert code == 0
    subset = pq.read_table(second / "subset").to_pandas()
    manifest = json.loads((second / "manifest.json").read_text())
    assert subset["count"].sum() == 50
    assert set(subset.id[subset.role == "representative"]) == set(reps.id)
    assert manifest["mode"] == "loss-aware" and manifest["loss_aware"]["representatives"] == 6
    missing = tmp_path / "missing.parquet"
    pq.write_table(losses.slice(1), missing)
    assert (
        main([*common, "--mode", "loss-aware", "--rep-losses", str(missing), "--output", str(tmp_path / "x")])
        == 2
    )


def test_evaluate_command(spark, tmp_path, capsys):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3))
    flat = pa.array(points.ravel())
    pq.write_table(
        pa.table({"id": pa.array(np.arange(500)),
                  "embedding": pa.FixedSizeListArray.from_arrays(flat, 3).cast(pa.list_(pa.float64())),
                  "loss": pa.array(np.abs(points[:, 0]))}),
        tmp_path / "t.parquet",
    )  # fmt: skip
    code = main(["evaluate", "--input", str(tmp_path / "t.parquet"), "--scheme", "uniform",
                 "--sample-sizes", "50", "--seeds", "5"])  # fmt: skip
    assert code == 0
    assert "uniform" in capsys.readouterr().out
