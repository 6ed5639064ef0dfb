"""Giant clusters split before near-duplicates are searched (``dedup``'s second-level k-means).

A cluster of more than ``max_cluster_rows`` rows would make one task hold all its kept rows and
compare them all pairwise. It is split by a k-means of its own into parts of about half the limit:
fitted on the executors, one task per giant cluster, on about ``SPLIT_ROWS_PER_PART`` sampled rows
per part (chosen by a hash of (id, seed), so the split does not depend on partitioning); the driver
gets only the part centers. Each row of a split cluster then belongs to the group of its nearest
part. Near-duplicates that land in two parts are not compared by the first stage; with
``neighbors=2`` a row also meets its second-nearest part, which finds most of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

from spark_sensitivity.core import localkmeans, rowrandom
from spark_sensitivity.core.batches import batch_matrix
from spark_sensitivity.core.cluster import CLUSTER_COL
from spark_sensitivity.core.dedup import GROUP_COL, NEIGHBOR_COL, NEIGHBOR_GROUP_COL, SUB_BITS
from spark_sensitivity.core.dedupkernel import normalize_rows

# Rows sampled per part for a giant cluster's second k-means, and the part size aimed at (half the
# limit, so k-means' uneven parts still stay near the limit).
SPLIT_ROWS_PER_PART = 64
SPLIT_TARGET_SHARE = 0.5
_HASH = "__ss_split_hash"


def split_plan(sizes: dict[int, int], max_cluster_rows: int) -> dict[int, int]:
    """The clusters above the limit and how many parts each is split into (parts of about
    SPLIT_TARGET_SHARE * limit rows on average)."""
    target = max(1, int(max_cluster_rows * SPLIT_TARGET_SHARE))
    return {j: -(-size // target) for j, size in sorted(sizes.items()) if size > max_cluster_rows}


def split_giant_clusters(
    assigned: DataFrame,
    id_col: str,
    vector_col: str,
    dim: int,
    sizes: dict[int, int],
    parts: dict[int, int],
    kmeans: Any,
) -> dict[int, np.ndarray]:
    """A second k-means inside each cluster of ``parts`` (cluster -> number of parts), fitted on the
    executors, one task per cluster, on about SPLIT_ROWS_PER_PART rows per part chosen by a hash of
    (id, seed); returns each cluster's part centers. ``kmeans`` gives max_iter, tol, init_mode,
    init_steps and seed (a ``cluster.KMeansSettings``). The driver gets only the part centers."""
    fractions = {j: min(1.0, SPLIT_ROWS_PER_PART * n / sizes[j]) for j, n in parts.items()}
    fraction = F.create_map(*[F.lit(v) for j in sorted(fractions) for v in (j, fractions[j])])
    sample = assigned.where(F.col(CLUSTER_COL).isin(sorted(parts))).where(
        rowrandom.jvm_uniform(id_col, kmeans.seed, rowrandom.STREAM_DEDUP_SPLIT)
        < F.element_at(fraction, F.col(CLUSTER_COL))
    )
    sample = sample.select(CLUSTER_COL, rowrandom.row_hash(id_col, kmeans.seed).alias(_HASH), vector_col)
    schema = StructType(
        [
            StructField(CLUSTER_COL, IntegerType()),
            StructField("part", IntegerType()),
            StructField("center", ArrayType(DoubleType())),
        ]
    )

    def fit_parts(table: pa.Table) -> pa.Table:
        table = table.sort_by(_HASH)  # a fixed order, whatever the partitioning
        cluster_id = int(table.column(CLUSTER_COL)[0].as_py())
        matrix, valid = batch_matrix(table.column(vector_col).combine_chunks(), dim)
        unit = normalize_rows(matrix[valid]).astype(np.float32)
        k = min(parts[cluster_id], localkmeans.count_distinct_rows(unit, parts[cluster_id]))
        centers = unit[:1].astype(np.float64)
        if k > 1:
            centers, _, _ = localkmeans.fit(
                unit, k, kmeans.max_iter, kmeans.tol, kmeans.init_mode, kmeans.init_steps, kmeans.seed
            )
        flat = pa.array(np.asarray(centers, dtype=np.float64).ravel())
        return pa.table(
            {
                CLUSTER_COL: pa.array(np.full(len(centers), cluster_id, np.int32)),
                "part": pa.array(np.arange(len(centers), dtype=np.int32)),
                "center": pa.ListArray.from_arrays(
                    pa.array(np.arange(len(centers) + 1, dtype=np.int32) * dim), flat
                ),
            }
        )

    found: dict[int, dict[int, np.ndarray]] = {}
    for row in sample.groupBy(CLUSTER_COL).applyInArrow(fit_parts, schema).collect():
        found.setdefault(row[CLUSTER_COL], {})[row["part"]] = np.array(row["center"])
    return {j: np.array([rows[i] for i in sorted(rows)]) for j, rows in found.items()}


def regroup(
    assigned: DataFrame, vector_col: str, centers: np.ndarray, part_centers: dict[int, np.ndarray]
) -> DataFrame:
    """The rows of :func:`assign_neighbors` with the groups of split clusters: a row of a split
    cluster goes to the group of its nearest part; a row's neighbouring group is the nearer of its
    second-nearest cluster's group (that cluster's nearest part when it was split) and, in a split
    cluster, its second-nearest part."""
    dim = centers.shape[1]
    centers64 = np.asarray(centers, dtype=np.float64)
    parts = {j: np.asarray(c, dtype=np.float64) for j, c in part_centers.items()}

    def nearest_part(unit: np.ndarray, cluster_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's nearest part of ``cluster_id`` and the squared distance to it."""
        index = localkmeans.nearest(unit, parts[cluster_id].astype(np.float32))
        return index, localkmeans.squared_distances(unit, parts[cluster_id], index)

    def annotate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            names = batch.schema.names
            cluster, invalid = _ints(batch.column(names.index(CLUSTER_COL)))
            neighbor, lonely = _ints(batch.column(names.index(NEIGHBOR_COL)))
            group = cluster << SUB_BITS
            near_group = neighbor << SUB_BITS
            unit = normalize_rows(batch_matrix(batch.column(names.index(vector_col)), dim)[0])
            near_distance = np.full(len(unit), np.inf)
            rows = np.flatnonzero(~lonely)
            near_distance[rows] = localkmeans.squared_distances(unit[rows], centers64, neighbor[rows])
            for j in parts:
                rows = np.flatnonzero((neighbor == j) & ~lonely)
                if rows.size:
                    index, near_distance[rows] = nearest_part(unit[rows], j)
                    near_group[rows] = (j << SUB_BITS) | index
            for j in parts:
                rows = np.flatnonzero((cluster == j) & ~invalid)
                if not rows.size:
                    continue
                index, _ = nearest_part(unit[rows], j)
                group[rows] = (j << SUB_BITS) | index
                if len(parts[j]) > 1:
                    second, distance = _second_nearest(unit[rows], parts[j], index)
                    closer = distance < near_distance[rows]
                    near_group[rows[closer]] = (j << SUB_BITS) | second[closer]
            columns = list(batch.columns)
            columns[names.index(GROUP_COL)] = pa.array(group, pa.int64(), mask=invalid)
            columns[names.index(NEIGHBOR_GROUP_COL)] = pa.array(near_group, pa.int64(), mask=lonely)
            yield pa.RecordBatch.from_arrays(columns, schema=batch.schema)

    return assigned.mapInArrow(annotate, assigned.schema)


def _second_nearest(
    unit: np.ndarray, centers: np.ndarray, nearest: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's second-nearest center and its squared distance (float64 products: a rows x parts
    matrix, never rows x parts x d)."""
    distances = (
        np.einsum("ij,ij->i", unit, unit)[:, None]
        - 2.0 * unit @ centers.T
        + np.einsum("ij,ij->i", centers, centers)[None, :]
    )
    distances[np.arange(len(unit)), nearest] = np.inf
    second = distances.argmin(axis=1)
    return second, np.maximum(distances[np.arange(len(unit)), second], 0.0)


def _ints(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """An int Arrow column as int64 (nulls as 0) and its null mask."""
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    return column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), nulls
