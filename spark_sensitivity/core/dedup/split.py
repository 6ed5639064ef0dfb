"""Giant clusters split before near-duplicates are searched (``dedup``'s second-level k-means).

A cluster of more than ``max_cluster_rows`` rows would make one task hold all its kept rows and
compare them all pairwise. It is split by a k-means of its own into parts of about half the limit:
fitted on the executors, one task per giant cluster, on about ``SPLIT_ROWS_PER_PART`` sampled rows
per part (chosen by a hash of (id, seed), so the split does not depend on partitioning); the driver
gets only the part centers. The parts are fitted on, and rows assigned by, the DIRECTION of a row's
offset from the cluster's mean (the highest cosine to a part's direction): on rows as they are, a
cluster that is nearly isotropic noise around its mean in many dimensions gives k-means a few
singleton parts and one that takes almost every row, since the shared mean dominates every
distance; offsets from the mean are spread evenly in all directions, so the parts are too. Near-duplicates that land in two parts are not compared by the first stage; with
``neighbors=2`` a row also meets its second-nearest part, which finds most of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

from spark_sensitivity.core.dedup.kernel import normalize_rows
from spark_sensitivity.core.dedup.search import GROUP_COL, NEIGHBOR_COL, NEIGHBOR_GROUP_COL, SUB_BITS
from spark_sensitivity.core.kmeans import localkmeans
from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL
from spark_sensitivity.core.sampling import rowrandom

# Rows sampled per part for a giant cluster's second k-means, and the part size aimed at (half the
# limit, so k-means' uneven parts still stay near the limit).
SPLIT_ROWS_PER_PART = 64
SPLIT_TARGET_SHARE = 0.5
_HASH = "__ss_split_hash"


@dataclass(frozen=True)
class Parts:
    """A split cluster: the sampled rows' mean (``offset``), each part's direction (unit vectors in
    offset space: a row joins the part of highest cosine) and its center among the rows (the mean
    of its sampled unit rows: distances to it compare with distances to top-level centers)."""

    offset: np.ndarray
    directions: np.ndarray
    centers: np.ndarray

    def nearest(self, unit: np.ndarray) -> np.ndarray:
        return np.argmax((unit - self.offset) @ self.directions.T, axis=1)


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
) -> dict[int, Parts]:
    """A second k-means inside each cluster of ``parts`` (cluster -> number of parts), fitted on the
        executors, one task per cluster, on about SPLIT_ROWS_PER_PART rows per part chosen by a hash of
        (id, seed); returns each cluster's part centers. ``kmeans`` gives max_iter, tol, init_mode,
        init_steps and seed (a ``cluster.KMeansSettings``). The driver gets only each cluster's
    :class:`Parts`."""
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
            StructField("direction", ArrayType(DoubleType())),
            StructField("center", ArrayType(DoubleType())),
            StructField("offset", ArrayType(DoubleType())),
        ]
    )

    def fit_parts(table: pa.Table) -> pa.Table:
        table = table.sort_by(_HASH)  # a fixed order, whatever the partitioning
        cluster_id = int(table.column(CLUSTER_COL)[0].as_py())
        matrix, valid = batch_matrix(table.column(vector_col).combine_chunks(), dim)
        unit = normalize_rows(matrix[valid]).astype(np.float64)
        offset = unit.mean(axis=0)
        spread = normalize_rows(unit - offset).astype(np.float32)
        k = min(parts[cluster_id], localkmeans.count_distinct_rows(spread, parts[cluster_id]))
        directions = spread[:1].astype(np.float64)
        if k > 1:
            directions, _, _ = localkmeans.fit(
                spread, k, kmeans.max_iter, kmeans.tol, kmeans.init_mode, kmeans.init_steps, kmeans.seed
            )
        found = Parts(offset, normalize_rows(np.asarray(directions, dtype=np.float64)), offset[None, :])
        member = found.nearest(unit)
        centers = np.array(
            [unit[member == p].mean(axis=0) if (member == p).any() else offset for p in range(k)]
        )
        count = len(centers)

        def rows_of(values: np.ndarray) -> pa.Array:
            flat = pa.array(np.asarray(values, dtype=np.float64).ravel())
            return pa.ListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int32) * dim), flat)

        return pa.table(
            {
                CLUSTER_COL: pa.array(np.full(count, cluster_id, np.int32)),
                "part": pa.array(np.arange(count, dtype=np.int32)),
                "direction": rows_of(found.directions),
                "center": rows_of(centers),
                "offset": rows_of(np.repeat(offset[None, :], count, axis=0)),
            }
        )

    found: dict[int, dict[int, Any]] = {}
    for row in sample.groupBy(CLUSTER_COL).applyInArrow(fit_parts, schema).collect():
        found.setdefault(row[CLUSTER_COL], {})[row["part"]] = row
    return {
        j: Parts(
            np.array(rows[0]["offset"]),
            np.array([rows[i]["direction"] for i in sorted(rows)]),
            np.array([rows[i]["center"] for i in sorted(rows)]),
        )
        for j, rows in found.items()
    }


def regroup(assigned: DataFrame, vector_col: str, centers: np.ndarray, parts: dict[int, Parts]) -> DataFrame:
    """The rows of :func:`assign_neighbors` with the groups of split clusters: a row of a split
    cluster goes to the group of its part (:meth:`Parts.nearest`); a row's neighbouring group is the
    nearer of its second-nearest cluster's group (that cluster's part when it was split) and, in a
    split cluster, its second part."""
    dim = centers.shape[1]
    centers64 = np.asarray(centers, dtype=np.float64)

    def nearest_part(unit: np.ndarray, cluster_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's part of ``cluster_id`` and the squared distance to that part's center
        (comparable with the distances to the top-level centers)."""
        index = parts[cluster_id].nearest(unit)
        return index, localkmeans.squared_distances(unit, parts[cluster_id].centers, index)

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
                if len(parts[j].centers) > 1:
                    second, distance = _second_nearest(unit[rows], parts[j], index)
                    closer = distance < near_distance[rows]
                    near_group[rows[closer]] = (j << SUB_BITS) | second[closer]
            columns = list(batch.columns)
            columns[names.index(GROUP_COL)] = pa.array(group, pa.int64(), mask=invalid)
            columns[names.index(NEIGHBOR_GROUP_COL)] = pa.array(near_group, pa.int64(), mask=lonely)
            yield pa.RecordBatch.from_arrays(columns, schema=batch.schema)

    return assigned.mapInArrow(annotate, assigned.schema)


def _second_nearest(unit: np.ndarray, parts: Parts, nearest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's second part (the second-highest cosine of its offset to the parts' directions)
    and the squared distance to that part's center (a rows x parts matrix, never rows x parts x d)."""
    cosines = (unit - parts.offset) @ parts.directions.T
    cosines[np.arange(len(unit)), nearest] = -np.inf
    second = cosines.argmax(axis=1)
    return second, localkmeans.squared_distances(unit, parts.centers, second)


def _ints(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """An int Arrow column as int64 (nulls as 0) and its null mask."""
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    return column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), nulls
