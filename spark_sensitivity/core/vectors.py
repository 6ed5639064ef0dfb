"""Embedding columns: accepted Spark types, and Arrow batches to numpy matrices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, FloatType, StringType

ACCEPTED_TYPES = "array<float>, array<double> or an ML Vector"


def vector_values(df: DataFrame, column: str) -> Column:
    """An array<float|double> expression for an embedding column of any accepted type."""
    if column not in df.columns:
        raise ValueError(f"embedding column {column!r} is not in the input (columns: {df.columns})")
    dtype = df.schema[column].dataType
    if isinstance(dtype, VectorUDT):
        return vector_to_array(F.col(column), "float64")
    if isinstance(dtype, ArrayType) and isinstance(dtype.elementType, (FloatType, DoubleType)):
        return F.col(column)
    raise ValueError(
        f"embedding column {column!r} has type {dtype.simpleString()}; expected {ACCEPTED_TYPES}"
    )


def batch_matrix(values: pa.Array, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, dim) float matrix of an Arrow list column, and a mask of its valid rows.

    A row is valid when its embedding is non-null, has exactly ``dim`` elements, and all of them are
    finite. Invalid rows get a zero row in the matrix so the batch keeps its shape.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    n = len(values)
    lengths = values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    flat = values.flatten().to_numpy(zero_copy_only=False)  # element nulls become NaN
    valid = lengths == dim
    if valid.all():
        matrix = flat.reshape(n, dim)
    else:
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        matrix = np.zeros((n, dim), dtype=flat.dtype)
        rows = np.flatnonzero(valid)
        matrix[rows] = flat[starts[rows, None] + np.arange(dim)]
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        matrix = matrix.copy()
        matrix[~finite] = 0.0
    return matrix, valid & finite


def parse_text_vectors(df: DataFrame, column: str) -> DataFrame:
    """CSV has no arrays: an embedding stored as text like "[0.1, 0.2]" is parsed to array<double>."""
    if column in df.columns and isinstance(df.schema[column].dataType, StringType):
        return df.withColumn(column, F.from_json(F.col(column), "array<double>"))
    return df
