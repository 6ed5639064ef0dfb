"""Stage 2: k-means centers (on the driver in numpy, or distributed) and the assignment pass.

The fit runs on a bounded sample. When that sample is small enough, it is collected and fitted with
:mod:`localkmeans` on the driver (float32 GEMM at the machine's rate); otherwise :mod:`distkmeans`
seeds it on the driver and runs the Lloyd iterations on the executors (or, when asked for, MLlib's
KMeans fits it). The assignment pass runs :mod:`kernels` over Arrow batches in every task (numpy, or
torch on a GPU).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

from spark_sensitivity.core.kmeans import distkmeans, kernels, localkmeans, torchkernel
from spark_sensitivity.core.kmeans.batches import DirectScan, batch_matrix
from spark_sensitivity.core.runtime import has_jvm
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.core.vectors import vector_values
from spark_sensitivity.settings import ENGINES, ClusteringFields, Setting, SettingError, settings_of

CLUSTER_COL = "cluster_id"
COST_COL = "cost"
_VECTOR_TMP = "__ss_vector"
_FEATURES_TMP = "__ss_features"
_HASH_TMP = "__ss_fit_hash"
# Fixed so the fit sample's partitioning (and so MLlib's k-means) never depends on the input's.
_FIT_ROWS_PER_PARTITION = 20_000
# The driver engine holds about four copies of the sample (the JVM's Arrow batches, the Arrow table,
# the matrix, its transpose): 'auto' keeps the sample under a quarter of the driver's JVM heap.
_DRIVER_HEAP_SHARE = 4
# Either engine fits data shifted to the mean of this many sample rows (the smallest hashes), so a
# large offset on every coordinate does not eat the float32 (driver) or float64 (MLlib) precision.
_ORIGIN_ROWS = 1024


@dataclass(frozen=True)
class KMeansSettings:
    """The k-means settings of a fit, named as the settings declare them (``ClusteringFields``)."""

    k: int
    seed: int = 0
    max_iter: int = 20
    tol: float = 1e-4
    init_mode: str = "k-means||"
    init_steps: int = 2
    fit_fraction: float | None = None
    points_per_center: int = 256
    fit_engine: str = "auto"
    driver_fit_max_mb: int = 512
    accelerator: str = "auto"

    @classmethod
    def of(cls, value_of: Callable[[Setting], Any]) -> KMeansSettings:
        """Every declared k-means setting's value: ``value_of`` reads one from a config or a Param,
        so no setting can be left at its default by a caller that forgot it (a test checks that the
        fields here are the declared ones)."""
        settings = {name: value_of(declared) for name, declared in settings_of(ClusteringFields).items()}
        if settings["k"] is None or settings["k"] < 1:
            raise SettingError(f"k must be at least 1, got {settings['k']}", "k")
        return cls(**settings)

    @classmethod
    def from_config(cls, config: Any) -> KMeansSettings:
        """The k-means settings of a command's config (a ``SelectConfig`` or ``DedupConfig``)."""
        return cls.of(lambda declared: getattr(config, declared.name))

    @property
    def driver_max_bytes(self) -> int:
        return self.driver_fit_max_mb << 20


@dataclass(frozen=True)
class KMeansFit:
    centers: np.ndarray
    fit_rows: int
    iterations: int
    training_cost: float
    engine: str
    # Where the products ran: cpu or cuda for the driver engine; for the executors engine the
    # accelerator setting, which each task resolves on its own host.
    device: str = "cpu"
    fit_fraction: float = 1.0  # the share of the input rows the sample was drawn from


def fit_fraction(fraction: float | None, points_per_center: int, k: int, rows: Callable[[], int]) -> float:
    """The fraction of rows k-means is fitted on: ``fraction`` when given, all rows when
    ``points_per_center`` is 0, else about ``points_per_center * k`` rows. ``rows`` counts the input
    (a pass over it), called only in that last case; no rows count as one."""
    if fraction is not None:
        return fraction
    if points_per_center == 0:
        return 1.0
    return min(1.0, points_per_center * k / max(rows(), 1))


def fit_sample(df: DataFrame, id_col: str, vector_col: str, fraction: float, seed: int) -> DataFrame:
    """A deterministic uniform sample of the rows' non-null, finite embeddings (as arrays).

    Membership is decided by a hash of (id, seed), so it does not depend on partitioning.
    """
    values = vector_values(df, vector_col)
    sample = df.select(F.col(id_col), values.alias(_VECTOR_TMP))
    if fraction < 1.0:
        sample = sample.where(rowrandom.jvm_uniform(id_col, seed, rowrandom.STREAM_FIT_SAMPLE) < fraction)
    finite = F.forall(F.col(_VECTOR_TMP), lambda x: ~F.isnan(x) & (F.abs(x) < float("inf")))
    return sample.where(F.col(_VECTOR_TMP).isNotNull() & finite).select(
        rowrandom.row_hash(id_col, seed).alias(_HASH_TMP), F.col(_VECTOR_TMP)
    )


def _most_common_length(sample: DataFrame) -> tuple[int, int]:
    """The most common embedding length in the sample (ties: the shortest) and its row count."""
    lengths = sample.groupBy(F.size(_VECTOR_TMP).alias("d")).count().collect()
    if not lengths:
        raise ValueError("the k-means fit sample has no valid embedding")
    best = max(lengths, key=lambda row: (row["count"], -row["d"]))
    return int(best["d"]), int(best["count"])


def driver_heap_bytes(spark: SparkSession) -> int:
    """The driver JVM's maximum heap, which bounds what 'auto' collects there.

    Over Spark Connect there is no JVM to ask: the configured spark.driver.memory stands in for it
    (Spark's own default, 1g, when unset)."""
    if has_jvm(spark):
        return int(spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory())
    return memory_bytes(spark.conf.get("spark.driver.memory", "1g") or "1g")


def memory_bytes(text: str) -> int:
    """Bytes in a JVM memory string such as '512m', '4g' or '1073741824'."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    text = text.strip().lower().removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def choose_engine(settings: KMeansSettings, rows: int, dim: int, heap_bytes: int) -> str:
    """The engine 'auto' resolves to: the driver while the float32 sample fits both
    ``driver_max_bytes`` and a quarter of the driver's heap, the executors beyond (MLlib only when
    asked for: its k-means|| seeding is single-threaded on the driver, see docs/PERFORMANCE.md)."""
    if settings.fit_engine != "auto":
        return settings.fit_engine
    sample_bytes = rows * dim * 4
    fits = sample_bytes <= min(settings.driver_max_bytes, heap_bytes // _DRIVER_HEAP_SHARE)
    return "driver" if fits else "executors"


def fit(
    df: DataFrame,
    id_col: str,
    vector_col: str,
    settings: KMeansSettings,
    input_rows: int,
    prepare: Callable[[DataFrame], DataFrame] | None = None,
) -> KMeansFit:
    """The project's k-means fit, for the Estimator, dedup and every other caller: the fit fraction
    (``settings.fit_fraction``, or about ``points_per_center * k`` of the ``input_rows`` rows), a
    deterministic sample of that share (:func:`fit_sample`), ``prepare`` applied to the sample (the
    Estimator whitens it), and the centers fitted on it with the engine the settings name."""
    fraction = fit_fraction(settings.fit_fraction, settings.points_per_center, settings.k, lambda: input_rows)
    if not 0.0 < fraction <= 1.0:
        raise SettingError(f"fitFraction must be in (0, 1], got {fraction}", "fitFraction")
    sample = fit_sample(df, id_col, vector_col, fraction, settings.seed)
    if prepare is not None:
        sample = prepare(sample)
    return replace(fit_centers(sample, settings), fit_fraction=fraction)


def fit_centers(sample: DataFrame, settings: KMeansSettings) -> KMeansFit:
    """Fits k-means on a sample made by :func:`fit_sample`, with the engine ``settings`` names.

    The embedding length is the most common one in the sample; rows of another length are left out
    of the fit (the assignment pass flags them). Either engine sees the sample in row-hash order, so
    the centers do not depend on how the input was partitioned.
    """
    if settings.fit_engine not in ENGINES:
        raise SettingError(
            f"fitEngine must be one of {', '.join(ENGINES)}, got {settings.fit_engine!r}", "fitEngine"
        )
    sample = sample.persist()  # read the input once: measured, counted, then fitted from the cache
    try:
        dim, rows = _most_common_length(sample)
        if rows < settings.k:
            raise SettingError(
                f"k={settings.k} is larger than the {rows} valid rows in the k-means fit sample; lower k "
                f"to at most {rows} (a fitFraction below 1 can also be raised, up to the valid rows)",
                "k",
                "fitFraction",
            )
        sample_of_dim = sample.where(F.size(_VECTOR_TMP) == dim)
        origin = _sample_origin(sample_of_dim, dim)
        shifted = sample_of_dim.withColumn(
            _VECTOR_TMP, F.zip_with(_VECTOR_TMP, F.lit(origin.tolist()), lambda value, at: value - at)
        )
        engine = choose_engine(settings, rows, dim, driver_heap_bytes(sample.sparkSession))
        if engine == "driver":
            fit = _fit_on_driver(shifted, dim, settings)
        elif engine == "executors":
            fit = _fit_on_executors(shifted, rows, dim, settings)
        else:
            fit = _fit_mllib(shifted, rows, settings)
        return replace(fit, centers=fit.centers + origin)
    finally:
        sample.unpersist()


def _sample_origin(sample: DataFrame, dim: int) -> np.ndarray:
    """The float64 mean of the sample rows with the smallest hashes, summed in hash order: it moves
    with the data, and does not depend on how the input was partitioned."""
    head = sample.orderBy(_HASH_TMP).limit(_ORIGIN_ROWS)
    table = head.select(_HASH_TMP, F.col(_VECTOR_TMP).cast("array<double>")).toArrow()
    matrix, valid = batch_matrix(table.column(1), dim)
    order = np.argsort(table.column(0).to_numpy(), kind="stable")
    return matrix[order[valid[order]]].mean(axis=0)


def _too_few_distinct(k: int, distinct: int) -> SettingError:
    return SettingError(
        f"k={k} is larger than the {distinct} distinct points in the k-means fit sample; lower k", "k"
    )


def _fit_on_driver(sample: DataFrame, dim: int, settings: KMeansSettings) -> KMeansFit:
    """Collects the sample (about pointsPerCenter * k rows, whatever n is) and fits it in numpy."""
    table = sample.select(_HASH_TMP, F.col(_VECTOR_TMP).cast("array<float>")).toArrow()
    matrix, valid = batch_matrix(table.column(1), dim)
    order = np.argsort(table.column(0).to_numpy(), kind="stable")
    order = order[valid[order]]  # a double beyond float32's range is not finite there: left out
    del table
    x = np.ascontiguousarray(matrix[order], dtype=np.float32)
    del matrix
    distinct = localkmeans.count_distinct_rows(x, settings.k)
    if distinct < settings.k:
        raise _too_few_distinct(settings.k, distinct)
    # On a GPU the sample is uploaded once and each Lloyd pass's products run there (same arg-min).
    on_gpu = torchkernel.resolve_accelerator(settings.accelerator) == "cuda"
    centers, iterations, cost = localkmeans.fit(
        x,
        settings.k,
        settings.max_iter,
        settings.tol,
        settings.init_mode,
        settings.init_steps,
        settings.seed,
        assigner=torchkernel.resident_assigner(x) if on_gpu else None,
    )
    return KMeansFit(centers, len(x), iterations, cost, "driver", "cuda" if on_gpu else "cpu")


def _fit_on_executors(sample: DataFrame, rows: int, dim: int, settings: KMeansSettings) -> KMeansFit:
    """Seeds on the driver from a bounded head of the sample, Lloyd on the executors (distkmeans)."""
    centers, iterations, cost = distkmeans.fit(
        sample,
        _HASH_TMP,
        _VECTOR_TMP,
        rows,
        dim,
        settings.k,
        settings.max_iter,
        settings.tol,
        (settings.init_mode, settings.init_steps, settings.seed),
        settings.driver_max_bytes,
        settings.accelerator,
    )
    return KMeansFit(centers, rows, iterations, cost, "executors", settings.accelerator)


def _fit_mllib(sample: DataFrame, rows: int, settings: KMeansSettings) -> KMeansFit:
    """MLlib k-means (block solver) on the sample, hash-partitioned into a number of partitions fixed
    by its size and sorted, so MLlib sees the same rows in the same order however the input was
    partitioned."""
    # MLlib's block solver fails with an index error when k exceeds the distinct points.
    distinct = sample.select(_VECTOR_TMP).distinct().limit(settings.k).count()
    if distinct < settings.k:
        raise _too_few_distinct(settings.k, distinct)
    partitions = max(1, math.ceil(rows / _FIT_ROWS_PER_PARTITION))
    features = array_to_vector(F.col(_VECTOR_TMP).cast("array<double>")).alias(_FEATURES_TMP)
    ordered = (
        sample.select(_HASH_TMP, features)
        .repartition(partitions, _HASH_TMP)
        .sortWithinPartitions(_HASH_TMP)
        .persist()
    )
    try:
        model = KMeans(
            featuresCol=_FEATURES_TMP,
            k=settings.k,
            maxIter=settings.max_iter,
            tol=settings.tol,
            initMode=settings.init_mode,
            initSteps=settings.init_steps,
            seed=settings.seed,
            # In Spark 4.3 "auto" picks the row solver for Vector columns, about 2x slower.
            solver="block",
        ).fit(ordered)
        summary = model.summary
        centers = np.array(model.clusterCenters(), dtype=np.float64)
        fit = KMeansFit(centers, rows, summary.numIter, summary.trainingCost, "mllib")
        # Over Spark Connect the model lives in the server's cache until its Python object is freed:
        # free it here, between requests. Left to the garbage collector, its finalizer can fire in
        # the middle of a later request and hang the client.
        del summary, model
        gc.collect()
    finally:
        ordered.unpersist()
    if len(centers) < settings.k:
        raise SettingError(
            f"k={settings.k} is larger than the {len(centers)} distinct points k-means found in the "
            "fit sample; lower k",
            "k",
        )
    return fit


class DerivedColumns(Protocol):
    """Further per-row columns computed from (cluster id, cost) in the same pass, e.g. sensitivity."""

    @property
    def fields(self) -> list[StructField]: ...

    def compute(self, cluster_ids: np.ndarray, costs: np.ndarray) -> list[np.ndarray]: ...


def assign(
    df: DataFrame,
    vector_col: str,
    centers: np.ndarray,
    z: int,
    derived: DerivedColumns | None = None,
    keep_vector: bool = True,
    accelerator: str = "auto",
    scan: DirectScan | None = None,
) -> DataFrame:
    """``df`` plus ``cluster_id`` and ``cost`` (null where the embedding is invalid), in one pass.

    Runs as mapInArrow: each Arrow record batch becomes one numpy matrix; the other columns pass
    through untouched. ``derived`` adds columns computed from the assignment in the same pass.
    ``keep_vector=False`` leaves the embedding out of the result, so it never travels back from
    Python to the JVM. ``accelerator`` (auto|cpu|cuda) is resolved in each task, on its executor.
    ``scan``, when given, is ``df``'s rows read by the tasks themselves (its schema is ``df``'s), so
    the embeddings never pass through the JVM at all.
    """
    dim = centers.shape[1]
    values = vector_values(df, vector_col)  # checks the column's type
    read: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] = iter
    if scan is not None:
        if not isinstance(df.schema[vector_col].dataType, ArrayType) or scan.schema != df.schema:
            raise ValueError("a direct scan reads array embeddings of the DataFrame's own schema")
        work, source, read = scan.tasks, vector_col, scan.read
    elif isinstance(df.schema[vector_col].dataType, ArrayType):
        work, source = df, vector_col  # read in place: Arrow carries the embedding once
    else:
        work, source = df.withColumn(_VECTOR_TMP, values), _VECTOR_TMP
    kept = [field for field in df.schema.fields if keep_vector or field.name != vector_col]
    dropped = sorted({source, vector_col} - ({vector_col} if keep_vector else set()))
    extra_fields = derived.fields if derived is not None else []
    out_schema = StructType(
        kept + [StructField(CLUSTER_COL, IntegerType()), StructField(COST_COL, DoubleType())] + extra_fields
    )

    def annotate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        nearest = kernels.nearest_function(centers, accelerator)
        for batch in read(batches):
            matrix, valid = batch_matrix(batch.column(source), dim)
            assignment, cost = kernels.nearest_centers(matrix, centers, z, nearest)
            invalid = ~valid
            out = batch.drop_columns(dropped)
            out = out.append_column(
                CLUSTER_COL, pa.array(assignment, type=pa.int32(), mask=invalid)
            ).append_column(COST_COL, pa.array(cost, type=pa.float64(), mask=invalid))
            if derived is not None:
                values = derived.compute(assignment[valid], cost[valid])
                for field, column in zip(extra_fields, values, strict=True):
                    full = np.zeros(len(valid), dtype=np.float64)
                    full[valid] = column
                    out = out.append_column(field.name, pa.array(full, mask=invalid))
            yield out

    return work.mapInArrow(annotate, out_schema)
