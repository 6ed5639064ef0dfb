"""The embedding stage: every row embedded on the executors (mapInArrow), bad rows flagged, not fatal.

A row that cannot be embedded (null or blank text, an undecodable or wrongly sized image, a
non-finite vector) does not raise inside the Python worker: it gets a null embedding and a reason in
the ``embed_error`` column. :meth:`EmbedReport.check` then counts the reasons in one aggregate on the
driver and fails with a one-line error, or lets the rows be skipped, by policy.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    FloatType,
    StringType,
    StructField,
    StructType,
)

from spark_sensitivity.core.runtime import has_jvm
from spark_sensitivity.core.sampling import rowrandom
from spark_sensitivity.embedders.base import Embedder, Invalid, build_embedder
from spark_sensitivity.embedders.inputs import input_column, input_expression
from spark_sensitivity.embedders.worker import count_batch, shared_model

log = logging.getLogger("spark_sensitivity")

ERROR_COL = "embed_error"
_INPUT_TMP = "__ss_embed_input"
_FIT_SEED = 0


@dataclass(frozen=True)
class EmbedCounts:
    """What one embedding run found: rows in, rows embedded, and invalid rows by reason."""

    rows: int
    embedded: int
    invalid: dict[str, int] = field(default_factory=dict)
    null_ids: int = 0
    dim: int | None = None
    on_invalid: str = "fail"

    @property
    def invalid_rows(self) -> int:
        return sum(self.invalid.values())

    @property
    def skipped(self) -> int:
        return self.invalid_rows if self.on_invalid == "skip" else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "embedded": self.embedded,
            "invalid_rows": self.invalid_rows,
            "invalid_by_reason": dict(self.invalid),
            "skipped": self.skipped,
            "dim": self.dim,
        }


class EmbedReport:
    """Counts and checks the rows of one :func:`embed_frame` result.

    Persist the frame first: then :meth:`check` is one cheap aggregate over the cache and
    :attr:`valid` reads from it too.
    """

    def __init__(
        self,
        frame: DataFrame,
        *,
        embedder: str,
        input_kind: str,
        input_col: str,
        id_col: str,
        output_col: str,
        on_invalid: str,
        expects: str,
        fit_info: dict[str, Any],
    ):
        self.frame = frame
        self.embedder = embedder
        self.input_kind = input_kind
        self.input_col = input_col
        self.id_col = id_col
        self.output_col = output_col
        self.on_invalid = on_invalid
        self.expects = expects
        self.fit_info = fit_info

    @property
    def valid(self) -> DataFrame:
        """The embedded rows only, without the ``embed_error`` column."""
        return self.frame.where(F.col(ERROR_COL).isNull()).drop(ERROR_COL)

    def counts(self) -> EmbedCounts:
        """One aggregate: rows per reason, null ids, and the embedding length of the valid rows."""
        groups = (
            self.frame.groupBy(ERROR_COL)
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.count_if(F.col(self.id_col).isNull()).alias("null_ids"),
                F.min(F.size(self.output_col)).alias("min_dim"),
                F.max(F.size(self.output_col)).alias("max_dim"),
            )
            .collect()
        )
        invalid = {row[ERROR_COL]: int(row["rows"]) for row in groups if row[ERROR_COL] is not None}
        order = [reason.label for reason in Invalid]
        invalid = {label: invalid[label] for label in sorted(invalid, key=order.index)}
        valid = [row for row in groups if row[ERROR_COL] is None]
        dim = None
        if valid:
            low, high = valid[0]["min_dim"], valid[0]["max_dim"]
            if low != high:
                raise ValueError(
                    f"embedder {self.embedder!r} returned vectors of different lengths ({low} and {high})"
                )
            dim = int(low)
        return EmbedCounts(
            rows=sum(int(row["rows"]) for row in groups),
            embedded=int(valid[0]["rows"]) if valid else 0,
            invalid=invalid,
            null_ids=sum(int(row["null_ids"]) for row in groups),
            dim=dim,
            on_invalid=self.on_invalid,
        )

    def check(self) -> EmbedCounts:
        """The counts; a one-line ValueError on null ids, and on invalid rows unless skipping them."""
        counts = self.counts()
        if counts.null_ids:
            raise ValueError(
                f"id column {self.id_col!r} has {counts.null_ids} null values; ids must be unique and non-null"
            )
        if counts.invalid_rows and self.on_invalid == "fail":
            examples = [
                str(row[0])
                for row in self.frame.where(F.col(ERROR_COL).isNotNull())
                .select(self.id_col)
                .limit(3)
                .collect()
            ]
            reasons = ", ".join(f"{count} {label}" for label, count in counts.invalid.items())
            raise ValueError(
                f"{self.input_kind} column {self.input_col!r} has {counts.invalid_rows} rows that cannot be "
                f"embedded ({reasons}; e.g. ids {', '.join(examples)}); expected {self.expects}; "
                "fix them or use --on-invalid skip"
            )
        if counts.skipped:
            log.warning(
                "skipped %d rows of %s column %r that cannot be embedded: %s",
                counts.skipped,
                self.input_kind,
                self.input_col,
                counts.invalid,
            )
        if counts.embedded == 0:
            raise ValueError(f"no row of {self.input_kind} column {self.input_col!r} could be embedded")
        return counts


def embed_frame(
    df: DataFrame,
    *,
    embedder: str,
    id_col: str,
    text_col: str | None,
    image_col: str | None,
    output_col: str = "embedding",
    batch_size: int = 64,
    on_invalid: str = "fail",
    options: dict[str, Any] | None = None,
) -> tuple[DataFrame, EmbedReport]:
    """``df`` with every row embedded on the executors, lazily; and a report to check the rows.

    The result has df's columns, ``output_col`` (array<float>; null where the row cannot be
    embedded) and ``embed_error`` (null, or why the row cannot be embedded). ``embedder`` is a
    built-in name or an import path ``package.module:Class``; ``options`` go to its constructor.
    Runs as mapInArrow over chunks of at most ``batch_size`` rows (texts grouped by length, so a
    model pads little); the model loads once per Python worker process. Only an embedder with a fit (image-pca, precomputed) runs a job here, to bring a
    bounded sample of the input column to the driver. Typical use::

        embedded, report = embed_frame(df, embedder="hashing", id_col="id", text_col="text", image_col=None)
        embedded = embedded.persist()
        counts = report.check()   # fails on bad rows under on_invalid="fail"
        rows = report.valid       # the embedded rows, without embed_error
    """
    if batch_size < 1:
        raise ValueError(f"the embedding batch size must be at least 1, got {batch_size}")
    if on_invalid not in ("fail", "skip"):
        raise ValueError(f"on_invalid must be 'fail' or 'skip', got {on_invalid!r}")
    instance = build_embedder(embedder, options)
    input_col = input_column(embedder, instance, text_col, image_col, output_col)
    missing = [c for c in (id_col, input_col) if c not in df.columns]
    if missing:
        raise ValueError(f"input has no column {missing[0]!r} (columns: {df.columns})")
    replace = instance.input_kind == "vector" and output_col == input_col  # vectors replaced in place
    if output_col in df.columns and not replace:
        raise ValueError(
            f"output column {output_col!r} is already in the input; choose another name or drop that column"
        )
    if ERROR_COL in df.columns:
        raise ValueError(
            f"input column {ERROR_COL!r} clashes with the column that flags invalid rows; rename it"
        )

    work = df.withColumn(_INPUT_TMP, input_expression(df, input_col, instance.input_kind))
    if instance.balance_by_length:
        # Four partitions a core, longest first. Measured on 1,000 texts, 2 cores: 83 rows/s as read,
        # 117 so (8 a core: 100).
        partitions = _length_partitions(work)
        work = work.repartitionByRange(partitions, F.length(_INPUT_TMP).desc())
    if instance.fit_rows > 0:
        instance.fit(_fit_sample(work, id_col, instance.fit_rows))
    fields = list(df.schema.fields)
    vector_field = StructField(output_col, ArrayType(FloatType()))
    if replace:
        fields[df.columns.index(output_col)] = vector_field
    else:
        fields.append(vector_field)
    schema = StructType([*fields, StructField(ERROR_COL, StringType())])
    key = instance.model_key() or ("embedding-run", uuid.uuid4().hex)
    run = _batch_function(instance, key, batch_size, output_col, replace)
    report = EmbedReport(
        work.mapInArrow(run, schema),
        embedder=embedder,
        input_kind=instance.input_kind,
        input_col=input_col,
        id_col=id_col,
        output_col=output_col,
        on_invalid=on_invalid,
        expects=instance.expects,
        fit_info=instance.info(),
    )
    return report.frame, report


def _length_partitions(work: DataFrame) -> int:
    """Four partitions a core, and never fewer than the input has (classic sessions); over Spark
    Connect, where neither is visible, the session's shuffle partitions."""
    spark = work.sparkSession
    if has_jvm(spark):
        return max(work.rdd.getNumPartitions(), 4 * spark.sparkContext.defaultParallelism)
    return int(spark.conf.get("spark.sql.shuffle.partitions", "200") or 200)


def _fit_sample(work: DataFrame, id_col: str, rows: int) -> pa.Array:
    """At most ``rows`` non-null input values, a deterministic uniform sample, on the driver."""
    total = work.count()
    if total == 0:
        raise ValueError("the input has no rows")
    candidates = work.select(id_col, _INPUT_TMP).where(F.col(_INPUT_TMP).isNotNull())
    if 2 * rows < total:
        fraction = 2.0 * rows / total  # twice what is needed, then cut exactly by hash order
        candidates = candidates.where(
            rowrandom.jvm_uniform(id_col, _FIT_SEED, rowrandom.STREAM_EMBED_FIT) < fraction
        )
    picked = candidates.orderBy(rowrandom.row_hash(id_col, _FIT_SEED)).limit(rows).select(_INPUT_TMP)
    return picked.toArrow().column(0).combine_chunks()


def _blank_reasons(values: pa.Array, kind: str) -> np.ndarray:
    """Invalid.NULL and Invalid.EMPTY per row; 0 for rows the embedder should see."""
    reasons = np.zeros(len(values), dtype=np.uint8)
    if kind == "text":
        length = pc.utf8_length(pc.utf8_trim_whitespace(values))
    elif pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        length = pc.binary_length(values)
    else:
        length = pc.list_value_length(values)
    reasons[pc.equal(length, 0).fill_null(False).to_numpy(zero_copy_only=False)] = Invalid.EMPTY
    reasons[values.is_null().to_numpy(zero_copy_only=False)] = Invalid.NULL
    return reasons


def _vector_column(vectors: np.ndarray | None, todo: np.ndarray, reasons: np.ndarray) -> pa.Array:
    """list<float> with one row per input row, null where the row has no embedding."""
    valid = reasons == 0
    lengths = np.zeros(len(reasons), dtype=np.int32)
    if vectors is None or not valid.any():
        flat = np.zeros(0, dtype=np.float32)
    else:
        lengths[valid] = vectors.shape[1]
        flat = vectors[valid[todo]].ravel()
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(flat, type=pa.float32()), mask=pa.array(~valid)
    )


def _error_column(reasons: np.ndarray) -> pa.Array:
    if not reasons.any():
        return pa.nulls(len(reasons), type=pa.string())
    return pa.array([Invalid(code).label if code else None for code in reasons.tolist()], type=pa.string())


def _embed_chunk(
    embedder: Embedder, key: Any, values: pa.Array
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Embeds the rows worth embedding; returns their vectors, their indexes and every row's reason."""
    reasons = _blank_reasons(values, embedder.input_kind)
    todo = np.flatnonzero(reasons == 0)
    if todo.size == 0:
        return None, todo, reasons
    has_model = type(embedder).load is not Embedder.load
    model = shared_model(key, embedder.load) if has_model else None
    result = embedder.embed(values.take(pa.array(todo)), model)
    vectors, found = result if isinstance(result, tuple) else (result, np.zeros(todo.size, dtype=np.uint8))
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != todo.size or len(found) != todo.size:
        raise RuntimeError(
            f"embedder {type(embedder).__name__} returned an array of shape {vectors.shape} for "
            f"{todo.size} rows; expected ({todo.size}, dim) and one reason code per row"
        )
    found = np.asarray(found, dtype=np.uint8).copy()
    found[(found == 0) & ~np.isfinite(vectors).all(axis=1)] = Invalid.NON_FINITE
    reasons[todo] = found
    count_batch(key)
    return vectors, todo, reasons


def _by_length(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch's rows ordered by text length, so each chunk holds texts of similar length and a
    model pads little (sentence-transformers sorts the same way within one encode call). Rows of
    a DataFrame have no order, so they are emitted in this one."""
    lengths = pc.utf8_length(batch.column(_INPUT_TMP)).fill_null(0)
    return batch.take(pc.sort_indices(lengths))


def _batch_function(embedder: Embedder, key: Any, batch_size: int, output_col: str, replace: bool):
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if embedder.input_kind == "text" and batch.num_rows > batch_size:
                batch = _by_length(batch)
            for start in range(0, batch.num_rows, batch_size):
                chunk = batch.slice(start, batch_size)
                vectors, todo, reasons = _embed_chunk(embedder, key, chunk.column(_INPUT_TMP))
                out = chunk.drop_columns([_INPUT_TMP])
                column = _vector_column(vectors, todo, reasons)
                if replace:
                    out = out.set_column(out.schema.get_field_index(output_col), output_col, column)
                else:
                    out = out.append_column(output_col, column)
                yield out.append_column(ERROR_COL, _error_column(reasons))

    return run
