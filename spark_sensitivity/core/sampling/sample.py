"""Stage 4: exactly m draws, i.i.d. with replacement from q, distributed and partition-invariant.

How the draws stay exact, unbiased and independent of partitioning, with nothing O(n) on the driver:

1. Every row gets a Poisson(m' q_i) number of candidate draws, m' a little above m, from a uniform
   derived from a hash of (id, seed). The candidates form a Poisson process whose T = sum of counts
   draws are, given T, i.i.d. from q.
2. If T >= m (almost sure: m' = m + 6 sqrt(m) + 10), keep a uniformly random m of the T draws, the m
   with the smallest hashed sort keys. A uniform m-subset of i.i.d. draws is m i.i.d. draws, so the
   kept counts are exactly Multinomial(m, q). If T < m, retry with a larger m' and fresh streams.
3. A row kept c times is written once with count c and weight c / (m q_i).

Only the candidates (about m rows) are sorted; the n rows are scanned once per attempt.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StructField, StructType

from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.core.sampling.score import PROBABILITY_COL, SENSITIVITY_COL
from spark_sensitivity.settings import MAX_SAMPLE_SIZE

COUNT_COL = "count"
WEIGHT_COL = "weight"
# A subset table holding several sample sizes (select --sample-size 100,400) names each row's here.
BUDGET_COL = "sample_size"
HASH_COL = "__ss_row_hash"
DRAW_INDEX_COL = "__ss_draw_index"
DRAW_KEY_COL = "__ss_draw_key"
MAX_ATTEMPTS = 8
# The draw materialises about m candidate draws and keeps the m smallest keys in ONE task (a top-m
# sort), so its memory grows with m whatever the number of rows: a larger m is refused before any
# candidate is made (library callers; the flags refuse it already), instead of ending a worker.
MAX_DRAWS = MAX_SAMPLE_SIZE
# The drawn rows are joined back to the input by broadcasting them while they can be this many
# (about 60 MB of ids, costs and weights): the input is then scanned once, not shuffled. More
# draws than this take a shuffle join.
BROADCAST_MAX_ROWS = 1_000_000
# A broadcast join keeps the input's partitions, thousands on a large table, most holding a few
# picked rows: the result is spread again over one partition per this many rows, so a written
# subset is a few files, not one per input split.
PICKED_ROWS_PER_PARTITION = 250_000


class Sensitivity(Protocol):
    """Anything that scores rows from their cluster and cost (model-free or loss-aware)."""

    total_sensitivity: float

    def sensitivity(self, cluster_ids: np.ndarray, costs: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Draws:
    """The drawn rows (persisted, at most m of them: ``rows``) and how they were obtained."""

    frame: DataFrame
    candidates: int
    attempts: int
    rows: int


def poisson_rate(m: int, attempt: int) -> float:
    """m' for an attempt: about 6 standard deviations above m, growing if an attempt fell short."""
    return (m + 6.0 * math.sqrt(m) + 10.0) * (1.25**attempt)


def _candidate_schema(scored: DataFrame) -> StructType:
    return StructType(
        list(scored.schema.fields)
        + [
            StructField(SENSITIVITY_COL, DoubleType()),
            StructField(PROBABILITY_COL, DoubleType()),
            StructField(DRAW_INDEX_COL, IntegerType()),
            StructField(DRAW_KEY_COL, DoubleType()),
        ]
    )


def candidates_frame(scored: DataFrame, scorer: Sensitivity, rate: float, attempt: int) -> DataFrame:
    """One row per candidate draw: each row of ``scored`` repeated Poisson(rate * q_i) times, with
    its sensitivity, probability q_i, draw index and a uniform key (``DRAW_KEY_COL``).

    Keeping the m candidates with the smallest keys, ordered by (``DRAW_KEY_COL``, ``HASH_COL``,
    ``DRAW_INDEX_COL``), gives m i.i.d. draws. ``attempt`` selects fresh random streams for a retry.
    """
    total = scorer.total_sensitivity
    count_stream, order_stream = rowrandom.draw_streams(attempt)

    def emit(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            hashes = batch.column(HASH_COL).to_numpy()
            s = scorer.sensitivity(batch.column(CLUSTER_COL).to_numpy(), batch.column(COST_COL).to_numpy())
            q = s / total
            counts = rowrandom.poisson(rate * q, hashes, count_stream)
            rows = np.flatnonzero(counts)
            if rows.size == 0:
                continue
            repeated = np.repeat(rows, counts[rows])
            first_of_row = np.repeat(np.cumsum(counts[rows]) - counts[rows], counts[rows])
            draw_index = np.arange(repeated.size) - first_of_row
            keys = rowrandom.uniforms(hashes[repeated], order_stream, draw_index)
            out = batch.take(pa.array(repeated))
            yield (
                out.append_column(SENSITIVITY_COL, pa.array(s[repeated]))
                .append_column(PROBABILITY_COL, pa.array(q[repeated]))
                .append_column(DRAW_INDEX_COL, pa.array(draw_index, type=pa.int32()))
                .append_column(DRAW_KEY_COL, pa.array(keys))
            )

    return scored.mapInArrow(emit, _candidate_schema(scored))


def check_draws(m: int) -> None:
    """Refuses an m the draw cannot serve: below 1, or above ``MAX_DRAWS`` (memory grows with m)."""
    if m < 1:
        raise ValueError(f"sample size must be at least 1, got {m}")
    if m > MAX_DRAWS:
        raise ValueError(
            f"sample size {m} is above the limit of {MAX_DRAWS:,} draws: the draw holds about m "
            "candidate draws in one task's memory, however few rows there are"
        )


def draw(scored: DataFrame, scorer: Sensitivity, m: int) -> Draws:
    """Draws exactly ``m`` rows i.i.d. with replacement with probability s_i / sum(s).

    ``scored`` holds one row per valid input row with the columns ``HASH_COL`` (the row hash under the
    run's seed), ``cluster_id`` and ``cost``, plus any columns to carry (the id). It is scanned once
    per attempt, so persist it when it is expensive to recompute.
    """
    check_draws(m)
    for attempt in range(MAX_ATTEMPTS):
        candidates = candidates_frame(scored, scorer, poisson_rate(m, attempt), attempt).persist()
        total = candidates.count()
        if total >= m:
            break
        candidates.unpersist()
    else:
        raise RuntimeError(f"could not draw {m} samples in {MAX_ATTEMPTS} attempts")

    carried = [c for c in candidates.columns if c not in (DRAW_INDEX_COL, DRAW_KEY_COL)]
    kept = candidates.orderBy(DRAW_KEY_COL, HASH_COL, DRAW_INDEX_COL).limit(m)
    frame = (
        kept.groupBy(*carried)
        .agg(F.count(F.lit(1)).cast("int").alias(COUNT_COL))
        .withColumn(WEIGHT_COL, F.col(COUNT_COL) / (F.lit(float(m)) * F.col(PROBABILITY_COL)))
        .persist()
    )
    rows = frame.count()  # materialised before the candidates it is computed from are freed
    candidates.unpersist()
    return Draws(frame, total, attempt + 1, rows)


def join_input(picked: DataFrame, rows: DataFrame, id_col: str, most_rows: int) -> DataFrame:
    """The picked rows (at most ``most_rows`` of them) with the input's columns, one row per id.

    A broadcast of the picked rows while ``most_rows`` is at most ``BROADCAST_MAX_ROWS``: a
    sort-merge join would shuffle every input row, embedding included, to meet a few thousand. Only
    the joined rows are then shuffled, into ``PICKED_ROWS_PER_PARTITION``-row partitions.
    """
    if most_rows > BROADCAST_MAX_ROWS:
        return picked.join(rows, on=id_col, how="inner")
    joined = F.broadcast(picked).join(rows, on=id_col, how="inner")
    return joined.repartition(max(1, math.ceil(most_rows / PICKED_ROWS_PER_PARTITION)))
