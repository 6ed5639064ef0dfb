"""Shared helpers of the benchmark scripts: the repository's paths, the experiments' local Spark
session, Fashion-MNIST, Parquet tables, report sections of docs/RESULTS.md and paired summaries.

Imported as ``from benchmarks.common import ...`` (run the scripts from the repository root with
``python -m benchmarks.<folder>.<name>``). Not a script itself.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "RESULTS.md"
FIGURES = REPO / "docs" / "figures"


def spark_session():
    """local[2], as on the 2-core machine the numbers in docs/RESULTS.md come from."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("spark-sensitivity experiments")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "6g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def fashion_pca(components: int = 50) -> dict[str, np.ndarray]:
    """Fashion-MNIST train and test, pixels projected on one PCA basis (fitted on 10,000 images)."""
    from spark_sensitivity.io.datasets import load_fashion_mnist, pca_embed

    train, y = load_fashion_mnist("train")
    test, y_test = load_fashion_mnist("t10k")
    both = pca_embed(np.concatenate([train, test]), components, seed=0).astype(np.float64)
    return {
        "x": both[: len(y)],
        "y": y.astype(np.int64),
        "x_test": both[len(y) :],
        "y_test": y_test.astype(np.int64),
    }


def standardizer(fit_rows: np.ndarray):
    """Scales features by the mean and spread of ``fit_rows`` (what a classifier sees)."""
    mean, scale = fit_rows.mean(axis=0), fit_rows.std(axis=0) + 1e-9
    return lambda rows: (rows - mean) / scale


def vector_array(vectors: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float64).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(pa.list_(pa.float64()))


def write_table(path: Path, columns: dict[str, np.ndarray]) -> str:
    """A Parquet table: 2-d arrays become array<double> columns, 1-d arrays plain columns."""
    arrays = {name: vector_array(v) if v.ndim == 2 else pa.array(v) for name, v in columns.items()}
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path / "part-00000.parquet")
    return str(path)


def replace_section(name: str, body: str) -> None:
    """Rewrites the generated part of docs/RESULTS.md between this experiment's markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"docs/RESULTS.md has no {start} ... {end} markers")
    RESULTS.write_text(pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text), encoding="utf-8")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summarize(points: dict[str, list[float]], reference: dict[str, list[float]]) -> dict[str, dict]:
    """Per budget: mean, median, standard error, and the mean paired difference to ``reference``
    (runs with the same seed) with its standard error; ``flag`` is "~" when the difference is within
    two standard errors of zero."""
    out = {}
    for budget, runs in points.items():
        values, base = np.asarray(runs), np.asarray(reference[budget][: len(runs)])
        diffs = values - base
        se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        diff_se = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
        inside = not diff_se > 0 or abs(diffs.mean()) < 2 * diff_se
        out[budget] = {
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "se": se,
            "diff": float(diffs.mean()),
            "diff_se": diff_se,
            "flag": "~" if inside else "",
        }
    return out
