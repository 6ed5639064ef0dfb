"""Semantic deduplication on the executors (SemDeDup's rule, in the project's k-means clusters).

Two rows of one cluster are near-duplicates when their cosine similarity is at least 1 - eps. The
rows of each cluster are put in a fixed order and decided greedily (``dedupkernel``): a row is removed
when it is that similar to an earlier *kept* row, and ``duplicate_of`` names the most similar one.
The order is SemDeDup's: by distance to the cluster's center, farthest first (``keep='farthest'``,
SemDeDup's default, which keeps the least prototypical row of each group) or nearest first, ties
broken by a hash of (id, seed) and then the id. Everything is a function of the rows and the centers,
so the result does not depend on how the input is partitioned.

How it runs: one assignment pass (nearest and second-nearest center of the unit vector), a shuffle
by group with a sort inside each partition, then ``mapInArrow`` streams each group's rows in order
through the kernel, block by block. Only the removed rows come out. A group is a cluster, or, for a
cluster of more than ``max_cluster_rows`` rows, one of the parts a second k-means splits it into
(fitted on the executors, one task per giant cluster, on about 64 sampled rows per part). One task
holds the kept rows of one group (at most about ``max_cluster_rows``) plus one block of candidate
pairs, and the comparisons are quadratic in the group's size, never in the giant cluster's. Rows in
two parts of a split cluster are not compared (a miss the split causes) unless ``neighbors=2``.

Rows whose duplicate sits in another group are missed, as in SemDeDup. With ``neighbors=2`` a
second pass compares every kept row with the kept rows of its neighbouring group too (the nearer of
the second-nearest cluster's group and, in a split cluster, the second-nearest part); of a
near-duplicate pair found that way the row of the higher group is removed, with
``cross_cluster = true``. Its ``duplicate_of`` may then itself be removed by the same pass (a chain
that descends in group and ends at a kept row).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StructField,
    StructType,
)

from spark_sensitivity.core.dedup.kernel import (
    DEFAULT_BLOCK_ROWS,
    ClusterDeduper,
    best_per_row,
    close_pairs,
    normalize_rows,
)
from spark_sensitivity.core.kmeans import localkmeans
from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.core.vectors import vector_values
from spark_sensitivity.settings import DEFAULT_MAX_CLUSTER_ROWS, DedupFields, SettingError, settings_of

DUPLICATE_OF_COL = "duplicate_of"
SIMILARITY_COL = "similarity"
CROSS_COL = "cross_cluster"
NEIGHBOR_COL = "neighbor_cluster_id"
DISTANCE_COL = "center_distance"
GROUP_COL = "__ss_group"
NEIGHBOR_GROUP_COL = "__ss_neighbor_group"
# A group id is cluster << SUB_BITS | part: the parts of a split cluster sort next to each other, and
# the cluster is the group shifted back (parts per cluster stay far below 2^20).
SUB_BITS = 20
_ORDER_HASH = "__ss_dedup_hash"
_GUEST = "__ss_guest"
_HOME = "__ss_home"


@dataclass(frozen=True)
class DedupSettings:
    eps: float
    keep: str = "farthest"
    neighbors: int = 1
    block_rows: int = DEFAULT_BLOCK_ROWS
    seed: int = 0
    max_cluster_rows: int = DEFAULT_MAX_CLUSTER_ROWS

    @property
    def threshold(self) -> float:
        return 1.0 - self.eps

    @classmethod
    def from_config(cls, config: Any) -> DedupSettings:
        """The dedup settings of a command's config (every declared ``dedup_*`` field, and the seed),
        checked as declared."""
        values = {name.removeprefix("dedup_"): getattr(config, name) for name in settings_of(DedupFields)}
        settings = cls(**values, seed=config.seed)
        settings.validate()
        return settings

    def validate(self) -> None:
        """SettingError naming the first dedup setting whose value the declaration does not allow."""
        for name, declared in settings_of(DedupFields).items():
            value = getattr(self, name.removeprefix("dedup_"))
            problem = "is required" if value is None else declared.problem(value)
            if problem is not None:
                raise SettingError(f"{name} {problem}", name)


def unit_rows(df: DataFrame, id_col: str, vector_col: str) -> DataFrame:
    """id and the embedding scaled to unit length (array<double>), for the k-means fit; a zero
    embedding stays zero, and nulls, NaN and infinities stay as they are (the fit sample drops them).

    Scaled in numpy inside the Arrow batches: a Spark expression that divides each element by an
    aggregate over the array re-evaluates the aggregate per element (d^2 work per row: 13 minutes
    for 40k x 384 where this takes seconds)."""
    values = vector_values(df, vector_col)
    work = df.select(F.col(id_col), values.alias(vector_col))
    schema = StructType([work.schema[id_col], StructField(vector_col, ArrayType(DoubleType()))])
    arrow_schema = pa.schema(
        [pa.field(id_col, _arrow_type(work, id_col)), pa.field(vector_col, pa.list_(pa.float64()))]
    )

    def scale(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield pa.RecordBatch.from_arrays(
                [batch.column(0), unit_lists(batch.column(1))], schema=arrow_schema
            )

    return work.mapInArrow(scale, schema)


def unit_lists(values: pa.Array) -> pa.Array:
    """An Arrow list column of floats scaled row by row to unit length (list<double>), whatever each
    row's length; null rows stay null, a zero row stays zero."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    offsets = values.offsets.to_numpy()
    part = values.values.to_numpy(zero_copy_only=False).astype(np.float64)[offsets[0] : offsets[-1]]
    rows = np.repeat(np.arange(len(values)), np.diff(offsets))
    norms = np.sqrt(np.bincount(rows, weights=part * part, minlength=len(values)))
    unit = part / np.where(norms > 0, norms, 1.0)[rows]
    return pa.ListArray.from_arrays(
        pa.array(offsets - offsets[0], pa.int32()), pa.array(unit, pa.float64()), mask=values.is_null()
    )


def assign_neighbors(df: DataFrame, id_col: str, vector_col: str, centers: np.ndarray) -> DataFrame:
    """id, the embedding (array), cluster_id and neighbor_cluster_id (nearest and second-nearest
    center of the unit vector), center_distance (exact float64 squared distance), and the groups the
    rows are compared in (each cluster whole until :func:`split_giant_clusters` and :func:`regroup`
    split it), in one pass. Rows with an invalid embedding get null clusters."""
    values = vector_values(df, vector_col)
    work = df.select(F.col(id_col), values.alias(vector_col))
    dim = centers.shape[1]
    centers32 = centers.astype(np.float32)
    has_neighbor = len(centers) > 1
    schema = StructType(
        [
            *work.schema.fields,
            StructField(CLUSTER_COL, IntegerType()),
            StructField(NEIGHBOR_COL, IntegerType()),
            StructField(DISTANCE_COL, DoubleType()),
            StructField(GROUP_COL, LongType()),
            StructField(NEIGHBOR_GROUP_COL, LongType()),
        ]
    )

    def annotate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            matrix, valid = batch_matrix(batch.column(1), dim)
            unit = normalize_rows(matrix)
            nearest = localkmeans.nearest(unit, centers32)
            distance = localkmeans.squared_distances(unit, centers, nearest)
            second = np.zeros_like(nearest)
            if has_neighbor:
                scores = -2.0 * unit.astype(np.float32) @ centers32.T + np.einsum(
                    "ij,ij->i", centers32, centers32
                )
                scores[np.arange(len(unit)), nearest] = np.inf
                second = scores.argmin(axis=1).astype(np.int32)
            invalid = ~valid
            no_neighbor = invalid | (not has_neighbor)
            yield (
                batch.append_column(CLUSTER_COL, pa.array(nearest, pa.int32(), mask=invalid))
                .append_column(NEIGHBOR_COL, pa.array(second, pa.int32(), mask=no_neighbor))
                .append_column(DISTANCE_COL, pa.array(distance, pa.float64(), mask=invalid))
                .append_column(GROUP_COL, pa.array(nearest.astype(np.int64) << SUB_BITS, mask=invalid))
                .append_column(
                    NEIGHBOR_GROUP_COL, pa.array(second.astype(np.int64) << SUB_BITS, mask=no_neighbor)
                )
            )

    return work.mapInArrow(annotate, schema)


def _order(settings: DedupSettings, id_col: str) -> list[Column]:
    distance = F.col(DISTANCE_COL)
    return [
        F.col(GROUP_COL),
        distance.desc() if settings.keep == "farthest" else distance.asc(),
        F.col(_ORDER_HASH),
        F.col(id_col),
    ]


def duplicates_schema(id_field: StructField) -> StructType:
    return StructType(
        [
            id_field,
            StructField(DUPLICATE_OF_COL, id_field.dataType),
            StructField(SIMILARITY_COL, DoubleType()),
            StructField(CLUSTER_COL, IntegerType()),
            StructField(CROSS_COL, BooleanType()),
        ]
    )


class _GroupStream:
    """Cuts a partition's sorted rows into per-group blocks of ``block_rows`` (positions counted
    from the group's first row, so blocks never depend on Arrow batch boundaries)."""

    def __init__(self, settings: DedupSettings, dim: int, schema: pa.Schema):
        self.settings, self.dim, self.schema = settings, dim, schema
        self.group: int | None = None
        self.pending_ids: list[pa.Array] = []
        self.pending_vectors: list[np.ndarray] = []
        self.kept_ids: list[pa.Array] = []
        self.deduper: ClusterDeduper | None = None

    def _pending(self) -> int:
        return sum(len(v) for v in self.pending_vectors)

    def push(self, group: int, ids: pa.Array, vectors: np.ndarray) -> Iterator[pa.RecordBatch]:
        if group != self.group:
            yield from self.flush()
            self.group, self.kept_ids = group, []
            self.deduper = ClusterDeduper(self.dim, self.settings.threshold, self.settings.block_rows)
        start = 0
        while start < len(vectors):
            room = self.settings.block_rows - self._pending()
            self.pending_ids.append(ids.slice(start, room))
            self.pending_vectors.append(vectors[start : start + room])
            start += room
            if self._pending() == self.settings.block_rows:
                yield from self._decide()

    def flush(self) -> Iterator[pa.RecordBatch]:
        if self._pending():
            yield from self._decide()

    def _decide(self) -> Iterator[pa.RecordBatch]:
        ids = pa.concat_arrays(self.pending_ids)
        vectors = np.concatenate(self.pending_vectors)
        self.pending_ids, self.pending_vectors = [], []
        result = self.deduper.add(vectors)
        self.kept_ids.append(ids.filter(pa.array(~result.removed)))
        removed = np.flatnonzero(result.removed)
        if removed.size == 0:
            return
        kept = pa.chunked_array(self.kept_ids, ids.type)  # taken from, never copied whole
        yield pa.RecordBatch.from_arrays(
            [
                ids.take(pa.array(removed)),
                kept.take(pa.array(result.match[removed])).combine_chunks(),
                pa.array(result.similarity[removed], pa.float64()),
                pa.array(np.full(removed.size, self.group >> SUB_BITS, np.int32)),
                pa.array(np.zeros(removed.size, dtype=bool)),
            ],
            schema=self.schema,
        )


def within_clusters(
    assigned: DataFrame, id_col: str, vector_col: str, dim: int, settings: DedupSettings
) -> DataFrame:
    """Stage 1: the removed rows of every group (id, duplicate_of, similarity, cluster_id,
    cross_cluster = false), from rows made by :func:`assign_neighbors` (and :func:`regroup`)."""
    id_field = assigned.schema[id_col]
    schema = duplicates_schema(id_field)
    arrow_schema = pa.schema(
        [
            pa.field(id_col, _arrow_type(assigned, id_col)),
            pa.field(DUPLICATE_OF_COL, _arrow_type(assigned, id_col)),
            pa.field(SIMILARITY_COL, pa.float64()),
            pa.field(CLUSTER_COL, pa.int32()),
            pa.field(CROSS_COL, pa.bool_()),
        ]
    )
    ordered = _sorted_by_cluster(
        assigned.where(F.col(CLUSTER_COL).isNotNull()).select(
            id_col,
            vector_col,
            GROUP_COL,
            DISTANCE_COL,
            rowrandom.row_hash(id_col, settings.seed).alias(_ORDER_HASH),
        ),
        GROUP_COL,
        _order(settings, id_col),
    ).select(id_col, vector_col, GROUP_COL)

    def decide(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        stream = _GroupStream(settings, dim, arrow_schema)
        for batch in batches:
            groups = batch.column(2).to_numpy()
            vectors, _ = batch_matrix(batch.column(1), dim)
            ids = batch.column(0)
            for start, stop in _runs(groups):
                yield from stream.push(
                    int(groups[start]), ids.slice(start, stop - start), vectors[start:stop]
                )
        yield from stream.flush()

    return ordered.mapInArrow(decide, schema)


def across_neighbors(
    kept: DataFrame, id_col: str, vector_col: str, dim: int, settings: DedupSettings
) -> DataFrame:
    """Stage 2 (neighbors=2): every kept row is also compared with the kept rows of its
    neighbouring group; of each near-duplicate pair found, the row of the higher group is removed
    (cross_cluster = true), naming the most similar row of the lower group."""
    members = kept.select(
        id_col, vector_col, F.col(GROUP_COL).alias(_HOME), F.col(GROUP_COL), F.lit(False).alias(_GUEST)
    )
    guests = kept.where(F.col(NEIGHBOR_GROUP_COL).isNotNull()).select(
        id_col,
        vector_col,
        F.col(GROUP_COL).alias(_HOME),
        F.col(NEIGHBOR_GROUP_COL).alias(GROUP_COL),
        F.lit(True).alias(_GUEST),
    )
    both = members.unionByName(guests).withColumn(_ORDER_HASH, rowrandom.row_hash(id_col, settings.seed))
    ordered = _sorted_by_cluster(
        both, GROUP_COL, [F.col(GROUP_COL), F.col(_GUEST), F.col(_ORDER_HASH), F.col(id_col)]
    )
    edge_schema = StructType(
        [
            StructField("guest", kept.schema[id_col].dataType),
            StructField("guest_group", LongType()),
            StructField("member", kept.schema[id_col].dataType),
            StructField("member_group", LongType()),
            StructField(SIMILARITY_COL, DoubleType()),
        ]
    )
    arrow_edges = pa.schema([pa.field(f.name, to_arrow_type(f.dataType)) for f in edge_schema.fields])

    def match(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        group, member_ids, member_rows, m64, m32 = None, [], [], None, None
        for batch in batches:
            groups = batch.column(GROUP_COL).to_numpy()
            guest = batch.column(_GUEST).to_numpy(zero_copy_only=False)
            vectors, _ = batch_matrix(batch.column(vector_col), dim)
            for start, stop in _runs(groups * 2 + guest):
                if groups[start] != group:
                    group, member_ids, member_rows, m64 = int(groups[start]), [], [], None
                ids = batch.column(id_col).slice(start, stop - start)
                unit = normalize_rows(vectors[start:stop])
                if not guest[start]:
                    member_ids.append(ids)
                    member_rows.append(unit)
                    continue
                if not member_rows:
                    continue
                if m64 is None:
                    m64 = np.concatenate(member_rows)
                    m32, all_members = m64.astype(np.float32), pa.concat_arrays(member_ids)
                homes = batch.column(_HOME).slice(start, stop - start)
                for g in range(0, len(unit), settings.block_rows):
                    g64 = unit[g : g + settings.block_rows]
                    hit, best, where = _best_members(g64, m32, m64, settings)
                    if hit.size:
                        yield pa.RecordBatch.from_arrays(
                            [
                                ids.slice(g, len(g64)).take(pa.array(hit)),
                                homes.slice(g, len(g64)).take(pa.array(hit)),
                                all_members.take(pa.array(where[hit])),
                                pa.array(np.full(hit.size, group, np.int64)),
                                pa.array(best[hit]),
                            ],
                            schema=arrow_edges,
                        )

    return _cross_removals(ordered.mapInArrow(match, edge_schema), id_col)


def _best_members(
    g64: np.ndarray, m32: np.ndarray, m64: np.ndarray, settings: DedupSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a block of guest rows, the most similar member row of the cluster (by blocks of members):
    the guests with one at or above the threshold, and every guest's best similarity and member."""
    g32, step = g64.astype(np.float32), settings.block_rows
    best, where = np.full(len(g64), -np.inf), np.zeros(len(g64), dtype=np.int64)
    for m in range(0, len(m64), step):
        pairs = close_pairs(g32, g64, m32[m : m + step], m64[m : m + step], settings.threshold)
        rows, cols, sims = best_per_row(*pairs)
        better = sims > best[rows]
        best[rows[better]], where[rows[better]] = sims[better], m + cols[better]
    return np.flatnonzero(best >= settings.threshold), best, where


def _cross_removals(edges: DataFrame, id_col: str) -> DataFrame:
    """Of each near-duplicate pair across two groups, the row of the higher group is removed,
    naming the most similar row of the lowest group it meets."""
    guest_loses = F.col("guest_group") > F.col("member_group")
    removals = edges.select(
        F.when(guest_loses, F.col("guest")).otherwise(F.col("member")).alias(id_col),
        F.when(guest_loses, F.col("guest_group")).otherwise(F.col("member_group")).alias(GROUP_COL),
        F.struct(
            F.col(SIMILARITY_COL),
            (-F.when(guest_loses, F.col("member_group")).otherwise(F.col("guest_group"))).alias("lower"),
            F.when(guest_loses, F.col("member")).otherwise(F.col("guest")).alias("keeper"),
        ).alias("edge"),
    )
    best_edge = removals.groupBy(id_col, GROUP_COL).agg(F.max("edge").alias("edge"))
    return best_edge.select(
        F.col(id_col),
        F.col("edge.keeper").alias(DUPLICATE_OF_COL),
        F.col(f"edge.{SIMILARITY_COL}").alias(SIMILARITY_COL),
        F.shiftright(F.col(GROUP_COL), SUB_BITS).cast("int").alias(CLUSTER_COL),
        F.lit(True).alias(CROSS_COL),
    )


@contextmanager
def find_duplicates(
    assigned: DataFrame, id_col: str, vector_col: str, dim: int, settings: DedupSettings
) -> Iterator[DataFrame]:
    """The removed rows (id, duplicate_of, similarity, cluster_id, cross_cluster) of rows made by
    :func:`assign_neighbors`, for use inside the ``with`` block; the second stage runs when
    ``settings.neighbors == 2`` (the first stage's result is cached meanwhile, freed on exit)."""
    first = within_clusters(assigned, id_col, vector_col, dim, settings)
    if settings.neighbors == 1:
        yield first
        return
    first = first.persist()
    try:
        kept = assigned.where(F.col(CLUSTER_COL).isNotNull()).join(
            first.select(id_col), on=id_col, how="left_anti"
        )
        yield first.unionByName(across_neighbors(kept, id_col, vector_col, dim, settings))
    finally:
        first.unpersist()


def _sorted_by_cluster(df: DataFrame, cluster_col: str, order: list[Column]) -> DataFrame:
    partitions = max(1, int(df.sparkSession.conf.get("spark.sql.shuffle.partitions")))
    return df.repartition(partitions, cluster_col).sortWithinPartitions(*order)


def _runs(keys: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, stop) of each run of equal consecutive keys."""
    if len(keys) == 0:
        return
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [len(keys)]))
    yield from zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=False)


def _arrow_type(df: DataFrame, column: str) -> pa.DataType:
    return to_arrow_type(df.schema[column].dataType)
