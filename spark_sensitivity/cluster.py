"""Stage 2: k-means centers (MLlib, distributed) and the assignment pass (numpy over Arrow batches)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

from spark_sensitivity import rowrandom
from spark_sensitivity.vectors import batch_matrix, vector_values

CLUSTER_COL = "cluster_id"
COST_COL = "cost"
_VECTOR_TMP = "__ss_vector"
_FEATURES_TMP = "__ss_features"
_HASH_TMP = "__ss_fit_hash"
# Fixed so the fit sample's partitioning (and so MLlib's k-means) never depends on the input's.
_FIT_ROWS_PER_PARTITION = 20_000
# Bounds the (rows x k) score block of the assignment pass to 64 MiB of float32.
SCORE_BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class KMeansSettings:
    k: int
    max_iter: int = 20
    tol: float = 1e-4
    init_mode: str = "k-means||"
    init_steps: int = 2
    seed: int = 0


@dataclass(frozen=True)
class KMeansFit:
    centers: np.ndarray
    fit_rows: int
    iterations: int
    training_cost: float


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


def _most_common_length(sample: DataFrame) -> int:
    lengths = sample.groupBy(F.size(_VECTOR_TMP).alias("d")).count().collect()
    if not lengths:
        raise ValueError("the k-means fit sample has no valid embedding")
    return int(max(lengths, key=lambda row: (row["count"], -row["d"]))["d"])


def fit_centers(sample: DataFrame, settings: KMeansSettings) -> KMeansFit:
    """Runs MLlib k-means (block solver) on a sample made by :func:`fit_sample`.

    The embedding length is the most common one in the sample; rows of another length are left out
    of the fit (the assignment pass flags them). The sample is hash-partitioned into a number of
    partitions fixed by its size and sorted, so MLlib sees the same rows in the same order however
    the input was partitioned.
    """
    sample = sample.persist()  # read the input once: measured, counted, then repartitioned from cache
    ordered = None
    try:
        dim = _most_common_length(sample)
        sample_of_dim = sample.where(F.size(_VECTOR_TMP) == dim)
        rows = sample_of_dim.count()
        if rows < settings.k:
            raise ValueError(
                f"k={settings.k} is larger than the {rows} valid rows in the k-means fit sample; "
                "lower --k or raise --fit-fraction"
            )
        # MLlib's block solver fails with an index error when k exceeds the distinct points.
        distinct = sample_of_dim.select(_VECTOR_TMP).distinct().limit(settings.k).count()
        if distinct < settings.k:
            raise ValueError(
                f"k={settings.k} is larger than the {distinct} distinct points in the k-means fit "
                "sample; lower --k"
            )
        partitions = max(1, math.ceil(rows / _FIT_ROWS_PER_PARTITION))
        features = array_to_vector(F.col(_VECTOR_TMP).cast("array<double>")).alias(_FEATURES_TMP)
        ordered = (
            sample_of_dim.select(_HASH_TMP, features)
            .repartition(partitions, _HASH_TMP)
            .sortWithinPartitions(_HASH_TMP)
            .persist()
        )
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
        fit = KMeansFit(centers, rows, summary.numIter, summary.trainingCost)
    finally:
        if ordered is not None:
            ordered.unpersist()
        sample.unpersist()
    if len(centers) < settings.k:
        raise ValueError(
            f"k={settings.k} is larger than the {len(centers)} distinct points k-means found in the "
            "fit sample; lower --k"
        )
    return fit


def nearest_centers(points: np.ndarray, centers: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of each point's nearest center, and its cost ||x - c||^z.

    The arg-min uses a float32 matrix product (the hot loop); the cost of the chosen center is then
    computed exactly in float64, so it does not depend on how rows are grouped into batches.
    """
    n = len(points)
    centers32 = centers.astype(np.float32)
    minus_two_ct = np.ascontiguousarray(-2.0 * centers32.T)
    center_sq = (centers32 * centers32).sum(axis=1)
    points32 = points.astype(np.float32, copy=False)
    assignment = np.empty(n, dtype=np.int32)
    step = max(1, SCORE_BLOCK_ELEMENTS // len(centers))
    for start in range(0, n, step):
        scores = points32[start : start + step] @ minus_two_ct
        scores += center_sq
        assignment[start : start + step] = scores.argmin(axis=1)
    diff = points.astype(np.float64, copy=False) - centers[assignment]
    cost = np.einsum("ij,ij->i", diff, diff)
    return assignment, (np.sqrt(cost) if z == 1 else cost)


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
) -> DataFrame:
    """``df`` plus ``cluster_id`` and ``cost`` (null where the embedding is invalid), in one pass.

    Runs as mapInArrow: each Arrow record batch becomes one numpy matrix; the other columns pass
    through untouched. ``derived`` adds columns computed from the assignment in the same pass.
    """
    dim = centers.shape[1]
    work = df.withColumn(_VECTOR_TMP, vector_values(df, vector_col))
    extra_fields = derived.fields if derived is not None else []
    out_schema = StructType(
        list(df.schema.fields)
        + [StructField(CLUSTER_COL, IntegerType()), StructField(COST_COL, DoubleType())]
        + extra_fields
    )

    def annotate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            matrix, valid = batch_matrix(batch.column(_VECTOR_TMP), dim)
            assignment, cost = nearest_centers(matrix, centers, z)
            invalid = ~valid
            out = batch.drop_columns([_VECTOR_TMP])
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
