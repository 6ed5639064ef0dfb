"""Embedding columns: the accepted Spark types, and embeddings stored as text parsed to arrays.

Arrow batches become numpy matrices in :mod:`batches`, which the Python workers load without Spark."""

from __future__ import annotations

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


def parse_text_vectors(df: DataFrame, column: str) -> DataFrame:
    """CSV has no arrays: an embedding stored as text like "[0.1, 0.2]" is parsed to array<double>."""
    if column in df.columns and isinstance(df.schema[column].dataType, StringType):
        return df.withColumn(column, F.from_json(F.col(column), "array<double>"))
    return df
