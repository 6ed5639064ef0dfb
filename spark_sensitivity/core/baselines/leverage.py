"""Exact leverage scores for least squares, l_i = a_i^T (A^T A)^+ a_i, with the Gram matrix reduced
distributed: the scores that leverage-score sampling (``baselines.proportional_sample``) draws by."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.vectors import vector_values

LEVERAGE_COL = "leverage"
_VECTOR_TMP = "__ss_vector"


def gram_matrix(frame: DataFrame, vector_col: str, id_col: str) -> np.ndarray:
    """A^T A over the rows' vectors, reduced distributed (one d x d partial sum per Arrow batch)."""
    work = frame.select(
        F.col(id_col), vector_values(frame, vector_col).cast("array<double>").alias(_VECTOR_TMP)
    )
    dim = len(work.select(_VECTOR_TMP).where(F.col(_VECTOR_TMP).isNotNull()).first()[0])

    def partial(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            matrix, valid = batch_matrix(batch.column(_VECTOR_TMP), dim)
            gram = matrix[valid].T @ matrix[valid]
            invalid_ids = batch.column(id_col).filter(pa.array(~valid)).slice(0, 3).cast(pa.string())
            yield pa.RecordBatch.from_pydict(
                {
                    "gram": [gram.ravel().tolist()],
                    "invalid": [int((~valid).sum())],
                    "examples": [invalid_ids.to_pylist()],
                }
            )

    rows = work.mapInArrow(partial, "gram array<double>, invalid long, examples array<string>").collect()
    invalid = sum(r["invalid"] for r in rows)
    if invalid:
        examples = [e for r in rows for e in r["examples"]][:3]
        raise ValueError(
            f"vector column {vector_col!r} has {invalid} rows that are null, of the wrong length or not "
            f"finite (e.g. ids {', '.join(examples)})"
        )
    return np.sum([np.array(r["gram"]).reshape(dim, dim) for r in rows], axis=0)


def leverage_scores(frame: DataFrame, id_col: str, vector_col: str) -> DataFrame:
    """Exact leverage scores l_i = a_i^T (A^T A)^+ a_i: (id, leverage). They sum to rank(A).

    Two passes: the Gram matrix (d x d to the driver, pseudo-inverted there), then one map.
    """
    inverse = np.linalg.pinv(gram_matrix(frame, vector_col, id_col), hermitian=True)
    dim = inverse.shape[0]
    work = frame.select(F.col(id_col), vector_values(frame, vector_col).alias(_VECTOR_TMP))
    schema = StructType([frame.schema[id_col], StructField(LEVERAGE_COL, DoubleType())])

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            matrix, _ = batch_matrix(batch.column(_VECTOR_TMP), dim)
            matrix = matrix.astype(np.float64)
            lev = np.einsum("ij,ij->i", matrix @ inverse, matrix)
            yield pa.RecordBatch.from_arrays(
                [batch.column(id_col), pa.array(lev)], names=[id_col, LEVERAGE_COL]
            )

    return work.mapInArrow(score, schema)
