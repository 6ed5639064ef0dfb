"""k-means on the executors (``--fit-engine executors``), for fit samples too large for the driver.

Seeding runs on the driver as the driver engine seeds (k-means|| in numpy, or k random rows), on the
sample rows with the smallest hashes: a uniform subsample of ``INIT_ROWS_PER_CENTER`` rows per
center, at most ``driver_max_bytes`` of float32. Each Lloyd iteration is then one Spark job over the
persisted sample: every task assigns its rows with the project's kernel (numpy, or a GPU) and
returns its per-cluster counts, sums and cost, and the driver adds the partials in partition order.
The sample is hash-partitioned into a number of partitions fixed by its size and sorted, so the
centers depend neither on the input's partitioning nor on the order tasks finish.

MLlib's engine seeds with k-means|| too, but then runs a single-threaded local k-means on the driver
over about 2k x initSteps candidates: at large k that step dominated its whole fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans import kernels, localkmeans
from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.settings import SettingError

# Rows per partition of the persisted sample: each Lloyd task sends k x d float64 sums back, so
# fewer, larger tasks keep that traffic small; fixed so the partials do not depend on the cluster.
ROWS_PER_PARTITION = 100_000

_PARTIAL_DDL = "part int, counts binary, sums binary, cost double"
_PARTIAL_SCHEMA = pa.schema(
    [("part", pa.int32()), ("counts", pa.binary()), ("sums", pa.binary()), ("cost", pa.float64())]
)


def fit(
    sample: DataFrame,
    hash_col: str,
    vector_col: str,
    rows: int,
    dim: int,
    k: int,
    max_iter: int,
    tol: float,
    init: tuple[str, int, int],
    driver_max_bytes: int,
    accelerator: str,
) -> tuple[np.ndarray, int, float]:
    """Centers (float64), iterations and final cost of k-means on ``sample`` (``rows`` valid rows
    of length ``dim``; ``hash_col`` orders them). ``init`` is (mode, k-means|| steps, seed)."""
    partitions = max(1, math.ceil(rows / ROWS_PER_PARTITION))
    ordered = (
        sample.select(hash_col, F.col(vector_col).cast("array<float>").alias(vector_col))
        .repartition(partitions, hash_col)
        .sortWithinPartitions(hash_col)
        .persist()
    )
    try:
        centers = _seeds(ordered, hash_col, vector_col, dim, k, init, driver_max_bytes)
        iterations = 0
        while iterations < max_iter:
            iterations += 1
            counts, sums, _ = _lloyd_pass(ordered, vector_col, centers, accelerator)
            centers, shift = localkmeans.moved_centers(centers, counts, counts.astype(np.float64), sums)
            if shift <= tol * tol:
                break
        cost = _lloyd_pass(ordered, vector_col, centers, accelerator)[2]
    finally:
        ordered.unpersist()
    return centers, iterations, cost


def _seeds(
    ordered: DataFrame,
    hash_col: str,
    vector_col: str,
    dim: int,
    k: int,
    init: tuple[str, int, int],
    driver_max_bytes: int,
) -> np.ndarray:
    """Starting centers from the sample rows with the smallest hashes, collected to the driver."""
    mode, steps, seed = init
    wanted = localkmeans.INIT_ROWS_PER_CENTER * k
    head_rows = max(min(wanted, driver_max_bytes // (4 * dim)), 4 * k)
    table = ordered.orderBy(hash_col).limit(head_rows).toArrow()
    matrix, valid = batch_matrix(table.column(vector_col), dim)
    order = np.argsort(table.column(hash_col).to_numpy(), kind="stable")
    order = order[valid[order]]  # a double beyond float32's range is not finite there: left out
    head = np.ascontiguousarray(matrix[order], dtype=np.float32)
    distinct = localkmeans.count_distinct_rows(head, k)
    if distinct < k:
        raise SettingError(
            f"k={k} is larger than the {distinct} distinct points among the {len(head)} sample rows "
            "k-means is seeded from; lower k",
            "k",
        )
    return localkmeans.seed_centers(head, k, mode, steps, np.random.default_rng(seed))


def _lloyd_pass(
    ordered: DataFrame, vector_col: str, centers: np.ndarray, accelerator: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """One assignment of the sample to ``centers``: per-cluster counts and float64 sums, and the
    cost, each task's partials added on the driver in partition order."""
    k, dim = centers.shape

    def partials(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        nearest = kernels.nearest_function(centers, accelerator)
        counts, sums, cost = np.zeros(k, dtype=np.int64), np.zeros((k, dim)), 0.0
        for batch in batches:
            x, valid = batch_matrix(batch.column(vector_col), dim)
            x = x if valid.all() else x[valid]  # beyond float32's range: left out, as on the driver
            index, distance = kernels.nearest_centers(x, centers, 2, nearest)
            counts += np.bincount(index, minlength=k)
            for j, column in enumerate(np.ascontiguousarray(x.T, dtype=np.float64)):
                sums[:, j] += np.bincount(index, weights=column, minlength=k)
            cost += float(distance.sum())
        part = TaskContext.get().partitionId()
        yield pa.RecordBatch.from_pylist(
            [{"part": part, "counts": counts.tobytes(), "sums": sums.tobytes(), "cost": cost}],
            schema=_PARTIAL_SCHEMA,
        )

    table = ordered.select(vector_col).mapInArrow(partials, _PARTIAL_DDL).toArrow()
    counts, sums, cost = np.zeros(k, dtype=np.int64), np.zeros((k, dim)), 0.0
    for row in np.argsort(table.column("part").to_numpy(), kind="stable"):
        counts += np.frombuffer(table.column("counts")[row].as_py(), dtype=np.int64)
        sums += np.frombuffer(table.column("sums")[row].as_py(), dtype=np.float64).reshape(k, dim)
        cost += table.column("cost")[row].as_py()
    return counts, sums, cost
