"""The README's first command: select from Fashion-MNIST and show that the weighted subset matches."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.io.datasets import write_fashion_mnist
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.workflows.select import run_select


def run(spark: SparkSession, workdir: Path, k: int, sample_size: int, seed: int) -> dict:
    data = workdir / "fashion-mnist-pca32"
    if not (data / "part-00000.parquet").exists():
        rows = write_fashion_mnist(data)
        print(f"embedded {rows} Fashion-MNIST training images (32 PCA components) into {data}")
    output = workdir / "selection"
    manifest = run_select(
        spark,
        SelectConfig(
            input=str(data), output=str(output), sample_size=sample_size, k=k, seed=seed,
            overwrite=True,
            # The demo shows unbiased weights (their sum estimates n), which the paper's i.i.d.
            # draws give; the select command's default, auto, serves training instead.
            strategy="sensitivity",
        ),
    )  # fmt: skip
    n = manifest["n"]
    full = {
        r["label_name"]: r["count"]
        for r in spark.read.parquet(str(data)).groupBy("label_name").count().collect()
    }
    subset = spark.read.parquet(str(output / "subset"))
    picked = {
        r["label_name"]: (r["weight"], r["draws"])
        for r in subset.groupBy("label_name")
        .agg(F.sum("weight").alias("weight"), F.sum("count").alias("draws"))
        .collect()
    }
    print(f"\nFashion-MNIST train: n = {n}, k = {k}, m = {sample_size} draws, seed = {seed}")
    print("strategy: sensitivity (the paper's unbiased i.i.d. draws; select's default is auto, for training)")
    print(f"sum of weights = {manifest['sum_of_weights']:.0f} (estimates n = {n})")
    print(f"{'class':<12} {'share of data':>14} {'weighted estimate':>18} {'share of draws':>15}")
    worst = 0.0
    for name in sorted(full):
        true_share = full[name] / n
        weight, draws = picked.get(name, (0.0, 0))
        estimate = weight / manifest["sum_of_weights"]
        worst = max(worst, abs(estimate - true_share))
        print(f"{name:<12} {true_share:>14.3f} {estimate:>18.3f} {draws / sample_size:>15.3f}")
    print(f"largest class-share error of the weighted subset: {worst:.3f}")
    print(f"\noutput: {output} (subset/, clusters/, manifest.json)")
    return manifest
