"""Selection strategies: which rows of each k-means cluster form the subset, and their weights.

Every strategy works from the same k-means pass (each row's ``cluster_id`` and ``cost`` = v_i, and
the per-cluster sizes n_j) and returns the same columns as the sensitivity draws (id, cluster_id,
cost, sensitivity, probability, count, weight), with weights whose sum estimates n:

- ``sensitivity``: m i.i.d. draws with probability s_i / sum(s) (``sample.draw``); unbiased.
- ``representatives``: the row nearest each center (ties to the smallest id); weight n_j. One row
  per non-empty cluster, so it needs k = m.
- ``stratified``: m_j rows of cluster j, a uniform subset without replacement (the m_j smallest
  hashed keys of the cluster); weight n_j / m_j. Unbiased, sum of weights exactly n.
- ``prototypes`` (Sorscher et al., NeurIPS 2022): m_j rows of cluster j by distance to the center,
  the nearest (easiest) while m / n < ``PROTOTYPES_HARD_FROM``, else the farthest (hardest);
  weight n_j / m_j, so weighted sums still scale to the table (not unbiased: the choice is not
  random).
- ``auto``: one of the above and k, chosen from the table: k is planned from the budget before the
  fit (:func:`resolve`), the strategy decided once the clusters are known (:func:`choose_auto`).

The allocation m_j of ``stratified`` and ``prototypes`` gives one row to every non-empty cluster and
the rest in proportion to n_j, rounded by largest remainders, so it sums to exactly m. In these
three strategies every row is kept at most once (count 1) and ``probability`` is the row's
inclusion probability m_j / n_j (1 / n_j for a representative), so weight = 1 / probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.core.sampling.sample import COUNT_COL, WEIGHT_COL
from spark_sensitivity.core.sampling.score import PROBABILITY_COL, SENSITIVITY_COL, ClusterStats
from spark_sensitivity.core.sampling.uniform import allocate

# The choices are declared with the settings (SensitivitySampler's ``strategy`` Param accepts
# STRATEGIES, the select job also ``loss-aware``); they stay importable from here.
from spark_sensitivity.settings import (
    AUTO,
    AUTO_REPRESENTATIVES_MAX_M,
    DEFAULT_K,
    PROTOTYPES,
    REPRESENTATIVES,
    SELECT_STRATEGIES,
    STRATEGIES,
    STRATIFIED,
    SettingError,
)
from spark_sensitivity.settings import LOSS_AWARE as LOSS_AWARE
from spark_sensitivity.settings import SENSITIVITY as SENSITIVITY
from spark_sensitivity.settings.choices import (
    AUTO_MIN_EXPLAINED_SHARE,
    AUTO_MIN_ROWS_PER_REPRESENTATIVE,
)

# Prototypes keep the hardest rows from this kept fraction m / n on, the easiest below it. Sorscher
# et al. find that keeping easy examples wins when data are scarce and hard ones when they are
# plentiful; half of the table is the project's choice of the crossover (see docs/METHOD.md).
PROTOTYPES_HARD_FROM = 0.5

_KEY = "__ss_strategy_key"
_RANK = "__ss_strategy_rank"
_SIZE = "__ss_size"
_QUOTA = "__ss_quota"
_LIMIT = "__ss_limit"


def check_strategy(name: str, allowed: tuple[str, ...] = STRATEGIES) -> None:
    if name not in allowed:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(allowed)}")


def resolve(strategy: str, k: int | None, m: int) -> tuple[str, int]:
    """The concrete strategy and k of a run, given the requested strategy, k (None: not given) and m.

    ``auto`` plans representatives with k = m for m <= AUTO_REPRESENTATIVES_MAX_M, else stratified
    with the given k (or DEFAULT_K); with k given and different from m it never plans representatives.
    The plan fixes k; once the clusters are known :func:`choose_auto` may draw stratified (or
    sensitivity) instead. ``representatives`` takes k = m when k is not given and refuses any other k.
    """
    check_strategy(strategy, SELECT_STRATEGIES)
    if strategy == AUTO:
        if (k is None or k == m) and m <= AUTO_REPRESENTATIVES_MAX_M:
            return REPRESENTATIVES, m
        return STRATIFIED, DEFAULT_K if k is None else k
    if strategy == REPRESENTATIVES:
        if k is not None and k != m:
            raise ValueError(
                f"strategy representatives keeps one row per cluster: k must equal the sample size "
                f"(got k={k}, sample size {m}); leave k out to use k = {m}"
            )
        return REPRESENTATIVES, m
    return strategy, DEFAULT_K if k is None else k


def resolve_budgets(strategy: str, k: int | None, budgets: tuple[int, ...]) -> tuple[str, int]:
    """The strategy and k of ONE fit that serves every sample size in ``budgets`` (ascending): the
    plan :func:`resolve` makes for the smallest. ``auto`` then plans representatives (k = the smallest
    m) and draws stratified for the larger sizes; ``representatives`` alone cannot share a fit."""
    if len(budgets) > 1 and strategy == REPRESENTATIVES:
        raise SettingError(
            f"strategy representatives keeps one row per cluster (k = m), so the sample sizes "
            f"{', '.join(map(str, budgets))} would need a fit each: give one sample size per run, or use "
            "strategy auto (representatives for the smallest size, stratified for the others)",
            "strategy",
        )
    return resolve(strategy, k, min(budgets))


def for_model(strategy: str, m: int, k: int) -> str:
    """The concrete strategy a fitted model with k clusters uses to pick m rows (``auto`` resolved)."""
    check_strategy(strategy)
    if strategy == AUTO:
        return REPRESENTATIVES if k == m else STRATIFIED
    if strategy == REPRESENTATIVES and k != m:
        raise ValueError(
            f"strategy representatives keeps one row per cluster: the sample size must equal k={k}, got {m}"
        )
    return strategy


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` chose for a run: the strategy, k, and the reason in one sentence."""

    strategy: str
    k: int
    reason: str


def explained_share(centers: np.ndarray, sizes: np.ndarray, within: float) -> float:
    """B / (B + W): the share of the rows' spread around their mean that the clusters explain, with
    B = sum_j n_j ||c_j - mean||^2 (mean = the size-weighted mean of the centers) and W = ``within``,
    the rows' sum of squared distances to their centers. 1 for tight, separated clusters; near 0 for
    isotropic noise in many dimensions."""
    centers, sizes = np.asarray(centers, dtype=np.float64), np.asarray(sizes, dtype=np.float64)
    mean = (sizes[:, None] * centers).sum(axis=0) / max(sizes.sum(), 1.0)
    between = float((sizes * ((centers - mean) ** 2).sum(axis=1)).sum())
    total = between + within
    return between / total if total > 0 else 0.0


def plan_auto(k_given: int | None, m: int, rows: int | None = None) -> tuple[str, int]:
    """auto's plan before the fit: :func:`resolve`'s, except that a table known to hold fewer than
    AUTO_MIN_ROWS_PER_REPRESENTATIVE * m ``rows`` gets the stratified plan (k given, or DEFAULT_K):
    k-means then never fits k = m clusters the rule would not use, nor more clusters than rows."""
    planned, k = resolve(AUTO, k_given, m)
    if planned == REPRESENTATIVES and rows is not None and rows < AUTO_MIN_ROWS_PER_REPRESENTATIVE * m:
        return STRATIFIED, DEFAULT_K if k_given is None else k_given
    return planned, k


def represents(k_given: int | None, k: int, m: int) -> bool:
    """Whether a fit with k clusters was auto's representatives plan (k = m within the budget)."""
    return k == m and m <= AUTO_REPRESENTATIVES_MAX_M and k_given in (None, m)


def planned_reason(k_given: int | None, m: int, n: int, k: int) -> str:
    """Why auto's plan is not representatives (:func:`plan_auto`), as a clause."""
    if k_given is not None and k_given != m:
        return f"k = {k_given} was given and differs from m = {m} (representatives need k = m)"
    if m > AUTO_REPRESENTATIVES_MAX_M:
        return f"m = {m} > {AUTO_REPRESENTATIVES_MAX_M}, the largest budget at which representatives were measured to gain"
    least = AUTO_MIN_ROWS_PER_REPRESENTATIVE * m
    if n < least:
        return f"n = {n} < {AUTO_MIN_ROWS_PER_REPRESENTATIVE} x m = {least} rows: too few rows per representative"
    return f"the run's one fit, shared by all its sample sizes, has k = {k} (representatives need k = m)"


def choose_auto(
    k_given: int | None,
    k: int,
    m: int,
    n: int,
    stats: ClusterStats,
    share: float,
    forecasts: dict[str, float | None] | None = None,
) -> AutoChoice:
    """The strategy ``auto`` draws with once the clusters are known (rule frozen in settings/choices.py).

    ``k_given`` is the user's k (None: not given), ``k`` the fitted one (:func:`plan_auto`), ``n`` the
    valid rows, ``stats`` the fitted clusters, ``share`` their :func:`explained_share`. ``forecasts`` (from a pilot) maps each candidate
    strategy to its forecast relative RMSE of the mean loss (None: cannot be forecast); the lowest wins.
    """
    planned = REPRESENTATIVES if represents(k_given, k, m) else STRATIFIED
    if forecasts is not None:
        return _by_forecast(planned, k, forecasts)
    if planned == REPRESENTATIVES:
        rows = n / m
        if rows < AUTO_MIN_ROWS_PER_REPRESENTATIVE:
            return AutoChoice(
                STRATIFIED, k, f"auto chose stratified with k = {k} (one uniform row per cluster) because "
                f"n / m = {rows:.1f} < {AUTO_MIN_ROWS_PER_REPRESENTATIVE} rows per representative: in clusters "
                "this small the most central row is little more typical than a random one",
            )  # fmt: skip
        if share < AUTO_MIN_EXPLAINED_SHARE:
            return AutoChoice(
                STRATIFIED, k, f"auto chose stratified with k = {k} (one uniform row per cluster) because the "
                f"clusters explain {share:.1%} < {AUTO_MIN_EXPLAINED_SHARE:.0%} of the embeddings' spread: "
                "no structure for a central row to stand for",
            )  # fmt: skip
        return AutoChoice(
            REPRESENTATIVES, k, f"auto chose representatives with k = {k} because m = {m} <= "
            f"{AUTO_REPRESENTATIVES_MAX_M}, n / m = {rows:.0f} >= {AUTO_MIN_ROWS_PER_REPRESENTATIVE} rows per "
            f"representative and the clusters explain {share:.0%} >= {AUTO_MIN_EXPLAINED_SHARE:.0%} of the spread",
        )  # fmt: skip
    why = planned_reason(k_given, m, n, k)
    if m > n:
        return AutoChoice(
            SENSITIVITY, k, f"auto chose sensitivity with k = {k} because {why}, and m exceeds the {n} "
            "valid rows: only draws with replacement can pick m",
        )  # fmt: skip
    if m < stats.nonempty:
        return AutoChoice(
            SENSITIVITY, k, f"auto chose sensitivity with k = {k} because {why}, and m is below the "
            f"{stats.nonempty} non-empty clusters that stratified needs one row each of",
        )  # fmt: skip
    return AutoChoice(STRATIFIED, k, f"auto chose stratified with k = {k} because {why}")


def _by_forecast(planned: str, k: int, forecasts: dict[str, float | None]) -> AutoChoice:
    """The candidate with the lowest forecast RMSE; the reason lists every candidate's forecast."""
    usable = {name: value for name, value in forecasts.items() if value is not None}
    shown = ", ".join(
        f"{name} {100 * value:.2f} %" if value is not None else f"{name} cannot be forecast"
        for name, value in forecasts.items()
    )
    if not usable:
        return AutoChoice(
            SENSITIVITY, k, f"auto chose sensitivity with k = {k} because no strategy could be forecast from "
            f"the pilot ({shown}); sensitivity is unbiased",
        )  # fmt: skip
    best = min(usable, key=lambda name: (usable[name], name != planned))
    return AutoChoice(
        best, k, f"auto chose {best} with k = {k} because, with the pilot's losses, its forecast RMSE of the "
        f"mean loss at m is the lowest ({shown})",
    )  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """The picked rows (persisted; id, cluster_id, cost, sensitivity, probability, count, weight) and
    how many rows were picked (the sum of ``count``)."""

    frame: DataFrame
    draws: int


def quotas(stats: ClusterStats, m: int) -> np.ndarray:
    """m_j: one per non-empty cluster, the rest in proportion to n_j (largest remainders), sum m."""
    nonempty = stats.nonempty
    if m < nonempty:
        raise ValueError(
            f"sample size {m} is below the {nonempty} non-empty clusters; every cluster needs a row "
            "for the weights to sum to n: raise the sample size or lower k"
        )
    if m > stats.n:
        raise ValueError(f"sample size {m} is larger than the {stats.n} valid rows")
    return allocate(stats.sizes, m)


def select(
    strategy: str, assigned: DataFrame, stats: ClusterStats, m: int, seed: int, id_col: str
) -> Selection:
    """Picks the rows of ``strategy`` (representatives, stratified or prototypes) from ``assigned``
    (id, cluster_id, cost of every valid row, persisted by the caller when expensive)."""
    if strategy == REPRESENTATIVES:
        return _persisted(_representatives(assigned, stats, id_col))
    if strategy == STRATIFIED:
        return _stratified(assigned, stats, m, seed, id_col)
    if strategy == PROTOTYPES:
        hardest = m / stats.n >= PROTOTYPES_HARD_FROM
        return prototypes(assigned, stats, m, seed, id_col, hardest)
    raise ValueError(f"strategy {strategy!r} does not pick rows by cluster")


def _stats_table(assigned: DataFrame, stats: ClusterStats, picks: np.ndarray) -> DataFrame:
    """(cluster_id, n_j, m_j, key limit) for the clusters that keep rows; broadcast to the rows."""
    rows = [
        (int(j), int(stats.sizes[j]), int(picks[j]), _key_limit(int(picks[j]), int(stats.sizes[j])))
        for j in np.flatnonzero(picks > 0)
    ]
    schema = f"{CLUSTER_COL} int, {_SIZE} long, {_QUOTA} int, {_LIMIT} double"
    return assigned.sparkSession.createDataFrame(rows, schema)


def _key_limit(quota: int, size: int) -> float:
    """A key threshold that keeps about 6 standard deviations more than ``quota`` rows of the cluster."""
    return min(1.0, (quota + 6.0 * math.sqrt(quota) + 10.0) / size)


def _output(frame: DataFrame, stats: ClusterStats, id_col: str) -> DataFrame:
    """The subset columns: inclusion probability m_j / n_j, weight n_j / m_j, and the model-free
    sensitivity s_i for reference."""
    size, quota = F.col(_SIZE).cast("double"), F.col(_QUOTA).cast("double")
    cost_share = F.col(COST_COL) / stats.total_cost if stats.total_cost > 0 else F.lit(0.0)
    return frame.select(
        F.col(id_col),
        F.col(CLUSTER_COL),
        F.col(COST_COL),
        (cost_share + 1.0 / size).alias(SENSITIVITY_COL),
        (quota / size).alias(PROBABILITY_COL),
        F.lit(1).alias(COUNT_COL),
        (size / quota).alias(WEIGHT_COL),
    )


def _persisted(frame: DataFrame) -> Selection:
    frame = frame.persist()
    return Selection(frame, frame.count())


def _representatives(assigned: DataFrame, stats: ClusterStats, id_col: str) -> DataFrame:
    """Per non-empty cluster the row with the smallest cost (one hash aggregation); weight n_j."""
    best = F.min(F.struct(F.col(COST_COL).alias("c"), F.col(id_col).alias("i"))).alias("best")
    rows = assigned.where(F.col(CLUSTER_COL).isNotNull()).groupBy(CLUSTER_COL).agg(best)
    rows = rows.select(CLUSTER_COL, F.col("best.i").alias(id_col), F.col("best.c").alias(COST_COL))
    sizes = _stats_table(assigned, stats, (stats.sizes > 0).astype(np.int64))
    rows = rows.join(F.broadcast(sizes), on=CLUSTER_COL, how="inner")
    return _output(rows, stats, id_col)


def _stratified(assigned: DataFrame, stats: ClusterStats, m: int, seed: int, id_col: str) -> Selection:
    """The m_j rows of each cluster with the smallest uniform keys from (id, seed): a uniform subset.

    Only rows under a per-cluster key limit are ranked; if a cluster falls short the ranking is redone
    on all rows, so the result is the same either way.
    """
    picks = quotas(stats, m)
    keyed = assigned.join(F.broadcast(_stats_table(assigned, stats, picks)), on=CLUSTER_COL, how="inner")
    keyed = keyed.withColumn(_KEY, rowrandom.jvm_uniform(id_col, seed, rowrandom.STREAM_STRATIFIED))
    order = Window.partitionBy(CLUSTER_COL).orderBy(F.col(_KEY), F.col(id_col))
    for prefilter in (True, False):
        candidates = keyed.where(F.col(_KEY) < F.col(_LIMIT)) if prefilter else keyed
        kept = candidates.withColumn(_RANK, F.row_number().over(order)).where(F.col(_RANK) <= F.col(_QUOTA))
        selection = _persisted(_output(kept, stats, id_col))
        if selection.draws == m:
            return selection
        selection.frame.unpersist()
    raise RuntimeError(f"internal error: stratified sampling could not pick {m} rows")


def prototypes(
    assigned: DataFrame, stats: ClusterStats, m: int, seed: int, id_col: str, hardest: bool
) -> Selection:
    """The m_j rows of each cluster nearest to (or, with ``hardest``, farthest from) its center.

    Ties in cost are broken by a uniform key from (id, seed), then the id. One window over the
    (id, cluster_id, cost) rows, partitioned by cluster.
    """
    picks = quotas(stats, m)
    keyed = assigned.join(F.broadcast(_stats_table(assigned, stats, picks)), on=CLUSTER_COL, how="inner")
    keyed = keyed.withColumn(_KEY, rowrandom.jvm_uniform(id_col, seed, rowrandom.STREAM_STRATIFIED))
    cost = F.col(COST_COL).desc() if hardest else F.col(COST_COL).asc()
    order = Window.partitionBy(CLUSTER_COL).orderBy(cost, F.col(_KEY), F.col(id_col))
    kept = keyed.withColumn(_RANK, F.row_number().over(order)).where(F.col(_RANK) <= F.col(_QUOTA))
    return _persisted(_output(kept, stats, id_col))
