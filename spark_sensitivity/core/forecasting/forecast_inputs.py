"""What :mod:`spark_sensitivity.core.forecasting.forecast` needs, gathered with Spark: k rows or the pilot's rows only.

- a pilot: the user's loss on a uniform sample of rows, joined with each row's cluster and q_i;
- per-cluster sums for the representatives' model: H_j = sum_{i in j} 1 / q_i (one mapInArrow pass
  with per-batch partial sums) and Q_j = mean ||x_i - c_j||^2 (one aggregate of the fit's costs);
- for a deterministic subset's bias: sum_S w v and sum_S w^2 (one aggregate of the subset, or of the
  clusters' nearest rows before the representatives are picked).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

from spark_sensitivity.core.forecasting import forecast
from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sampling.sample import Sensitivity
from spark_sensitivity.settings import SettingError

_LOSS = "__ss_pilot_loss"


def check_pilot_columns(pilot: DataFrame, id_col: str, loss_col: str) -> None:
    """A one-line ValueError naming the table's columns when the id or loss column is missing."""
    for column, name in ((id_col, "idCol"), (loss_col, "pilot_loss_col")):
        if column not in pilot.columns:
            raise SettingError(
                f"the pilot loss table has no column {column!r} (columns: {', '.join(pilot.columns)}); "
                f"name it with {name}",
                name,
            )


@dataclass(frozen=True)
class PilotRows:
    """The pilot rows' clusters, losses, probabilities q_i and costs v_i (aligned arrays)."""

    clusters: np.ndarray
    losses: np.ndarray
    probabilities: np.ndarray
    costs: np.ndarray


def pilot_rows(
    scored: DataFrame, scorer: Sensitivity, pilot: DataFrame, id_col: str, loss_col: str
) -> PilotRows:
    """The pilot rows with their cluster, loss, q_i and cost; a one-line ValueError when the pilot
    lacks a column, repeats an id, has a null or non-finite loss, or names rows that are not scored."""
    check_pilot_columns(pilot, id_col, loss_col)
    loss = F.col(loss_col).cast("double")
    rows = pilot.select(F.col(id_col), loss.alias(_LOSS)).collect()
    ids = [r[id_col] for r in rows]
    if len(set(ids)) != len(ids):
        seen: set = set()
        repeated = [i for i in ids if i in seen or seen.add(i)]
        raise ValueError(f"the pilot loss table repeats ids (e.g. {', '.join(map(str, repeated[:3]))})")
    bad = [r[id_col] for r in rows if r[_LOSS] is None or not np.isfinite(r[_LOSS])]
    if bad:
        raise ValueError(
            f"pilot column {loss_col!r} has {len(bad)} null or non-finite losses "
            f"(e.g. ids {', '.join(map(str, bad[:3]))})"
        )
    losses = {r[id_col]: float(r[_LOSS]) for r in rows}
    id_schema = StructType([StructField(id_col, scored.schema[id_col].dataType)])
    wanted = scored.sparkSession.createDataFrame([(i,) for i in ids], id_schema)
    found = scored.join(F.broadcast(wanted), on=id_col).select(id_col, CLUSTER_COL, COST_COL).collect()
    missing = sorted(set(ids) - {r[id_col] for r in found}, key=str)
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(ids)} pilot ids are not rows of the input with a valid embedding "
            f"(e.g. {', '.join(map(str, missing[:3]))})"
        )
    clusters = np.array([r[CLUSTER_COL] for r in found], dtype=np.int64)
    costs = np.array([r[COST_COL] for r in found], dtype=np.float64)
    probabilities = scorer.sensitivity(clusters, costs) / scorer.total_sensitivity
    return PilotRows(clusters, np.array([losses[r[id_col]] for r in found]), probabilities, costs)


def subset_costs(subset: DataFrame, strategy: str, total_cost: float) -> forecast.FixedSubset:
    """sum_S w v and sum_S w^2 of a written deterministic subset (one aggregate of its rows)."""
    weight = F.col("weight")
    row = subset.agg(F.sum(weight * F.col(COST_COL)), F.sum(weight * weight)).first()
    return forecast.FixedSubset(strategy, float(row[0] or 0.0), float(row[1] or 0.0), total_cost)


def representatives_costs(
    assignments: DataFrame, sizes: np.ndarray, total_cost: float
) -> forecast.FixedSubset:
    """What the representatives would give, before they are picked: sum_j n_j min_{i in j} v_i and
    sum_j n_j^2 (one aggregate, k rows to the driver)."""
    nearest = np.zeros(len(sizes), dtype=np.float64)
    for row in assignments.groupBy(CLUSTER_COL).agg(F.min(COST_COL)).collect():
        if row[0] is not None:
            nearest[row[0]] = row[1]
    sizes = np.asarray(sizes, dtype=np.float64)
    return forecast.FixedSubset(
        "representatives", float((sizes * nearest).sum()), float((sizes**2).sum()), total_cost
    )


def within_squares(assignments: DataFrame, total_cost: float, z: int) -> float:
    """sum_i ||x_i - c_a(i)||^2: the fit's cost for z = 2, one aggregate of the squared costs for z = 1."""
    if z == 2:
        return total_cost
    return float(assignments.agg(F.sum(F.col(COST_COL) ** 2)).first()[0] or 0.0)


def inverse_probability_sums(scored: DataFrame, scorer: Sensitivity, k: int) -> np.ndarray:
    """H_j = sum_{i in j} 1 / q_i per cluster: per-batch partial sums, then k rows to the driver."""
    total = scorer.total_sensitivity
    schema = StructType([StructField(CLUSTER_COL, IntegerType()), StructField("h", DoubleType())])

    def partial(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            clusters = batch.column(CLUSTER_COL).to_numpy()
            s = scorer.sensitivity(clusters, batch.column(COST_COL).to_numpy())
            sums = np.bincount(clusters, weights=total / s, minlength=k)
            present = np.flatnonzero(np.bincount(clusters, minlength=k))
            yield pa.RecordBatch.from_arrays(
                [pa.array(present.astype(np.int32)), pa.array(sums[present])], schema=pa.schema(
                    [pa.field(CLUSTER_COL, pa.int32()), pa.field("h", pa.float64())]
                ),
            )  # fmt: skip

    sums = np.zeros(k, dtype=np.float64)
    frame = scored.select(CLUSTER_COL, COST_COL).mapInArrow(partial, schema)
    for row in frame.groupBy(CLUSTER_COL).agg(F.sum("h")).collect():
        sums[row[0]] = row[1]
    return sums


def center_spread(assignments: DataFrame, sizes: np.ndarray, z: int) -> np.ndarray:
    """Q_j = mean over cluster j of ||x_i - c_j||^2, from the fit's costs ||x_i - c_j||^z."""
    squared = F.col(COST_COL) ** 2 if z == 1 else F.col(COST_COL)
    sums = np.zeros(len(sizes), dtype=np.float64)
    for row in assignments.groupBy(CLUSTER_COL).agg(F.sum(squared)).collect():
        if row[0] is not None:
            sums[row[0]] = row[1]
    return np.divide(sums, sizes, out=np.zeros_like(sums), where=np.asarray(sizes) > 0)


def pilot_forecast(
    scored: DataFrame,
    scorer: Sensitivity,
    sizes: np.ndarray,
    pilot: DataFrame,
    id_col: str,
    loss_col: str,
    m: int,
    seed: int,
    fixed: forecast.FixedSubset | None = None,
) -> forecast.Forecast:
    """The forecast from a uniform pilot of user losses, for the sampler ``scorer`` at m draws (and
    the deterministic subset ``fixed``, when given)."""
    rows = pilot_rows(scored, scorer, pilot, id_col, loss_col)
    return forecast_from_rows(rows, sizes, m, seed, fixed)


def forecast_from_rows(
    rows: PilotRows, sizes: np.ndarray, m: int, seed: int, fixed: forecast.FixedSubset | None = None
) -> forecast.Forecast:
    """The forecast from pilot rows already gathered (:func:`pilot_rows`)."""
    return forecast.from_pilot(
        sizes, rows.clusters, rows.losses, rows.probabilities, m, seed, costs=rows.costs, fixed=fixed
    )


def representatives_forecast(
    assignments: DataFrame,
    scored: DataFrame,
    scorer: Sensitivity,
    sizes: np.ndarray,
    rep_losses: np.ndarray,
    rep_vectors: np.ndarray,
    z: int,
    m: int,
    seed: int,
) -> forecast.Forecast:
    """The forecast from the k representatives' losses and two per-cluster aggregates."""
    spread = center_spread(assignments, sizes, z)
    inverse_q = inverse_probability_sums(scored, scorer, len(sizes))
    return forecast.from_representatives(sizes, rep_losses, rep_vectors, spread, inverse_q, m, seed)
