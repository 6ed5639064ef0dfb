"""Target-matched selection: draws that follow a target sample's cluster shares, weighted to it.

The target (a few thousand rows of what the user wants) is assigned to the lake's fitted centers;
t_j of its T rows fall in cluster j, which holds n_j lake rows. The m draws are allocated to the
clusters in proportion to t_j (``target_quotas``), and spread within each cluster either uniformly
(m_j rows without replacement by hashed keys; a cluster with m_j > n_j gives each row m_j / n_j
draws, as evenly as whole numbers allow) or by sensitivity (i.i.d. draws with q_i = (m_j / m) s_i /
S_j, S_j the cluster's sum of sensitivities).

Weights: a lake row of cluster j stands for t_j / n_j target rows, assuming the target is spread
inside each cluster as the lake is (module doc of METHOD.md, "Target-matched selection"). Uniform
draws get weight count * t_j / m_j, sensitivity draws count * (t_j / n_j) / (m q_i): then
sum(weight * f) estimates sum_j t_j * mean_j(f), the target's total of f, and sum(weight) estimates
T (exactly T for uniform draws), so sum(weight * f) / sum(weight) estimates the target's mean of f.

A target row farther from its center than the lake's own 99th percentile of that cluster's costs is
``uncovered``: the lake lacks what it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.core.sampling.sample import COUNT_COL, WEIGHT_COL, Draws, draw
from spark_sensitivity.core.sampling.score import PROBABILITY_COL, SENSITIVITY_COL, ClusterStats

# A target row is uncovered beyond this quantile of its cluster's lake costs.
COVERAGE_QUANTILE = 0.99
# The manifest names at most this many thin clusters (the most repeated first).
MAX_THIN_LISTED = 20

_SIZE = "__ss_target_size"
_QUOTA = "__ss_target_quota"
_TARGET = "__ss_target_rows"
_LIMIT = "__ss_target_limit"
_KEY = "__ss_target_key"
_RANK = "__ss_target_rank"
_EDGE = "__ss_target_edge"


def target_quotas(target_rows: np.ndarray, lake_rows: np.ndarray, m: int) -> np.ndarray:
    """m_j summing to m: one draw for every cluster the target reaches (when m allows), the rest in
    proportion to t_j by largest remainders. Clusters without lake rows get none (nothing to draw)."""
    shares = np.where(np.asarray(lake_rows) > 0, np.asarray(target_rows, dtype=np.float64), 0.0)
    if shares.sum() <= 0:
        raise ValueError("no target row falls in a cluster that holds lake rows")
    reached = shares > 0
    quotas = reached.astype(np.int64) if m >= int(reached.sum()) else np.zeros(len(shares), np.int64)
    remaining = m - int(quotas.sum())
    ideal = remaining * shares / shares.sum()
    quotas += np.floor(ideal).astype(np.int64)
    short = m - int(quotas.sum())
    if short > 0:  # largest fractional parts first, ties to the smaller cluster id
        order = np.lexsort((np.arange(len(shares)), -(ideal - np.floor(ideal))))
        quotas[order[:short]] += 1
    return quotas


@dataclass(frozen=True)
class TargetFit:
    """The target assigned to the lake's clusters: rows per cluster, uncovered rows per cluster, and
    the lake's coverage radius (its 99th percentile of cost) per cluster."""

    rows: np.ndarray
    uncovered: np.ndarray
    radius: np.ndarray

    @property
    def total(self) -> int:
        return int(self.rows.sum())


def lake_radius(assigned: DataFrame, k: int) -> np.ndarray:
    """Each cluster's COVERAGE_QUANTILE of its rows' costs (0 for an empty cluster), one aggregate."""
    found = (
        assigned.groupBy(CLUSTER_COL)
        .agg(F.percentile_approx(COST_COL, COVERAGE_QUANTILE, 10_000).alias("radius"))
        .collect()
    )
    radius = np.zeros(k)
    for row in found:
        radius[row[CLUSTER_COL]] = float(row["radius"])
    return radius


def fit_target(target_assigned: DataFrame, radius: np.ndarray) -> TargetFit:
    """Rows and uncovered rows of the (assigned, valid) target per cluster: one aggregate."""
    k = len(radius)
    limits = target_assigned.sparkSession.createDataFrame(
        [(j, float(r)) for j, r in enumerate(radius)], f"{CLUSTER_COL} int, {_EDGE} double"
    )
    per_cluster = (
        target_assigned.join(F.broadcast(limits), on=CLUSTER_COL)
        .groupBy(CLUSTER_COL)
        .agg(F.count(F.lit(1)).alias("rows"), F.count_if(F.col(COST_COL) > F.col(_EDGE)).alias("uncovered"))
        .collect()
    )
    rows, uncovered = np.zeros(k, np.int64), np.zeros(k, np.int64)
    for row in per_cluster:
        rows[row[CLUSTER_COL]], uncovered[row[CLUSTER_COL]] = row["rows"], row["uncovered"]
    return TargetFit(rows, uncovered, radius)


def _table(assigned: DataFrame, stats: ClusterStats, fit: TargetFit, quotas: np.ndarray) -> DataFrame:
    rows = [
        (int(j), int(stats.sizes[j]), int(quotas[j]), int(fit.rows[j]), _key_limit(int(quotas[j]), int(stats.sizes[j])))
        for j in np.flatnonzero(quotas > 0)
    ]  # fmt: skip
    schema = f"{CLUSTER_COL} int, {_SIZE} long, {_QUOTA} long, {_TARGET} long, {_LIMIT} double"
    return assigned.sparkSession.createDataFrame(rows, schema)


def _key_limit(quota: int, size: int) -> float:
    """A key threshold keeping about 6 standard deviations more than the rows the quota takes."""
    return min(1.0, (min(quota, size) + 6.0 * math.sqrt(min(quota, size)) + 10.0) / size)


def draw_uniform(
    assigned: DataFrame, stats: ClusterStats, fit: TargetFit, quotas: np.ndarray, seed: int, id_col: str
) -> DataFrame:
    """m_j draws in each cluster, uniform without replacement; a cluster with m_j > n_j repeats its
    rows (count m_j // n_j, one more for the m_j % n_j smallest keys). Same keys as stratified."""
    m = int(quotas.sum())
    keyed = assigned.join(F.broadcast(_table(assigned, stats, fit, quotas)), on=CLUSTER_COL, how="inner")
    keyed = keyed.withColumn(_KEY, rowrandom.jvm_uniform(id_col, seed, rowrandom.STREAM_STRATIFIED))
    order = Window.partitionBy(CLUSTER_COL).orderBy(F.col(_KEY), F.col(id_col))
    size, quota = F.col(_SIZE), F.col(_QUOTA)
    count = F.floor(quota / size) + F.when(F.col(_RANK) <= quota % size, 1).otherwise(0)
    for prefilter in (True, False):
        candidates = keyed.where(F.col(_KEY) < F.col(_LIMIT)) if prefilter else keyed
        ranked = candidates.withColumn(_RANK, F.row_number().over(order)).withColumn(
            COUNT_COL, count.cast("int")
        )
        kept = ranked.where(F.col(COUNT_COL) > 0).select(
            F.col(id_col),
            F.col(CLUSTER_COL),
            F.col(COST_COL),
            (F.col(COST_COL) / stats.total_cost + 1.0 / size if stats.total_cost > 0 else 1.0 / size).alias(
                SENSITIVITY_COL
            ),
            (quota / size).alias(PROBABILITY_COL),
            F.col(COUNT_COL),
            (F.col(COUNT_COL) * F.col(_TARGET) / quota).alias(WEIGHT_COL),
        )
        frame = kept.persist()
        drawn = frame.agg(F.sum(COUNT_COL)).first()[0] or 0
        if drawn == m:
            return frame
        frame.unpersist()
    raise RuntimeError(f"internal error: the target-matched draw could not pick {m} rows")


@dataclass(frozen=True)
class TargetScorer:
    """Sensitivity reweighted so that cluster j carries m_j / m of the mass: q_i = (m_j / m) s_i / S_j."""

    base: Any  # the model-free sensitivity (score.ClusterStats)
    factor: np.ndarray  # (m_j / m) / S_j per cluster
    total_sensitivity: float = 1.0

    def sensitivity(self, cluster_ids: np.ndarray, costs: np.ndarray) -> np.ndarray:
        return self.base.sensitivity(cluster_ids, costs) * self.factor[cluster_ids]


def draw_sensitivity(scored: DataFrame, stats: ClusterStats, fit: TargetFit, quotas: np.ndarray) -> Draws:
    """m i.i.d. draws with q_i = (m_j / m) s_i / S_j (``scored`` as :func:`sample.draw` takes it);
    weights count * (t_j / n_j) / (m q_i)."""
    m = int(quotas.sum())
    sums = (
        stats.costs / stats.total_cost + (stats.sizes > 0)
        if stats.total_cost > 0
        else (stats.sizes > 0) * 1.0
    )
    factor = np.divide(quotas / m, sums, out=np.zeros(len(quotas)), where=sums > 0)
    drawn = draw(scored, TargetScorer(stats, factor), m)
    ratio = np.divide(fit.rows, stats.sizes, out=np.zeros(len(quotas)), where=stats.sizes > 0)
    per_row = F.element_at(F.array(*[F.lit(float(r)) for r in ratio]), F.col(CLUSTER_COL) + 1)
    frame = drawn.frame.withColumn(WEIGHT_COL, F.col(WEIGHT_COL) * per_row).persist()
    frame.count()
    drawn.frame.unpersist()
    return Draws(frame, drawn.candidates, drawn.attempts, drawn.rows)


def target_facts(
    stats: ClusterStats, fit: TargetFit, quotas: np.ndarray, subset: DataFrame
) -> dict[str, Any]:
    """The manifest's record: sizes, coverage, divergence, effective sample size and thin clusters."""
    lake = stats.sizes / max(stats.sizes.sum(), 1)
    target = fit.rows / max(fit.total, 1)
    reached = target > 0
    kl = (
        float(np.sum(target[reached] * np.log(target[reached] / lake[reached])))
        if np.all(lake[reached] > 0)
        else None
    )
    sums = subset.agg(
        F.sum(WEIGHT_COL).alias("w"), F.sum(F.col(WEIGHT_COL) ** 2 / F.col(COUNT_COL)).alias("w2")
    ).first()
    ess = float(sums["w"]) ** 2 / float(sums["w2"]) if sums["w2"] else 0.0
    thin = [
        {"cluster_id": int(j), "lake_rows": int(stats.sizes[j]), "draws": int(quotas[j]),
         "draws_per_row": round(float(quotas[j] / stats.sizes[j]), 3)}
        for j in np.flatnonzero((quotas > stats.sizes) & (stats.sizes > 0))
    ]  # fmt: skip
    thin.sort(key=lambda row: -row["draws_per_row"])
    return {
        "rows": fit.total,
        "uncovered": int(fit.uncovered.sum()),
        "uncovered_share": float(fit.uncovered.sum() / max(fit.total, 1)),
        "rows_in_empty_clusters": int(fit.rows[stats.sizes == 0].sum()),
        "clusters_reached": int(reached.sum()),
        "clusters_without_draws": int(np.sum(reached & (quotas == 0))),
        "total_variation": float(0.5 * np.abs(target - lake).sum()),
        "kl_divergence": kl,
        "effective_sample_size": ess,
        "sum_of_weights_estimates": "the target's row count",
        "thin_clusters": len(thin),
        "thin_cluster_examples": thin[:MAX_THIN_LISTED],
        "cluster_rows": [int(v) for v in fit.rows],
        "cluster_uncovered": [int(v) for v in fit.uncovered],
    }
