"""The representatives of loss-aware selection: per cluster the row nearest its center, their losses
and embeddings, and every row's cost to its cluster's representative (see :mod:`lossaware`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

from spark_sensitivity.core.kmeans import kernels
from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.vectors import vector_values
from spark_sensitivity.settings import SettingError

DISTANCE_COL = "distance"
PROXY_COL = "proxy_loss"
_VECTOR_TMP = "__ss_vector"


def representatives(assigned: DataFrame, id_col: str, z: int) -> DataFrame:
    """Per non-empty cluster, the row with the smallest cost to its center: (cluster_id, id, distance).

    ``assigned`` has the id, ``cluster_id`` and ``cost`` = ||x - c||^z of each row (the fit's
    assignments). One hash aggregation: the minimum of the struct (cost, id) per cluster.
    """
    best = F.min(F.struct(F.col(COST_COL).alias("c"), F.col(id_col).alias("i"))).alias("best")
    rows = assigned.where(F.col(CLUSTER_COL).isNotNull()).groupBy(CLUSTER_COL).agg(best)
    distance = F.col("best.c") if z == 1 else F.sqrt(F.col("best.c"))
    return rows.select(
        F.col(CLUSTER_COL), F.col("best.i").alias(id_col), distance.alias(DISTANCE_COL)
    ).orderBy(CLUSTER_COL)


def check_loss_columns(rep_losses: DataFrame, id_col: str, loss_col: str) -> None:
    """A one-line ValueError naming the table's columns when the id or loss column is missing."""
    for column, name in ((id_col, "idCol"), (loss_col, "rep_loss_col")):
        if column not in rep_losses.columns:
            raise SettingError(
                f"the representatives' loss table has no column {column!r} (columns: "
                f"{', '.join(rep_losses.columns)}); name it with {name}",
                name,
            )


def representative_losses(reps: DataFrame, rep_losses: DataFrame, id_col: str, loss_col: str) -> list:
    """The representatives with their loss; a one-line ValueError when a loss is missing or bad."""
    check_loss_columns(rep_losses, id_col, loss_col)
    losses = rep_losses.select(F.col(id_col), F.col(loss_col).cast("double").alias(PROXY_COL))
    rows = reps.join(losses, on=id_col, how="left").collect()
    missing = [r[id_col] for r in rows if r[PROXY_COL] is None]
    if missing:
        raise ValueError(
            f"the loss table has no {loss_col!r} for {len(missing)} of the {reps.count()} representatives "
            f"(e.g. ids {', '.join(map(str, missing[:3]))}); compute the model's loss on every row of representatives/"
        )
    bad = [r[id_col] for r in rows if not (np.isfinite(r[PROXY_COL]) and r[PROXY_COL] >= 0)]
    if bad:
        raise ValueError(
            f"column {loss_col!r} has {len(bad)} negative or non-finite losses for representatives "
            f"(e.g. ids {', '.join(map(str, bad[:3]))})"
        )
    if len({r[id_col] for r in rows}) != len(rows):
        raise ValueError(f"the loss table repeats ids of representatives in column {id_col!r}")
    return sorted(rows, key=lambda r: r[CLUSTER_COL])


def representative_costs(
    df: DataFrame,
    id_col: str,
    vector_col: str,
    centers: np.ndarray,
    rep_vectors: np.ndarray,
    rep_clusters: np.ndarray,
    z: int,
) -> DataFrame:
    """(id, cluster_id, cost = ||x - r_a(x)||^z) for every valid row, in one mapInArrow pass.

    a(x) is the nearest center among the clusters that have a representative (the others are empty
    in the data the representatives were taken from).
    """
    centers_with_rep = centers[rep_clusters]
    dim = centers.shape[1]
    work = df.select(F.col(id_col), vector_values(df, vector_col).alias(_VECTOR_TMP))
    schema = StructType(
        [df.schema[id_col], StructField(CLUSTER_COL, IntegerType()), StructField(COST_COL, DoubleType())]
    )

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            matrix, valid = batch_matrix(batch.column(_VECTOR_TMP), dim)
            index, _ = kernels.nearest_centers(matrix[valid], centers_with_rep, z)
            diff = matrix[valid].astype(np.float64) - rep_vectors[index]
            cost = np.einsum("ij,ij->i", diff, diff)
            cost = np.sqrt(cost) if z == 1 else cost
            ids = batch.column(id_col).filter(pa.array(valid))
            yield pa.RecordBatch.from_arrays(
                [ids, pa.array(rep_clusters[index].astype(np.int32)), pa.array(cost)],
                schema=pa.schema(
                    [
                        pa.field(id_col, ids.type),
                        pa.field(CLUSTER_COL, pa.int32()),
                        pa.field(COST_COL, pa.float64()),
                    ]
                ),
            )

    return work.mapInArrow(score, schema)


def with_input_columns(
    reps: DataFrame, source: DataFrame, id_col: str, drop_columns: tuple[str, ...] = ()
) -> DataFrame:
    """The representatives (cluster_id, id, distance) with the input's other columns, so a user can
    score them without a join."""
    carried = source.drop(*drop_columns, *(c for c in reps.columns if c != id_col))
    return reps.join(carried, on=id_col, how="inner").orderBy(CLUSTER_COL)


def representative_vectors(
    source: DataFrame, id_col: str, vector_col: str, reps: list, dim: int
) -> np.ndarray:
    """The representatives' embeddings, in the order of ``reps`` (k rows to the driver)."""
    ids = source.sparkSession.createDataFrame(
        [(r[id_col],) for r in reps], StructType([StructField(id_col, source.schema[id_col].dataType)])
    )
    rows = (
        source.join(F.broadcast(ids), on=id_col, how="inner")
        .select(F.col(id_col), vector_values(source, vector_col).cast("array<double>").alias(_VECTOR_TMP))
        .collect()
    )
    by_id = {row[id_col]: row[_VECTOR_TMP] for row in rows}
    return np.array([by_id[r[id_col]] for r in reps], dtype=np.float64).reshape(len(reps), dim)
