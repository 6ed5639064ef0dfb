"""Candidate changes to the library, measured against the shipped code by swapping them in.

``numpy-fit`` replaces ``cluster.fit_centers`` (MLlib k-means) with k-means on the driver in numpy:
the fit sample is about ``pointsPerCenter * k`` rows whatever n is, so collecting it is O(k d), not
O(n), and a float32 matrix product per Lloyd iteration runs at the machine's GEMM rate instead of
MLlib's double-precision JVM loops and per-iteration Spark jobs. It keeps MLlib's meaning of every
setting: k-means|| (initSteps rounds, oversampling 2k, then weighted k-means++ on the candidates,
greedy with 2 + ln k trials per center as in scikit-learn, where MLlib tries one) or random init, at
most maxIter Lloyd iterations, stop when no center moves more than tol, empty clusters keep their
center. The sample is sorted by row hash before anything else, so the result does not depend on
how the input was partitioned.

``persist-subset`` persists the frame ``SensitivitySamplerModel.sample`` returns: the select job
counts the subset and then writes it, and without it the join with the input (a scan of every
row) runs twice.

``lean-assign`` replaces ``cluster.assign`` in the select job by :func:`lean_assign`, which moves
the embedding from the JVM to Python once and never back.

Variants combine with '+', e.g. ``numpy-fit+persist-subset+lean-assign``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

from spark_sensitivity import cluster
from spark_sensitivity.estimator import SensitivitySamplerModel
from spark_sensitivity.vectors import batch_matrix, vector_values

VARIANTS = ("shipped", "numpy-fit", "persist-subset", "lean-assign")
# Rows per block of the (rows x k) distance matrix: 64 MiB of float32 at k = 1000.
_BLOCK_ELEMENTS = 1 << 24


def nearest(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest center and the squared distance to it, by blocked float32 GEMM."""
    centers = centers.astype(np.float32, copy=False)
    minus_two_ct = np.ascontiguousarray(-2.0 * centers.T)
    center_sq = np.einsum("ij,ij->i", centers, centers)
    index = np.empty(len(points), dtype=np.int64)
    distance = np.empty(len(points), dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // len(centers))
    for start in range(0, len(points), step):
        block = points[start : start + step]
        scores = block @ minus_two_ct
        scores += center_sq
        best = scores.argmin(axis=1)
        index[start : start + step] = best
        point_sq = np.einsum("ij,ij->i", block, block)
        distance[start : start + step] = np.maximum(scores[np.arange(len(block)), best] + point_sq, 0.0)
    return index, distance


def _weighted_kmeans_pp(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator, trials: int
) -> np.ndarray:
    """Greedy k-means++ seeding of weighted points: each step draws ``trials`` candidates in
    proportion to weight times cost and keeps the one that lowers the total cost most (MLlib runs
    the plain version, ``trials`` = 1, on its k-means|| candidates)."""
    norms = np.einsum("ij,ij->i", points, points)
    chosen = [int(rng.choice(len(points), p=weights / weights.sum()))]
    best = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        mass = weights * best
        total = mass.sum()
        if total <= 0:
            picks = rng.integers(len(points), size=1)
        else:
            picks = rng.choice(len(points), size=trials, p=mass / total)
        distances = norms[picks, None] - 2.0 * (points[picks] @ points.T) + norms[None, :]
        updated = np.minimum(best[None, :], np.maximum(distances, 0.0))
        winner = int(np.argmin(updated @ weights))
        chosen.append(int(picks[winner]))
        best = updated[winner]
    return points[chosen]


def _init_parallel(
    x: np.ndarray, k: int, steps: int, rng: np.random.Generator, trials: int = 1
) -> np.ndarray:
    """k-means||: ``steps`` rounds each adding about 2k points drawn in proportion to their cost,
    then k-means++ and Lloyd on the candidates weighted by the points nearest to them."""
    candidates = [x[rng.integers(len(x))][None, :]]
    cost = ((x - candidates[0]) ** 2).sum(axis=1, dtype=np.float64)
    for _ in range(steps):
        total = cost.sum()
        if total <= 0:
            break
        picked = x[rng.random(len(x)) < 2.0 * k * cost / total]
        if len(picked):
            candidates.append(picked)
            cost = np.minimum(cost, nearest(x, picked)[1])
    pool = np.unique(np.vstack(candidates), axis=0)
    if len(pool) <= k:
        extra = x[rng.choice(len(x), size=k - len(pool), replace=False)]
        return np.vstack([pool, extra])
    weights = np.bincount(nearest(x, pool)[0], minlength=len(pool)).astype(np.float64)
    seeds = _weighted_kmeans_pp(pool.astype(np.float64), weights, k, rng, trials)
    # As MLlib: up to 30 weighted Lloyd iterations on the candidates before the real ones.
    return lloyd(pool, seeds, 30, 0.0, weights)[0].astype(np.float32)


def lloyd(
    x: np.ndarray, centers: np.ndarray, max_iter: int, tol: float, weights: np.ndarray | None = None
) -> tuple[np.ndarray, int, float]:
    """(Weighted) Lloyd iterations: the centers (float64), the iterations run and the final cost."""
    centers = centers.astype(np.float64)
    k = len(centers)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        index, _ = nearest(x, centers)
        order = np.argsort(index, kind="stable")
        mass = np.bincount(index, weights=weights, minlength=k)
        present = np.flatnonzero(np.bincount(index, minlength=k))
        starts = np.searchsorted(index[order], present)
        rows = x[order] if weights is None else x[order] * weights[order, None]
        sums = np.add.reduceat(rows, starts, axis=0, dtype=np.float64)
        moved = centers.copy()
        moved[present] = sums / mass[present, None]
        shift = ((moved - centers) ** 2).sum(axis=1).max()
        centers = moved
        if shift <= tol * tol:
            break
    distance = nearest(x, centers)[1]
    return centers, iterations, float(distance.sum() if weights is None else distance @ weights)


def numpy_fit_centers(sample: DataFrame, settings: cluster.KMeansSettings) -> cluster.KMeansFit:
    """Drop-in for ``cluster.fit_centers``: collect the O(k d) fit sample, run k-means in numpy."""
    table = sample.select(cluster._HASH_TMP, F.col(cluster._VECTOR_TMP).cast("array<float>")).toArrow()
    if table.num_rows == 0:
        raise ValueError("the k-means fit sample has no valid embedding")
    vectors = table.column(1).combine_chunks()
    lengths = vectors.value_lengths().to_numpy(zero_copy_only=False)
    values, counts = np.unique(lengths, return_counts=True)
    dim = int(values[np.argmax(counts)])  # the most common length; ties go to the shortest
    matrix, valid = batch_matrix(vectors, dim)
    hashes = table.column(0).to_numpy()
    order = np.flatnonzero(valid)[np.argsort(hashes[valid], kind="stable")]
    x = np.ascontiguousarray(matrix[order], dtype=np.float32)
    if len(x) < settings.k:
        raise ValueError(
            f"k={settings.k} is larger than the {len(x)} valid rows in the k-means fit sample; "
            "lower --k or raise --fit-fraction"
        )
    distinct = np.unique(x, axis=0)
    if len(distinct) < settings.k:
        raise ValueError(
            f"k={settings.k} is larger than the {len(distinct)} distinct points in the k-means fit "
            "sample; lower --k"
        )
    rng = np.random.default_rng(settings.seed)
    if settings.init_mode == "random":
        start = distinct[rng.choice(len(distinct), size=settings.k, replace=False)]
    else:
        # Greedy seeding with scikit-learn's 2 + ln k trials per center.
        trials = 2 + int(np.log(settings.k))
        start = _init_parallel(x, settings.k, settings.init_steps, rng, trials)
    centers, iterations, cost = lloyd(x, start, settings.max_iter, settings.tol)
    return cluster.KMeansFit(centers, len(x), iterations, cost)


def lean_assign(
    df: DataFrame,
    vector_col: str,
    centers: np.ndarray,
    z: int,
    derived: cluster.DerivedColumns | None = None,
) -> DataFrame:
    """``cluster.assign`` without the embedding's extra trips, for callers that drop it afterwards.

    The shipped version adds the embedding again as a second column (so Arrow carries it to Python
    twice) and passes the original back to the JVM, where the select job drops it. Here an
    array column is read in place (a Vector column is still converted), and the output has every
    input column except the embedding, plus cluster_id, cost and ``derived``'s columns.
    """
    dim = centers.shape[1]
    if isinstance(df.schema[vector_col].dataType, ArrayType):
        work, source = df, vector_col
    else:
        work, source = df.withColumn(cluster._VECTOR_TMP, vector_values(df, vector_col)), cluster._VECTOR_TMP
    extra_fields = derived.fields if derived is not None else []
    kept = [field for field in df.schema.fields if field.name != vector_col]
    out_schema = StructType(
        kept
        + [StructField(cluster.CLUSTER_COL, IntegerType()), StructField(cluster.COST_COL, DoubleType())]
        + extra_fields
    )
    dropped = sorted({source, vector_col})

    def annotate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            matrix, valid = batch_matrix(batch.column(source), dim)
            assignment, cost = cluster.nearest_centers(matrix, centers, z)
            invalid = ~valid
            out = batch.drop_columns(dropped)
            out = out.append_column(
                cluster.CLUSTER_COL, pa.array(assignment, type=pa.int32(), mask=invalid)
            ).append_column(cluster.COST_COL, pa.array(cost, type=pa.float64(), mask=invalid))
            if derived is not None:
                values = derived.compute(assignment[valid], cost[valid])
                for field, column in zip(extra_fields, values, strict=True):
                    full = np.zeros(len(valid), dtype=np.float64)
                    full[valid] = column
                    out = out.append_column(field.name, pa.array(full, mask=invalid))
            yield out

    return work.mapInArrow(annotate, out_schema)


@contextlib.contextmanager
def applied(variant: str) -> Iterator[None]:
    """Runs the block with ``variant`` (names joined by '+') swapped in, and restores the library."""
    names = [] if variant == "shipped" else variant.split("+")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; expected names from {', '.join(VARIANTS)}")
    fit_centers, sample, assign = cluster.fit_centers, SensitivitySamplerModel.sample, cluster.assign
    persisted: list[DataFrame] = []

    def persisted_sample(self: SensitivitySamplerModel, *args: Any, **kwargs: Any) -> DataFrame:
        persisted.append(sample(self, *args, **kwargs).persist())
        return persisted[-1]

    if "numpy-fit" in names:
        cluster.fit_centers = numpy_fit_centers
    if "persist-subset" in names:
        SensitivitySamplerModel.sample = persisted_sample
    if "lean-assign" in names:
        # Safe in the select job only: every assign call there drops the embedding right after.
        cluster.assign = lean_assign
    try:
        yield
    finally:
        cluster.fit_centers, SensitivitySamplerModel.sample, cluster.assign = fit_centers, sample, assign
        for frame in persisted:
            frame.unpersist()
