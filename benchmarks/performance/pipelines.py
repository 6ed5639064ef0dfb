"""The four pipelines the benchmark times on the same data, each returning its stages and k-means cost.

A helper of ``python -m benchmarks.performance.compare`` (docs/PERFORMANCE.md, the block between
the ``perf:begin`` and ``perf:end`` markers); docs/PERFORMANCE.md "Jobs and passes over the input
per run" also times :func:`sklearn` alone. Not run on its own.

1. ``project``: this project's select job (``workflows.select.run_select``), end to end.
2. ``naive``: what a Spark user would write without this project: MLlib KMeans with its default
   settings on all rows, ``transform``, a Python UDF for the distances, the per-cluster reduce,
   and weighted sampling with DataFrame operations (the m smallest keys -log(u) / q, Efraimidis and
   Spirakis, so without replacement; weights 1 / (m q)).
3. ``sklearn``: one process: the table read into numpy, scikit-learn KMeans (k-means++, one init),
   sensitivities and i.i.d. sampling in numpy, the subset written with pyarrow.
4. ``faiss``: the same with faiss k-means (random init, fitted on 256 points per center, faiss's
   default) and a flat index for the assignment.
5. ``faiss_streaming``: faiss as a careful single-machine user runs it on a table larger than
   memory (docs/PERFORMANCE.md, "A table larger than memory"): one streamed pass keeps a hash-free
   Bernoulli sample of about 256 rows per center, faiss fits it, a second streamed pass assigns every
   row in batches, and only (id, cluster, cost) of all rows stay in memory; the subset is written
   without embeddings (as ``select --drop-vector``).

Every pipeline runs at most ``max_iter`` Lloyd iterations (MLlib's default, 20). The cost reported
is the k-means cost over all rows, sum_i min_j ||x_i - c_j||^2, in float64: the project computes it
in its assignment pass, the naive pipeline in its UDF, and the single-machine pipelines outside the
timed region with :func:`exact_cost`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

STAGES = {
    "project": ("read", "checks", "kmeans", "assign_reduce", "sample", "write"),
    "naive": ("read", "kmeans", "assign_reduce", "sample", "write"),
    "sklearn": ("read", "kmeans", "assign_reduce", "sample", "write"),
    "faiss": ("read", "kmeans", "assign_reduce", "sample", "write"),
    "faiss_streaming": ("read", "kmeans", "assign_reduce", "sample", "write"),
}


class Stopwatch:
    """Seconds per named stage, in order."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._started = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round(now - self._last, 3)
        self._last = now

    @property
    def total(self) -> float:
        return round(self._last - self._started, 3)


def project(
    spark: Any,
    data: str,
    out: str,
    k: int,
    m: int,
    seed: int,
    max_iter: int,
    engine: str,
    assign_reader: str = "auto",
) -> dict[str, Any]:
    """The select job, its k-means fitted by ``engine`` (--fit-engine), every row assigned through
    ``assign_reader`` (--assign-reader)."""
    from spark_sensitivity.settings import SelectConfig
    from spark_sensitivity.workflows.select import run_select

    config = SelectConfig(
        input=data,
        output=out,
        sample_size=m,
        k=k,
        seed=seed,
        max_iter=max_iter,
        fit_engine=engine,
        assign_reader=assign_reader,
        overwrite=True,
        strategy="sensitivity",  # docs/PERFORMANCE.md's figures; select's default became auto
    )
    manifest = run_select(spark, config)
    timings = manifest["timings"]
    stages = {
        stage: timings[f"{stage}_seconds"] for stage in ("read", "kmeans", "assign_reduce", "sample", "write")
    }
    # The id checks run between the read and the fit, outside the manifest's stages.
    stages = {"read": stages["read"], "checks": round(timings["total_seconds"] - sum(stages.values()), 3)} | {
        key: value for key, value in stages.items() if key != "read"
    }
    return {
        "seconds": timings["total_seconds"],
        "stages": stages,
        "kmeans_cost": manifest["kmeans_cost"],
        "fit_rows": manifest["kmeans_fit"]["fit_rows"],
        "iterations": manifest["kmeans_fit"]["kmeans_iterations"],
        "subset_rows": manifest["subset_rows"],
        "assign_reader": manifest["kmeans_fit"]["assign_reader"],
    }


def naive(spark: Any, data: str, out: str, k: int, m: int, seed: int, max_iter: int) -> dict[str, Any]:
    """MLlib KMeans (defaults) on all rows, a UDF for distances, DataFrame weighted sampling."""
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType

    watch = Stopwatch()
    df = spark.read.parquet(data).withColumn("features", array_to_vector("embedding"))
    n = df.count()
    watch.lap("read")
    model = KMeans(featuresCol="features", k=k, seed=seed, maxIter=max_iter).fit(df)
    watch.lap("kmeans")
    centers = spark.sparkContext.broadcast(np.array(model.clusterCenters()))

    @F.udf(returnType=DoubleType())
    def squared_distance(vector: Any, cluster: int) -> float:
        diff = vector.toArray() - centers.value[cluster]
        return float(diff @ diff)

    scored = (
        model.transform(df)
        .withColumn("cost", squared_distance("features", "prediction"))
        .drop("features")
        .cache()
    )
    stats = scored.groupBy("prediction").agg(F.count("*").alias("size"), F.sum("cost").alias("cluster_cost"))
    total_cost, nonempty = stats.agg(F.sum("cluster_cost"), F.count("*")).first()
    watch.lap("assign_reduce")
    q = (F.col("cost") / total_cost + 1.0 / F.col("size")) / (1.0 + nonempty)
    sample = (
        scored.join(F.broadcast(stats), "prediction")
        .withColumn("q", q)
        .withColumn("key", -F.log(F.rand(seed)) / F.col("q"))
        .orderBy("key")
        .limit(m)
        .withColumn("weight", 1.0 / (m * F.col("q")))
        .drop("key")
        .cache()
    )
    rows = sample.count()
    watch.lap("sample")
    sample.write.mode("overwrite").parquet(out)
    watch.lap("write")
    sample.unpersist()
    scored.unpersist()
    centers.unpersist()
    return {
        "seconds": watch.total,
        "stages": watch.stages,
        "kmeans_cost": float(total_cost),
        "fit_rows": n,
        "iterations": model.summary.numIter,
        "subset_rows": rows,
    }


def read_matrix(data: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids and the (n, d) float32 embedding matrix of a Parquet folder, as a single machine reads it."""
    table = pq.read_table(data, columns=["id", "embedding"])
    vectors = table.column("embedding").combine_chunks()
    dim = len(vectors[0])
    matrix = vectors.flatten().to_numpy().astype(np.float32, copy=False).reshape(-1, dim)
    return table.column("id").to_numpy(), matrix


def exact_cost(x: np.ndarray, centers: np.ndarray, block: int = 65_536) -> float:
    """sum_i min_j ||x_i - c_j||^2: arg-min in float32, the chosen distance in float64 (as the project)."""
    from spark_sensitivity.core.kmeans.kernels import nearest_centers

    return float(sum(nearest_centers(x[i : i + block], centers, 2)[1].sum() for i in range(0, len(x), block)))


def _sample_and_write(
    watch: Stopwatch,
    ids: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    cost: np.ndarray,
    k: int,
    m: int,
    seed: int,
    out: str,
) -> int:
    """Sensitivities s_i = v_i / Phi + 1 / n_a(i), m i.i.d. draws with p = s / sum(s), weights c / (m p)."""
    sizes = np.bincount(labels, minlength=k)
    s = cost / cost.sum() + 1.0 / sizes[labels]
    p = s / s.sum()
    watch.lap("assign_reduce")
    drawn, counts = np.unique(np.random.default_rng(seed).choice(len(x), size=m, p=p), return_counts=True)
    watch.lap("sample")
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(x[drawn].ravel()), x.shape[1])
    _write_subset(watch, out, ids, labels, drawn, counts, counts / (m * p[drawn]), embedding)
    return len(drawn)


def _write_subset(
    watch: Stopwatch,
    out: str,
    ids: np.ndarray,
    labels: np.ndarray,
    drawn: np.ndarray,
    counts: np.ndarray,
    weights: np.ndarray,
    embedding: pa.Array | None = None,
) -> None:
    """The drawn rows as one Parquet file (with their embeddings when given), timed as "write"."""
    columns = {"id": ids[drawn], **({"embedding": embedding} if embedding is not None else {})}
    columns.update(cluster_id=labels[drawn].astype(np.int32), count=counts.astype(np.int32), weight=weights)
    Path(out).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), Path(out) / "part-00000.parquet")
    watch.lap("write")


def sklearn(data: str, out: str, k: int, m: int, seed: int, max_iter: int) -> dict[str, Any]:
    from sklearn.cluster import KMeans

    watch = Stopwatch()
    ids, x = read_matrix(data)
    watch.lap("read")
    model = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed).fit(x)
    watch.lap("kmeans")
    labels = model.labels_
    diff = x - model.cluster_centers_[labels]
    cost = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
    rows = _sample_and_write(watch, ids, x, labels, cost, k, m, seed, out)
    return {
        "seconds": watch.total,
        "stages": watch.stages,
        "kmeans_cost": exact_cost(x, model.cluster_centers_.astype(np.float64)),
        "fit_rows": len(x),
        "iterations": int(model.n_iter_),
        "subset_rows": rows,
    }


def faiss(data: str, out: str, k: int, m: int, seed: int, max_iter: int) -> dict[str, Any]:
    import faiss as faiss_lib

    watch = Stopwatch()
    ids, x = read_matrix(data)
    watch.lap("read")
    kmeans = faiss_lib.Kmeans(x.shape[1], k, niter=max_iter, seed=seed)
    kmeans.train(x)
    watch.lap("kmeans")
    distances, labels = kmeans.index.search(x, 1)
    rows = _sample_and_write(
        watch, ids, x, labels[:, 0], np.maximum(distances[:, 0], 0).astype(np.float64), k, m, seed, out
    )
    return {
        "seconds": watch.total,
        "stages": watch.stages,
        "kmeans_cost": exact_cost(x, kmeans.centroids.astype(np.float64)),
        "fit_rows": min(len(x), 256 * k),
        "iterations": max_iter,
        "subset_rows": rows,
    }


def _batches(data: str, columns: list[str]) -> Any:
    """The Parquet folder's record batches, file by file, never the whole table."""
    for path in sorted(Path(data).glob("*.parquet")):
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns)


def _batch_matrix(batch: pa.RecordBatch) -> np.ndarray:
    vectors = batch.column(batch.schema.get_field_index("embedding"))
    values = vectors.flatten().to_numpy().astype(np.float32, copy=False)
    return values.reshape(len(vectors), -1)


def faiss_streaming(data: str, out: str, k: int, m: int, seed: int, max_iter: int) -> dict[str, Any]:
    import faiss as faiss_lib

    watch = Stopwatch()
    files = sorted(Path(data).glob("*.parquet"))
    n = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    rng = np.random.default_rng(seed)
    share = min(1.0, 256 * k / n)
    sample = [x[rng.random(len(x)) < share] for x in map(_batch_matrix, _batches(data, ["embedding"]))]
    x_fit = np.concatenate(sample)
    del sample
    watch.lap("read")
    kmeans = faiss_lib.Kmeans(x_fit.shape[1], k, niter=max_iter, seed=seed)
    kmeans.train(x_fit)
    watch.lap("kmeans")
    ids = np.empty(n, dtype=np.int64)
    labels = np.empty(n, dtype=np.int64)
    cost = np.empty(n, dtype=np.float64)
    at = 0
    for batch in _batches(data, ["id", "embedding"]):
        distances, nearest = kmeans.index.search(_batch_matrix(batch), 1)
        rows = slice(at, at + len(batch))
        ids[rows] = batch.column(0).to_numpy()
        labels[rows], cost[rows] = nearest[:, 0], np.maximum(distances[:, 0], 0)
        at += len(batch)
    sizes = np.bincount(labels, minlength=k)
    p = cost / cost.sum() + 1.0 / sizes[labels]
    p /= p.sum()
    watch.lap("assign_reduce")
    drawn, counts = np.unique(rng.choice(n, size=m, p=p), return_counts=True)
    watch.lap("sample")
    _write_subset(watch, out, ids, labels, drawn, counts, counts / (m * p[drawn]))
    return {
        "seconds": watch.total,
        "stages": watch.stages,
        # faiss's float32 squared distances summed in float64 (an exact recomputation is one more pass)
        "kmeans_cost": float(cost.sum()),
        "fit_rows": len(x_fit),
        "iterations": max_iter,
        "subset_rows": len(drawn),
    }
