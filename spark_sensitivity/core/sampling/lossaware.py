"""The paper's loss-aware variant: representatives, their losses as a proxy, and a sample with roles.

1. Representatives: per cluster, the row nearest its center (a distributed arg-min over the fit's
   assignments; ties go to the smallest id). Written as ``representatives/`` (cluster_id, id,
   distance = ||r_j - c_j||).
2. Given the model's loss on the k representatives, every row gets

       s_i = loss(r_a(i)) + lambda * ||x_i - r_a(i)||^z + floor

   lambda is given, or balanced: lambda = sum_i loss(r_a(i)) / sum_i ||x_i - r_a(i)||^z, so the proxy
   loss and the distance term each carry half of the mass. ``floor`` spreads ``uniform_share`` of the
   mass uniformly over the rows (project choice): every row then has q_i >= uniform_share / n, so the
   weights are bounded by n / (m * uniform_share) and the estimate stays unbiased even for rows
   whose proxy and distance are both zero. ``uniform_share=0`` is the paper's plain rule: it gives
   such rows probability 0, which biases the estimate, so the select job refuses it when any exist.
3. Exactly m draws with probability q_i = s_i / sum(s), weight count / (m q_i), as in ``sample.draw``.
   The output holds the k representatives (role ``representative``) and the drawn rows (role
   ``sample``); the training set is all of them. A representative that is also drawn keeps its role
   and carries its draws' count and weight; one that is not drawn has count 0 and weight 0, so
   sum(weight * loss) over the output is the unbiased estimate of the total loss.
   ``rep_weights="cluster"`` adds n_j to each representative's weight instead, for training: each
   representative then stands for its whole cluster. That is not unbiased for estimation: sum_j n_j
   loss(r_j) misses the total by sum_j n_j (loss(r_j) - mean loss of cluster j), a bias no m removes,
   and with the draws' weights the sum of weights is about 2n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from spark_sensitivity.core.kmeans.assigned import AssignedRows
from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sampling import sample

# The representatives' step; these names stay importable from here.
from spark_sensitivity.core.sampling.representatives import (
    DISTANCE_COL,
    PROXY_COL,
    representative_costs,
    representative_losses,
    representative_vectors,
    representatives,
)
from spark_sensitivity.core.sampling.rowrandom import row_hash
from spark_sensitivity.core.sampling.score import PROBABILITY_COL, SENSITIVITY_COL
from spark_sensitivity.settings import DEFAULT_UNIFORM_SHARE, REP_WEIGHTS, SettingError

ROLE_COL = "role"
REPRESENTATIVE = "representative"
SAMPLE = "sample"


class FittedModel(Protocol):
    """What loss-aware selection needs of a fitted model (``SensitivitySamplerModel`` has it),
    declared here so that the core does not import the ml layer."""

    def getIdCol(self) -> str: ...

    def getFeaturesCol(self) -> str: ...

    def getCostPower(self) -> int: ...

    def clusterCenters(self) -> list[np.ndarray]: ...

    def assignedRows(self, dataset: DataFrame | None = None) -> AssignedRows: ...


@dataclass(frozen=True)
class LossAwareSensitivity:
    """s_i = proxy[a(i)] + lam * cost_i + floor, where cost_i = ||x_i - r_a(i)||^z (see the module doc).

    Has the interface ``sample.draw`` expects (``total_sensitivity`` and ``sensitivity``).
    """

    proxy: np.ndarray
    lam: float
    floor: float
    total_sensitivity: float

    @classmethod
    def balanced(
        cls,
        sizes: np.ndarray,
        distance_costs: np.ndarray,
        proxy: np.ndarray,
        lam: float | None = None,
        uniform_share: float = DEFAULT_UNIFORM_SHARE,
    ) -> LossAwareSensitivity:
        """The scorer from per-cluster sizes n_j, sums of ||x_i - r_j||^z and proxy losses.

        ``lam=None`` balances the two terms; ``uniform_share`` in [0, 1) is the floor's share.
        """
        if lam is not None and not (np.isfinite(lam) and lam >= 0):
            raise ValueError(f"lambda must be a finite number >= 0, got {lam}")
        if not 0.0 <= uniform_share < 1.0:
            raise ValueError(f"uniform share must be in [0, 1), got {uniform_share}")
        n = float(sizes.sum())
        if n <= 0:
            raise ValueError("no rows to score: every cluster is empty")
        proxy_mass = float((sizes * proxy).sum())
        distance_mass = float(distance_costs.sum())
        if lam is None:
            lam = proxy_mass / distance_mass if distance_mass > 0 else 0.0
        base = proxy_mass + lam * distance_mass
        # No mass at all (zero losses, every row on its representative): sample uniformly.
        floor = uniform_share / (1.0 - uniform_share) * base / n if base > 0 else 1.0
        return cls(np.asarray(proxy, dtype=np.float64), float(lam), floor, base + floor * n)

    def sensitivity(self, cluster_ids: np.ndarray, costs: np.ndarray) -> np.ndarray:
        return self.proxy[cluster_ids] + self.lam * costs + self.floor


@dataclass
class LossAwareSelection:
    """The second round, prepared once: the scored rows are persisted so each draw is one pass.

    ``representatives`` is a list of rows (cluster_id, id, distance, proxy_loss), ``scored`` the
    persisted (id, cluster_id, cost = ||x - r_a(x)||^z) of every valid row, ``scorer`` the sensitivity.
    Call :meth:`release` when done.
    """

    representatives: list
    scored: DataFrame
    scorer: LossAwareSensitivity
    sizes: np.ndarray
    source: DataFrame
    id_col: str
    rep_vectors: np.ndarray | None = None  # in the order of ``representatives``
    zero_sensitivity_rows: int = 0
    zero_sensitivity_example: Any = None

    @property
    def n(self) -> int:
        return int(self.sizes.sum())

    @property
    def proxy_total(self) -> float:
        """sum_i loss(r_a(i)): the control variate's known total (see ``evaluate``)."""
        return float((self.sizes * self.scorer.proxy).sum())

    def rep_vectors_by_cluster(self) -> np.ndarray:
        """The representatives' embeddings as a (k, d) array indexed by cluster id (zeros if empty)."""
        vectors = np.zeros((len(self.sizes), self.rep_vectors.shape[1]), dtype=np.float64)
        vectors[[r[CLUSTER_COL] for r in self.representatives]] = self.rep_vectors
        return vectors

    def representatives_frame(self) -> DataFrame:
        """The representatives as a DataFrame: cluster_id, id, distance, proxy_loss."""
        schema = StructType(
            [
                StructField(CLUSTER_COL, IntegerType()),
                self.scored.schema[self.id_col],
                StructField(DISTANCE_COL, DoubleType()),
                StructField(PROXY_COL, DoubleType()),
            ]
        )
        rows = [(r[CLUSTER_COL], r[self.id_col], r[DISTANCE_COL], r[PROXY_COL]) for r in self.representatives]
        return self.scored.sparkSession.createDataFrame(rows, schema)

    def proxy_frame(self) -> DataFrame:
        """(cluster_id, proxy_loss) for every cluster, to attach the proxy to drawn rows."""
        rows = [(j, float(p)) for j, p in enumerate(self.scorer.proxy)]
        return self.scored.sparkSession.createDataFrame(rows, f"{CLUSTER_COL} int, {PROXY_COL} double")

    def sample(
        self, sample_size: int, seed: int, drop_columns: tuple[str, ...] = (), rep_weights: str = "zero"
    ) -> DataFrame:
        """The k representatives plus exactly ``sample_size`` draws, one row per id, with a role.

        Columns: the source's (less ``drop_columns``), cluster_id, cost, proxy_loss, sensitivity,
        probability, count, weight and role. Persisted draws underlie it; it is cheap to collect.
        ``rep_weights``: "zero" (unbiased estimates) or "cluster" (+ n_j per representative; module doc).
        """
        if rep_weights not in REP_WEIGHTS:
            raise ValueError(f"rep weights must be one of {', '.join(REP_WEIGHTS)}, got {rep_weights!r}")
        scored = self.scored.withColumn(sample.HASH_COL, row_hash(self.id_col, seed))
        drawn = sample.draw(scored, self.scorer, sample_size).frame.drop(sample.HASH_COL)
        total = self.scorer.total_sensitivity
        id_field = self.scored.schema[self.id_col]
        rep_schema = StructType(
            [
                StructField(self.id_col, id_field.dataType),
                StructField("__rep_cluster", IntegerType()),
                StructField("__rep_sensitivity", DoubleType()),
                StructField("__rep_weight", DoubleType()),
                StructField(ROLE_COL, StringType()),
            ]
        )
        reps = self.scored.sparkSession.createDataFrame(
            [
                (
                    r[self.id_col],
                    r[CLUSTER_COL],
                    float(self.scorer.proxy[r[CLUSTER_COL]] + self.scorer.floor),
                    float(self.sizes[r[CLUSTER_COL]]) if rep_weights == "cluster" else 0.0,
                    REPRESENTATIVE,
                )
                for r in self.representatives
            ],
            rep_schema,
        )
        # The drawn rows (with their role when one is a representative) and the undrawn representatives:
        # two broadcast joins of small tables, where a full outer join would shuffle both sides.
        drawn_ids = F.broadcast(drawn.select(self.id_col))
        both = drawn.join(F.broadcast(reps), on=self.id_col, how="left").unionByName(
            reps.join(drawn_ids, on=self.id_col, how="left_anti"), allowMissingColumns=True
        )
        rep_sensitivity = F.col("__rep_sensitivity")
        combined = both.select(
            F.col(self.id_col),
            F.coalesce(F.col(CLUSTER_COL), F.col("__rep_cluster")).alias(CLUSTER_COL),
            F.coalesce(F.col(COST_COL), F.lit(0.0)).alias(COST_COL),
            F.coalesce(F.col(SENSITIVITY_COL), rep_sensitivity).alias(SENSITIVITY_COL),
            F.coalesce(F.col(PROBABILITY_COL), rep_sensitivity / total).alias(PROBABILITY_COL),
            F.coalesce(F.col(sample.COUNT_COL), F.lit(0)).alias(sample.COUNT_COL),
            (
                F.coalesce(F.col(sample.WEIGHT_COL), F.lit(0.0))
                + F.coalesce(F.col("__rep_weight"), F.lit(0.0))
            ).alias(sample.WEIGHT_COL),
            F.coalesce(F.col(ROLE_COL), F.lit(SAMPLE)).alias(ROLE_COL),
        ).join(F.broadcast(self.proxy_frame()), on=CLUSTER_COL, how="left")
        ordered = [self.id_col, CLUSTER_COL, COST_COL, PROXY_COL, SENSITIVITY_COL, PROBABILITY_COL]
        combined = combined.select(*ordered, sample.COUNT_COL, sample.WEIGHT_COL, ROLE_COL)
        most_rows = sample_size + len(self.representatives)
        return sample.join_input(combined, self.source.drop(*drop_columns), self.id_col, most_rows)

    def release(self) -> None:
        self.scored.unpersist()


def prepare(
    model: FittedModel,
    rep_losses: DataFrame,
    loss_col: str = "loss",
    lam: float | None = None,
    uniform_share: float = DEFAULT_UNIFORM_SHARE,
    dataset: DataFrame | None = None,
) -> LossAwareSelection:
    """Scores every row against its cluster's representative, given the representatives' losses.

    Without ``dataset`` it uses the fitted model's training data and persisted assignments (so the
    representatives are the ones :func:`model_representatives` returned); with one, it assigns that
    data to the model's centers and takes the representatives from it. ``rep_losses`` is any table
    with the id column and ``loss_col`` covering every representative (other rows are ignored).
    """
    id_col, vector_col, z = model.getIdCol(), model.getFeaturesCol(), model.getCostPower()
    rows = model.assignedRows(dataset)
    try:
        source = rows.rows
        reps = representative_losses(representatives(rows.assigned, id_col, z), rep_losses, id_col, loss_col)
        rep_clusters = np.array([r[CLUSTER_COL] for r in reps], dtype=np.int64)
        centers = np.array(model.clusterCenters(), dtype=np.float64)
        rep_vectors = representative_vectors(source, id_col, vector_col, reps, centers.shape[1])
        scored = representative_costs(
            source, id_col, vector_col, centers, rep_vectors, rep_clusters, z
        ).persist()
        k = len(centers)
        sizes, distance_costs = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.float64)
        for row in scored.groupBy(CLUSTER_COL).agg(F.count(F.lit(1)), F.sum(COST_COL)).collect():
            sizes[row[0]], distance_costs[row[0]] = row[1], row[2]
        proxy = np.zeros(k, dtype=np.float64)
        proxy[rep_clusters] = [r[PROXY_COL] for r in reps]
        scorer = LossAwareSensitivity.balanced(sizes, distance_costs, proxy, lam, uniform_share)
    finally:
        rows.release()
    zero_rows, example = _zero_sensitivity_rows(scored, scorer, id_col, [r[id_col] for r in reps])
    return LossAwareSelection(reps, scored, scorer, sizes, source, id_col, rep_vectors, zero_rows, example)


def model_representatives(model: FittedModel, dataset: DataFrame | None = None) -> DataFrame:
    """Step 1 alone: (cluster_id, id, distance) of the training data's (or ``dataset``'s)
    representatives; those of ``dataset`` are computed here, k rows, so its assignment is freed."""
    rows = model.assignedRows(dataset)
    found = representatives(rows.assigned, model.getIdCol(), model.getCostPower())
    if rows.cache is None:
        return found
    try:
        return found.sparkSession.createDataFrame(found.collect(), found.schema)
    finally:
        rows.release()


def _zero_sensitivity_rows(
    scored: DataFrame, scorer: LossAwareSensitivity, id_col: str, rep_ids: list
) -> tuple[int, Any]:
    """How many rows other than the representatives ``scorer`` gives a sensitivity of 0, and the
    smallest such id. Their losses are missing from the estimate (a representative's is known).

    Only possible without a floor: a zero proxy loss and a zero distance term (or lambda = 0).
    """
    zero_proxy = [int(j) for j in np.flatnonzero(scorer.proxy == 0)]
    if scorer.floor > 0 or not zero_proxy:
        return 0, None
    no_distance = F.lit(True) if scorer.lam == 0 else F.col(COST_COL) == 0
    zero = scored.where(F.col(CLUSTER_COL).isin(zero_proxy) & no_distance & ~F.col(id_col).isin(rep_ids))
    row = zero.agg(F.count(F.lit(1)).alias("rows"), F.min(id_col).alias("example")).first()
    return int(row["rows"]), row["example"]


def select_with_roles(
    model: FittedModel,
    rep_losses: DataFrame,
    sample_size: int,
    seed: int,
    loss_col: str = "loss",
    lam: float | None = None,
    uniform_share: float = DEFAULT_UNIFORM_SHARE,
    drop_columns: tuple[str, ...] = (),
    rep_weights: str = "zero",
    on_prepared: Callable[[LossAwareSelection], None] | None = None,
) -> tuple[DataFrame, dict]:
    """The selection job's loss-aware step: the persisted subset (representatives + m draws, with
    roles) of the model's training data, and the facts for the manifest. ``on_prepared`` sees the
    prepared selection before the draws (the job's checks and forecast)."""
    selection = prepare(model, rep_losses, loss_col, lam, uniform_share)
    zero = selection.zero_sensitivity_rows
    if zero:
        selection.release()
        raise SettingError(
            f"uniform_share {uniform_share:g} gives {zero} row{'s' if zero > 1 else ''} (e.g. id "
            f"{selection.zero_sensitivity_example}) a sensitivity of 0 (a zero proxy loss and a zero distance "
            "term): they could never be drawn and the estimate would be biased; "
            "use a positive uniform_share",
            "uniform_share",
        )
    try:
        if on_prepared is not None:
            on_prepared(selection)
        subset = selection.sample(sample_size, seed, drop_columns, rep_weights).persist()
        subset.count()
    finally:
        selection.release()
    scorer = selection.scorer
    facts = {
        "representatives": len(selection.representatives),
        "lambda": scorer.lam,
        "lambda_balanced": lam is None,
        "uniform_share": uniform_share,
        "rep_weights": rep_weights,
        "zero_sensitivity_rows": selection.zero_sensitivity_rows,
        "floor": scorer.floor,
        "proxy_loss_total": selection.proxy_total,
        "sum_of_sensitivities": scorer.total_sensitivity,
    }
    return subset, facts
