"""What :mod:`spark_sensitivity.core.forecast` needs, gathered with Spark: k rows or the pilot's rows only.

- a pilot: the user's loss on a uniform sample of rows, joined with each row's cluster and q_i;
- per-cluster sums for the representatives' model: H_j = sum_{i in j} 1 / q_i (one mapInArrow pass
  with per-batch partial sums) and Q_j = mean ||x_i - c_j||^2 (one aggregate of the fit's costs).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

from spark_sensitivity.core import forecast
from spark_sensitivity.core.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sample import Sensitivity

_LOSS = "__ss_pilot_loss"


def check_pilot_columns(pilot: DataFrame, id_col: str, loss_col: str) -> None:
    """A one-line ValueError naming the table's columns when the id or loss column is missing."""
    for column, flag in ((id_col, "--id-col"), (loss_col, "--pilot-loss-col")):
        if column not in pilot.columns:
            raise ValueError(
                f"the pilot loss table has no column {column!r} (columns: {', '.join(pilot.columns)}); "
                f"name it with {flag}"
            )


def pilot_rows(
    scored: DataFrame, scorer: Sensitivity, pilot: DataFrame, id_col: str, loss_col: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster ids, losses, probabilities q_i) of the pilot rows; a one-line ValueError when the pilot
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
    return clusters, np.array([losses[r[id_col]] for r in found]), probabilities


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
) -> forecast.Forecast:
    """The forecast from a uniform pilot of user losses, for the sampler ``scorer`` at m draws."""
    clusters, losses, probabilities = pilot_rows(scored, scorer, pilot, id_col, loss_col)
    return forecast.from_pilot(sizes, clusters, losses, probabilities, m, seed)


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
