"""What bounds the assignment pass: the float32 GEMM rate, the per-batch kernel, and the Spark pass.

A helper of ``python -m benchmarks.performance.compare`` (docs/PERFORMANCE.md, the GEMM rate and
the assignment breakdown of the block between the ``perf:begin`` and ``perf:end`` markers) and of
``gpu_kernel`` (:func:`best_seconds`). Not run on its own.

The assignment pass does n * k * d multiply-adds; at the machine's float32 matrix-multiply rate that
takes 2 n k d / rate seconds, a floor no implementation beats. The pass itself is split into what
can be timed alone: scanning the Parquet embeddings in the JVM, moving them to Python as Arrow
batches, and the full pass (scan, Arrow, the nearest-center kernel, the result back to the JVM).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np


def best_seconds(run: Any, repeats: int) -> float:
    run()  # warm-up: page faults, thread start, kernel selection
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def gemm_rates(k: int, dim: int, rows: int = 10_000, repeats: int = 5) -> dict[str, Any]:
    """float32 GEMM rate (GFLOP/s, 2 flops per multiply-add) for 1 and 2 threads, and the kernel's.

    Shapes: the assignment's (rows x d) @ (d x k), and a square 2048 product as the machine's peak.
    The kernel figure is ``kernels.nearest_centers`` on one batch in one thread, as in a Spark task.
    The best of ``repeats`` runs is kept: the machine is shared, and the best run is the one least
    disturbed by other work.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    from spark_sensitivity.core.kmeans.kernels import nearest_centers

    rng = np.random.default_rng(0)
    points = rng.standard_normal((rows, dim), dtype=np.float32)
    centers = rng.standard_normal((k, dim))
    centers_t = np.ascontiguousarray(centers.T.astype(np.float32))
    square = rng.standard_normal((2048, 2048), dtype=np.float32)
    blas = [
        {key: info.get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    result: dict[str, Any] = {
        "blas": blas,
        "openblas_env": {key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            seconds = best_seconds(lambda: points @ centers_t, repeats)
            result[f"assign_shape_gflops_{threads}t"] = round(2 * rows * k * dim / seconds / 1e9, 1)
            seconds = best_seconds(lambda: square @ square, repeats)
            result[f"square_gflops_{threads}t"] = round(2 * 2048**3 / seconds / 1e9, 1)
    with threadpool_limits(limits=1, user_api="blas"):
        seconds = best_seconds(lambda: nearest_centers(points, centers, 2), repeats)
    result["kernel_gflops_1t"] = round(2 * rows * k * dim / seconds / 1e9, 1)
    result["kernel_rows_per_s_1t"] = round(rows / seconds)
    return result


def _noop(spark: Any, df: Any) -> float:
    started = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def assignment_breakdown(
    spark: Any, data: str, centers: np.ndarray, batch_rows: int, repeats: int
) -> dict[str, float]:
    """Median seconds of: the JVM scan alone, scan + Arrow to Python, and the full assignment pass
    as the select job runs it (the embedding is not sent back)."""
    import pyarrow as pa

    from spark_sensitivity.core.kmeans.cluster import assign

    def drain(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rows = sum(batch.num_rows for batch in batches)
        yield pa.RecordBatch.from_pydict({"rows": pa.array([rows], type=pa.int64())})

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    df = spark.read.parquet(data).select("id", "embedding")
    plans = {
        "scan": df,
        "scan_arrow": df.mapInArrow(drain, "rows long"),
        "assign": assign(df, "embedding", centers, 2, keep_vector=False),
    }
    times: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(repeats):  # alternate, so that other load hits all of them alike
        for name, plan in plans.items():
            times[name].append(_noop(spark, plan))
    spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    return {f"{name}_seconds": round(float(np.median(values)), 3) for name, values in times.items()}
