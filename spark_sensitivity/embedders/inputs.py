"""What an embedder reads: which input column, and that column in the form the embedder takes."""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, NumericType, StringType, StructType

from spark_sensitivity.core.vectors import vector_values
from spark_sensitivity.embedders.base import Embedder


def input_column(
    name: str, embedder: Embedder, text_col: str | None, image_col: str | None, output_col: str
) -> str:
    """The column the embedder reads: the text or image column its kind names, or for a vector
    embedder its own column (else ``output_col``); a ValueError for a column of the other kind."""
    kind = embedder.input_kind
    given = {"text": text_col, "image": image_col}
    other = {"text": "image", "image": "text"}.get(kind)
    if other and given[other]:
        raise ValueError(
            f"embedder {name!r} embeds {kind}; it does not read the {other} column {given[other]!r}"
        )
    if kind == "vector":
        if text_col or image_col:
            raise ValueError(f"embedder {name!r} reads a vector column, not a text or image column")
        return getattr(embedder, "column", None) or output_col
    if not given[kind]:
        raise ValueError(f"embedder {name!r} embeds {kind}: name the {kind} column (--{kind}-col)")
    return given[kind]


def _numeric_array(dtype: Any, depth: int) -> bool:
    """Whether ``dtype`` is an array nested ``depth`` deep of numbers."""
    for _ in range(depth):
        if not isinstance(dtype, ArrayType):
            return False
        dtype = dtype.elementType
    return isinstance(dtype, NumericType)


def input_expression(df: DataFrame, column: str, kind: str) -> Column:
    """The input column in the form the embedder reads (string, binary, float arrays)."""
    dtype = df.schema[column].dataType
    if kind == "text":
        if isinstance(dtype, StringType):
            return F.col(column)
        raise ValueError(f"text column {column!r} has type {dtype.simpleString()}; expected string")
    if kind == "image":
        if isinstance(dtype, BinaryType):
            return F.col(column)
        if (
            isinstance(dtype, StructType)
            and "bytes" in dtype.fieldNames()
            and isinstance(dtype["bytes"].dataType, BinaryType)
        ):
            return F.col(column).getField("bytes")
        if _numeric_array(dtype, 1):
            return F.col(column).cast("array<float>")
        if _numeric_array(dtype, 2):
            return F.col(column).cast("array<array<float>>")
        raise ValueError(
            f"image column {column!r} has type {dtype.simpleString()}; expected binary (raw or encoded "
            "image bytes), a struct with a binary field 'bytes', or an array of pixel values"
        )
    if isinstance(dtype, StringType):  # CSV has no arrays: "[0.1, 0.2]"
        return F.from_json(F.col(column), "array<double>")
    return vector_values(df, column)
