"""Selectors the experiments compare with, on the same Spark tables, each returning exactly its
budget of rows; the production path does not use them.

- k-center greedy: farthest-first traversal on a uniform pool of rows brought to the driver.
- margin and entropy: the m rows the model is least sure of, from per-row class probabilities.
- i.i.d. sampling proportional to any score column (leverage scores, module ``leverage``) through
  ``sample.draw``.

Every random choice is a hash of (id, seed), so results do not depend on partitioning. Selectors
without sampling weights (k-center, margin, entropy) give every row the weight n/m, so weighted sums
still scale to the table (without any unbiasedness guarantee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, FloatType

from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sampling import sample
from spark_sensitivity.core.sampling.rowrandom import row_hash
from spark_sensitivity.core.sampling.score import PROBABILITY_COL
from spark_sensitivity.core.sampling.uniform import WEIGHT_COL, seed_key, uniform
from spark_sensitivity.core.vectors import vector_values

MARGIN_COL = "margin"
ENTROPY_COL = "entropy"
_KEY = "__ss_key"
_VECTOR_TMP = "__ss_vector"


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
    rows = pool.select(F.col(id_col), seed_key(id_col, F.lit(int(seed))).alias(_KEY)).collect()
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
