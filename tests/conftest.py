"""One real local[2] Spark session for the whole run (starting one costs about 4 s)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

REPO = Path(__file__).resolve().parent.parent


# SPARK_SENSITIVITY_TEST_CONNECT=1 runs the suite over a local Spark Connect server instead: the tests
# and the commands they call (through SPARK_REMOTE) then get a Connect session.
CONNECT = os.environ.get("SPARK_SENSITIVITY_TEST_CONNECT") == "1"


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    if CONNECT:
        os.environ["SPARK_REMOTE"] = "local[2]"
        builder = SparkSession.builder.remote("local[2]")
    else:
        builder = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
    session = (
        builder.appName("spark-sensitivity-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .getOrCreate()
    )
    if not CONNECT:
        session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def blobs(n: int, dim: int, centers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated imbalanced Gaussian blobs: points (n, dim) and their true component."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=6.0, size=(centers, dim))
    weights = 1.0 / np.arange(1, centers + 1)
    component = rng.choice(centers, size=n, p=weights / weights.sum())
    return means[component] + rng.normal(size=(n, dim)), component


def embeddings_frame(spark, points: np.ndarray, partitions: int = 2, element: str = "float"):
    rows = [(i, [float(x) for x in p]) for i, p in enumerate(points)]
    return spark.createDataFrame(rows, f"id long, embedding array<{element}>").repartition(partitions)
