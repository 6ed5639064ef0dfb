"""The same input and seed give the same subset: across runs and across input partitionings."""

import pyarrow.parquet as pq
import pytest

from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.workflows.select import run_select


def _subset(path):
    table = pq.read_table(path / "subset", columns=["id", "count", "weight", "cluster_id"]).to_pandas()
    return table.sort_values("id").reset_index(drop=True)


def test_identical_subset_for_1_and_16_input_partitions(spark, tmp_path):
    write_gaussian_mixture(tmp_path / "one", n=6000, dim=6, clusters=8, seed=5, rows_per_file=6000)
    table = pq.read_table(tmp_path / "one")
    (tmp_path / "many").mkdir()
    for part in range(16):  # the same rows, shuffled across 16 files
        pq.write_table(
            table.take(list(range(part, 6000, 16))), tmp_path / "many" / f"part-{part:02d}.parquet"
        )
    runs = []
    for name, source in (("a", "one"), ("b", "many"), ("c", "one")):
        config = SelectConfig(
            input=str(tmp_path / source), output=str(tmp_path / name), sample_size=500, k=10, seed=21,
            fit_fraction=0.5, strategy="sensitivity",
        )  # fmt: skip
        run_select(spark, config)
        runs.append(_subset(tmp_path / name))
    first = runs[0]
    assert first["count"].sum() == 500
    for other in runs[1:]:
        assert first["id"].tolist() == other["id"].tolist()
        assert first["count"].tolist() == other["count"].tolist()
        assert other["weight"].to_numpy() == pytest.approx(first["weight"].to_numpy(), rel=1e-12)
