"""Baseline selectors on the same Spark tables, each returning exactly its budget of rows.

- uniform: the m rows with the smallest hashed key under the seed (a uniform m-subset), weight n/m.
- stratified: a uniform subset of each cluster, m_j rows from cluster j (proportional, or any
  allocation), weight n_j / m_j (the classical stratified estimator, unbiased).
- k-center greedy: farthest-first traversal on a uniform pool of rows brought to the driver.
- margin and entropy: the m rows the model is least sure of, from per-row class probabilities.
- leverage scores for least squares: exact l_i = a_i^T (A^T A)^+ a_i (module ``leverage``), the Gram
  matrix reduced distributed; i.i.d. sampling proportional to any score column through ``sample.draw``.

Every random choice is a hash of (id, seed), so results do not depend on partitioning. Selectors
without sampling weights (k-center, margin, entropy) give every row the weight n/m, so weighted sums
still scale to the table (without any unbiasedness guarantee).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, FloatType

from spark_sensitivity.core import rowrandom, sample
from spark_sensitivity.core.batches import batch_matrix
from spark_sensitivity.core.cluster import CLUSTER_COL, COST_COL

# Leverage scores are a baseline too; they stay importable from here.
from spark_sensitivity.core.leverage import LEVERAGE_COL as LEVERAGE_COL
from spark_sensitivity.core.leverage import leverage_scores as leverage_scores
from spark_sensitivity.core.rowrandom import row_hash
from spark_sensitivity.core.score import PROBABILITY_COL
from spark_sensitivity.core.vectors import vector_values

SEED_COL = "seed"
WEIGHT_COL = sample.WEIGHT_COL
MARGIN_COL = "margin"
ENTROPY_COL = "entropy"
_KEY = "__ss_key"
_STRATUM = "__ss_stratum"
_QUOTA = "__ss_quota"
_LIMIT = "__ss_limit"
_VECTOR_TMP = "__ss_vector"


def _seed_key(id_col: str, seed: Column) -> Column:
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
        .withColumn(_KEY, _seed_key(id_col, F.col(SEED_COL)))
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


def _driver_matrix(frame: DataFrame, id_col: str, vector_col: str) -> tuple[np.ndarray, np.ndarray]:
    """The ids and embeddings of a (small) frame as numpy arrays on the driver."""
    table = frame.select(
        F.col(id_col), vector_values(frame, vector_col).cast("array<float>").alias(_VECTOR_TMP)
    ).toArrow()
    column = table.column(_VECTOR_TMP)
    lengths = column.combine_chunks().value_lengths().to_numpy(zero_copy_only=False)
    dim = int(np.bincount(lengths[lengths >= 0]).argmax()) if len(lengths) else 0
    matrix, valid = batch_matrix(column, dim)
    ids = table.column(id_col).to_numpy()
    if not valid.all():
        raise ValueError(
            f"embedding column {vector_col!r} has {int((~valid).sum())} invalid rows "
            f"(e.g. ids {', '.join(map(str, ids[~valid][:3]))})"
        )
    return ids, matrix


def farthest_first(points: np.ndarray, m: int, start: int, labelled: np.ndarray | None = None) -> np.ndarray:
    """Indices of m points chosen greedily, each the farthest from those chosen (and ``labelled``).

    A 2-approximation of k-center. Starts from ``start`` unless ``labelled`` points seed the
    distances; O(m * rows * dim) in float32.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    sq = np.einsum("ij,ij->i", points, points)

    def sq_dist(center: np.ndarray) -> np.ndarray:
        return np.maximum(sq - 2.0 * (points @ center) + center @ center, 0.0)

    nearest = np.full(len(points), np.inf, dtype=np.float32)
    for center in labelled if labelled is not None else ():
        nearest = np.minimum(nearest, sq_dist(np.asarray(center, dtype=np.float32)))
    chosen = np.empty(m, dtype=np.int64)
    for step in range(m):
        pick = start if step == 0 and labelled is None else int(nearest.argmax())
        chosen[step] = pick
        nearest = np.minimum(nearest, sq_dist(points[pick]))
        nearest[pick] = -1.0  # never again
    return chosen


def k_center_greedy(
    frame: DataFrame,
    id_col: str,
    vector_col: str,
    m: int,
    seed: int,
    pool_size: int = 20_000,
    labelled: DataFrame | None = None,
) -> DataFrame:
    """Exactly m rows by greedy k-center on a uniform pool of ``pool_size`` rows (all rows if fewer).

    ``labelled`` (rows already chosen, with the embedding column) seeds the distances, as in
    core-set active learning; its rows are not picked again. Returns (id, weight = n/m).
    """
    n = frame.count()
    if not 1 <= m <= min(n, pool_size):
        raise ValueError(f"k-center budget m={m} must be between 1 and the pool of {min(n, pool_size)} rows")
    pool = frame if pool_size >= n else uniform(frame, id_col, pool_size, seed)
    if labelled is not None:
        pool = pool.join(labelled.select(id_col), on=id_col, how="left_anti")
    ids, points = _driver_matrix(pool, id_col, vector_col)
    if m > len(ids):
        raise ValueError(f"k-center budget m={m} is larger than the {len(ids)} unlabelled rows of the pool")
    seeds_first = np.argsort(np.asarray(_pool_keys(pool, id_col, seed, ids)))[0]
    known = _driver_matrix(labelled, id_col, vector_col)[1] if labelled is not None else None
    chosen = ids[farthest_first(points, m, int(seeds_first), known)]
    schema = frame.select(id_col).schema
    picked = frame.sparkSession.createDataFrame([(v.item(),) for v in chosen], schema)
    return picked.withColumn(WEIGHT_COL, F.lit(n / m))


def _pool_keys(pool: DataFrame, id_col: str, seed: int, ids: np.ndarray) -> list[float]:
    """The hashed keys of the pool's rows, in the order of ``ids`` (so the first pick is random)."""
    rows = pool.select(F.col(id_col), _seed_key(id_col, F.lit(int(seed))).alias(_KEY)).collect()
    keys = {r[id_col]: r[_KEY] for r in rows}
    return [keys[i.item()] for i in ids]


def _probabilities(frame: DataFrame, prob_col: str) -> Column:
    if prob_col not in frame.columns:
        raise ValueError(f"probability column {prob_col!r} is not in the input (columns: {frame.columns})")
    dtype = frame.schema[prob_col].dataType
    if not (isinstance(dtype, ArrayType) and isinstance(dtype.elementType, (FloatType, DoubleType))):
        raise ValueError(
            f"probability column {prob_col!r} has type {dtype.simpleString()}; expected array<double>"
        )
    return F.col(prob_col).cast("array<double>")


def _least_sure(
    frame: DataFrame, id_col: str, prob_col: str, m: int, score: Column, name: str, ascending: bool,
    exclude: DataFrame | None,
) -> DataFrame:  # fmt: skip
    n = frame.count()
    bad = frame.where(F.col(prob_col).isNull() | (F.size(prob_col) < 2)).select(id_col).limit(3).collect()
    if bad:
        raise ValueError(
            f"probability column {prob_col!r} is null or has fewer than 2 classes for some rows "
            f"(e.g. ids {', '.join(str(r[0]) for r in bad)})"
        )
    pool = frame if exclude is None else frame.join(exclude.select(id_col), on=id_col, how="left_anti")
    scored = pool.select(F.col(id_col), score.alias(name))
    order = F.col(name).asc() if ascending else F.col(name).desc()
    picked = scored.orderBy(order, F.col(id_col)).limit(m).persist()
    if picked.count() < m:
        picked.unpersist()
        raise ValueError(f"budget m={m} is larger than the rows available to pick from")
    return picked.withColumn(WEIGHT_COL, F.lit(n / m))


def margin(
    frame: DataFrame, id_col: str, prob_col: str, m: int, exclude: DataFrame | None = None
) -> DataFrame:
    """The m rows with the smallest gap between the two most likely classes: (id, margin, weight)."""
    probs = F.array_sort(_probabilities(frame, prob_col))
    gap = F.element_at(probs, -1) - F.element_at(probs, -2)
    return _least_sure(frame, id_col, prob_col, m, gap, MARGIN_COL, True, exclude)


def entropy(
    frame: DataFrame, id_col: str, prob_col: str, m: int, exclude: DataFrame | None = None
) -> DataFrame:
    """The m rows whose predicted class distribution has the largest entropy: (id, entropy, weight)."""
    terms = F.transform(
        _probabilities(frame, prob_col), lambda p: F.when(p > 0, -p * F.log(p)).otherwise(F.lit(0.0))
    )
    value = F.aggregate(terms, F.lit(0.0), lambda acc, x: acc + x)
    return _least_sure(frame, id_col, prob_col, m, value, ENTROPY_COL, False, exclude)


@dataclass(frozen=True)
class ScoreProportional:
    """Sensitivity = a per-row score (carried in the cost column) plus a uniform floor."""

    total_sensitivity: float
    floor: float = 0.0

    def sensitivity(self, cluster_ids: np.ndarray, costs: np.ndarray) -> np.ndarray:
        return costs + self.floor


def score_scorer(scores: DataFrame, score_col: str, uniform_share: float = 0.0) -> ScoreProportional:
    """The scorer for i.i.d. sampling proportional to ``score_col`` (one pass for its total)."""
    if not 0.0 <= uniform_share < 1.0:
        raise ValueError(f"uniform share must be in [0, 1), got {uniform_share}")
    totals = scores.agg(F.sum(score_col), F.count(F.lit(1)), F.min(score_col)).first()
    total, n, lowest = float(totals[0] or 0.0), int(totals[1]), totals[2]
    if lowest is None or lowest < 0 or not math.isfinite(total) or total <= 0:
        raise ValueError(f"score column {score_col!r} must be finite, >= 0 and not all zero")
    floor = uniform_share / (1.0 - uniform_share) * total / n
    return ScoreProportional(total + floor * n, floor)


def scored_for_draws(scores: DataFrame, id_col: str, score_col: str) -> DataFrame:
    """The score table in the shape ``sample.draw`` reads (one pseudo-cluster, the score as cost)."""
    return scores.select(
        F.col(id_col), F.lit(0).alias(CLUSTER_COL), F.col(score_col).cast("double").alias(COST_COL)
    )


def proportional_sample(
    scores: DataFrame, id_col: str, score_col: str, m: int, seed: int, uniform_share: float = 0.0
) -> DataFrame:
    """Exactly m i.i.d. draws with q_i proportional to the score (leverage-score sampling when the
    score is the leverage): (id, score, probability, count, weight = count / (m q_i))."""
    scorer = score_scorer(scores, score_col, uniform_share)
    scored = scored_for_draws(scores, id_col, score_col).withColumn(sample.HASH_COL, row_hash(id_col, seed))
    frame = sample.draw(scored, scorer, m).frame
    return frame.select(
        F.col(id_col),
        F.col(COST_COL).alias(score_col),
        F.col(PROBABILITY_COL),
        F.col(sample.COUNT_COL),
        F.col(WEIGHT_COL),
    )
