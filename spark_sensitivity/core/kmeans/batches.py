"""Arrow record batches to numpy matrices, and where a pass reads its batches from.

Imports neither Spark nor pyspark.ml, so a Python worker that unpickles an assignment task loads it
in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


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


@dataclass(frozen=True)
class DirectScan:
    """A pass's input read by its Python tasks themselves, not scanned by Spark: ``tasks`` is the
    DataFrame the pass maps over (one row per part of the input), ``read`` turns the task rows a
    partition gets into the input's Arrow batches (picklable: it travels to every task), ``schema``
    is the Spark schema of those batches, ``parts`` how many parts there are."""

    tasks: DataFrame
    read: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
    schema: StructType
    parts: int
