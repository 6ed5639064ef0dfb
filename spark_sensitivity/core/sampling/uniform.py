"""Uniform and stratified reference subsets, several seeds in one pass, each exactly its budget.

- uniform: the m rows with the smallest hashed key under the seed (a uniform m-subset), weight n/m.
- stratified: a uniform subset of each cluster, m_j rows from cluster j (proportional, or any
  allocation, :func:`allocate`), weight n_j / m_j (the classical stratified estimator, unbiased).

``evaluate`` compares the strategies with them, the stratified strategy and the forecast share
:func:`allocate`. Every random choice is a hash of (id, seed), so results do not depend on
partitioning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL
from spark_sensitivity.core.sampling import rowrandom, sample

SEED_COL = "seed"
WEIGHT_COL = sample.WEIGHT_COL
_KEY = "__ss_key"
_STRATUM = "__ss_stratum"
_QUOTA = "__ss_quota"
_LIMIT = "__ss_limit"


def seed_key(id_col: str, seed: Column) -> Column:
    """A uniform in [0, 1) per (row, seed), as ``rowrandom.jvm_uniform`` with an int seed column."""
    hashed = F.xxhash64(F.col(id_col), seed, F.lit(rowrandom.STREAM_BASELINE))
    return hashed.bitwiseAND(F.lit((1 << 53) - 1)).cast("double") / float(1 << 53)


def seeds_frame(frame: DataFrame, seeds: Sequence[int]) -> DataFrame:
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    if any(not -(2**31) <= int(s) < 2**31 for s in seeds):
        raise ValueError(f"seeds must fit in 32 bits, got {list(seeds)[:3]}")
    return frame.sparkSession.createDataFrame([(int(s),) for s in seeds], f"{SEED_COL} int")


def allocate(sizes: np.ndarray, m: int, scores: np.ndarray | None = None) -> np.ndarray:
    """Per-stratum sample sizes m_j summing to m: one per non-empty stratum, the rest in proportion
    to n_j * score_j (n_j alone when ``scores`` is None), never more than n_j.

    Neyman allocation is ``scores`` = the strata's standard deviations (or a guess of them).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    nonempty = sizes > 0
    if m < int(nonempty.sum()):
        raise ValueError(
            f"budget m={m} is below the {int(nonempty.sum())} non-empty strata; raise m or lower k"
        )
    if m > int(sizes.sum()):
        raise ValueError(f"budget m={m} is larger than the {int(sizes.sum())} rows")
    target = sizes * (np.ones(len(sizes)) if scores is None else np.asarray(scores, dtype=np.float64))
    if np.any(~np.isfinite(target)) or np.any(target < 0):
        raise ValueError("allocation scores must be finite and >= 0")
    quotas = nonempty.astype(np.int64)
    while (remaining := m - int(quotas.sum())) > 0:
        room = sizes - quotas
        share = np.where(room > 0, target, 0.0)
        if share.sum() <= 0:
            share = (room > 0).astype(np.float64)
        ideal = remaining * share / share.sum()
        add = np.minimum(np.floor(ideal).astype(np.int64), room)
        if add.sum() == 0:  # hand the rest out one by one, largest fractional part first
            order = np.lexsort((np.arange(len(sizes)), -(ideal - np.floor(ideal))))
            add = np.zeros_like(quotas)
            add[[j for j in order if room[j] > 0][:remaining]] = 1
        quotas += add
    return quotas


def smallest_keys(
    frame: DataFrame,
    id_col: str,
    seeds: Sequence[int],
    quotas: np.ndarray,
    sizes: np.ndarray,
    stratum_col: str | None = None,
) -> DataFrame:
    """For every seed, the ``quotas[j]`` rows of stratum j with the smallest hashed keys.

    Returns (seed, id, [stratum_col], weight = n_j / m_j). Only rows under a per-stratum key
    threshold (about 6 standard deviations above the quota) are ranked; if a stratum falls short, the
    ranking is redone on all rows, so the result is exact either way.
    """
    strata = np.flatnonzero(quotas > 0)
    limits = [
        (int(j), int(quotas[j]), float(min(1.0, (quotas[j] + 6 * math.sqrt(quotas[j]) + 10) / sizes[j])))
        for j in strata
    ]
    spark = frame.sparkSession
    table = spark.createDataFrame(
        [(j, q, t, float(sizes[j]) / q) for j, q, t in limits],
        f"{_STRATUM} int, {_QUOTA} int, {_LIMIT} double, {WEIGHT_COL} double",
    )
    stratum = F.col(stratum_col).cast("int") if stratum_col else F.lit(0)
    keyed = (
        frame.select(F.col(id_col), *([F.col(stratum_col)] if stratum_col else []))
        .withColumn(_STRATUM, stratum)
        .crossJoin(F.broadcast(seeds_frame(frame, seeds)))
        .withColumn(_KEY, seed_key(id_col, F.col(SEED_COL)))
        .join(F.broadcast(table), on=_STRATUM, how="inner")
    )
    expected = len(seeds) * int(quotas.sum())
    rank = F.row_number().over(Window.partitionBy(SEED_COL, _STRATUM).orderBy(_KEY, id_col))
    columns = [SEED_COL, id_col, *([stratum_col] if stratum_col else []), WEIGHT_COL]
    for prefilter in (True, False):
        candidates = keyed.where(F.col(_KEY) < F.col(_LIMIT)) if prefilter else keyed
        picked = candidates.withColumn("__rank", rank).where(F.col("__rank") <= F.col(_QUOTA))
        picked = picked.select(*columns).persist()
        if picked.count() == expected:
            return picked
        picked.unpersist()
    raise RuntimeError(f"internal error: could not pick {expected} rows")


def uniform_many(
    frame: DataFrame, id_col: str, m: int, seeds: Sequence[int], n: int | None = None
) -> DataFrame:
    """For every seed, exactly m distinct rows uniformly at random: (seed, id, weight = n/m)."""
    n = frame.count() if n is None else n
    if not 1 <= m <= n:
        raise ValueError(f"uniform budget m={m} must be between 1 and the {n} rows")
    return smallest_keys(frame, id_col, seeds, np.array([m]), np.array([n]))


def uniform(frame: DataFrame, id_col: str, m: int, seed: int) -> DataFrame:
    """Exactly m distinct rows uniformly at random: the input's columns plus weight = n/m."""
    picked = uniform_many(frame, id_col, m, [seed]).drop(SEED_COL)
    return frame.join(picked, on=id_col, how="inner")


def stratified_many(
    assigned: DataFrame,
    id_col: str,
    sizes: np.ndarray,
    m: int,
    seeds: Sequence[int],
    scores: np.ndarray | None = None,
) -> DataFrame:
    """For every seed, m rows stratified by ``cluster_id`` (see :func:`allocate`):
    (seed, id, cluster_id, weight = n_j / m_j)."""
    quotas = allocate(sizes, m, scores)
    return smallest_keys(assigned, id_col, seeds, quotas, np.asarray(sizes), stratum_col=CLUSTER_COL)


def stratified(
    assigned: DataFrame, id_col: str, sizes: np.ndarray, m: int, seed: int, scores: np.ndarray | None = None
) -> DataFrame:
    """Exactly m rows, a uniform subset of each cluster: (id, cluster_id, weight = n_j / m_j)."""
    return stratified_many(assigned, id_col, sizes, m, [seed], scores).drop(SEED_COL)
