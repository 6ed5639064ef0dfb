"""Rows assigned to fixed centers: the checks on ids and embeddings, and the one assignment pass that
fitting, sampling new data, loss-aware selection and refresh share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans import cluster
from spark_sensitivity.core.kmeans.batches import DirectScan
from spark_sensitivity.core.sampling import score


def check_ids(dataset: DataFrame, id_col: str, unique: bool) -> int:
    """Fails on null ids, and on repeated ids when asked: per-row randomness and the join key on them.
    Returns the number of rows, counted in the same pass.

    Runs before k-means so bad ids cost one pass over the id column, not a whole fit: a scan when
    only nulls are checked, else one group-by that finds nulls and repeats together.
    """
    column = F.col(id_col)
    if not unique:
        rows, nulls = dataset.agg(F.count(F.lit(1)), F.count_if(column.isNull())).first()
        if nulls:
            raise _null_ids(id_col, nulls)
        return int(rows)
    per_id = dataset.groupBy(id_col).count()
    is_bad = column.isNull() | (F.col("count") > 1)
    rows, bad_groups = per_id.agg(F.sum("count"), F.count_if(is_bad)).first()
    if not bad_groups:
        return int(rows or 0)
    bad = per_id.where(is_bad)
    null_group = bad.where(column.isNull()).first()
    if null_group is not None:
        raise _null_ids(id_col, null_group["count"])
    duplicated = bad.where(column.isNotNull())
    ids = ", ".join(f"{row[id_col]} ({row['count']} rows)" for row in duplicated.limit(3).collect())
    raise ValueError(
        f"id column {id_col!r} has {duplicated.count()} duplicated values (e.g. {ids}); ids must be unique"
    )


def _null_ids(id_col: str, count: int) -> ValueError:
    return ValueError(f"id column {id_col!r} has {count} null values; ids must be unique and non-null")


def check_rows(
    assigned: DataFrame,
    found: score.StatsPass,
    id_col: str,
    vector_col: str,
    policy: str,
    dim: int,
) -> None:
    """Fails on invalid embeddings unless the policy is 'skip'; the message names the length ``dim``
    every embedding must have (the centers')."""
    if found.invalid_vectors and policy == "fail":
        examples = [
            str(row[0])
            for row in assigned.where(F.col(cluster.CLUSTER_COL).isNull()).select(id_col).limit(3).collect()
        ]
        raise ValueError(
            f"embedding column {vector_col!r} has {found.invalid_vectors} rows that are null, of the "
            f"wrong length or not finite (e.g. ids {', '.join(examples)}); each must hold {dim} finite "
            "numbers, as the centers do; fix them, or skip them with --on-invalid skip (onInvalid='skip')"
        )


@dataclass(frozen=True)
class AssignedRows:
    """Rows and their assignment: ``assigned`` holds the id, ``cluster_id`` and ``cost`` of the valid
    rows, ``stats`` their per-cluster statistics.

    ``cache`` is the persisted assignment pass under ``assigned`` that :meth:`release` frees; None
    when it belongs to someone else (a fitted model's training summary).
    """

    rows: DataFrame
    assigned: DataFrame
    stats: score.ClusterStats
    invalid_rows: int
    id_col: str
    cache: DataFrame | None = None

    def release(self) -> None:
        if self.cache is not None:
            self.cache.unpersist()


def assign_rows(
    rows: DataFrame,
    id_col: str,
    vector_col: str,
    centers: np.ndarray,
    z: int,
    on_invalid: str,
    accelerator: str = "auto",
    scan: DirectScan | None = None,
) -> AssignedRows:
    """One assignment pass (persisted) and one reduce: every row's nearest center and cost, the
    clusters' statistics, and the invalid rows left out, or a ValueError for them when
    ``on_invalid`` is 'fail'. Only the id travels with the assignment, never the embedding.
    ``scan``: the id and embedding columns of ``rows`` read by the tasks themselves."""
    cache = cluster.assign(
        rows.select(id_col, vector_col),
        vector_col,
        centers,
        z,
        keep_vector=False,
        accelerator=accelerator,
        scan=scan,
    ).persist()
    found = score.cluster_stats(cache, len(centers))
    try:
        check_rows(cache, found, id_col, vector_col, on_invalid, centers.shape[1])
    except ValueError:
        cache.unpersist()
        raise
    valid = cache.where(F.col(cluster.CLUSTER_COL).isNotNull())
    return AssignedRows(rows, valid, found.stats, found.invalid_vectors, id_col, cache)
