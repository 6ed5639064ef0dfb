"""Whitening (``--whiten``): the embeddings multiplied by (G/n)^-1/2 (up to a rotation, which changes
no distance), G = X^T X their uncentred Gram matrix over n rows.

After whitening, squared distances are n (x - y)^T G^-1 (x - y), the geometry least squares sees:
with rows [A b] that hold an intercept column, they are the distances of the centred rows under
their inverse covariance, and a row's squared norm is n times its leverage. k-means, the costs and the
sensitivities are then computed on the whitened rows; the subset keeps the original ones.

G is summed on the executors in one pass (each task returns d x d float64 sums about its first
valid row, and the driver adds them in partition order), never O(n) rows on the driver. A large
common offset (1e6 on every coordinate) makes G's eigenvalues span 12 orders of magnitude, and an
eigendecomposition of G itself would lose the small ones; the whitening is instead taken from the
SVD of a factor M with M^T M = G (columns scaled to unit spread), built from the scatter about the
mean (accurate whatever the offset) and the mean: M = [F; sqrt(n) mean^T] with F^T F the scatter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

from spark_sensitivity.core.kmeans.assigned import AssignedRows, assign_rows
from spark_sensitivity.core.kmeans.batches import DirectScan, batch_matrix
from spark_sensitivity.core.vectors import vector_values

_VALUES_TMP = "__ss_whiten_values"
_PARTIAL_DDL = "part int, dim int, rows long, origin binary, scatter binary, sums binary"
_PARTIAL_SCHEMA = pa.schema(
    [
        ("part", pa.int32()),
        ("dim", pa.int32()),
        ("rows", pa.int64()),
        ("origin", pa.binary()),
        ("scatter", pa.binary()),
        ("sums", pa.binary()),
    ]
)
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class GramSums:
    """X^T X kept as sums about an origin o (a row of X): ``rows`` = n, ``shifted`` = sum (x-o)(x-o)^T,
    ``sums`` = sum (x - o); each is accurate to float64 rounding of the rows' spread, not their offset."""

    dim: int
    rows: int
    origin: np.ndarray
    shifted: np.ndarray
    sums: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        """X^T X (for checks; the whitening is computed from the sums, not from this)."""
        o, s = self.origin, self.sums
        return self.shifted + np.outer(o, s) + np.outer(s, o) + self.rows * np.outer(o, o)

    def moved_to(self, origin: np.ndarray) -> GramSums:
        """The same sums about another origin (exact algebra; every term stays of the rows' spread
        when both origins are rows)."""
        step = self.origin - origin
        shifted = (
            self.shifted
            + np.outer(step, self.sums)
            + np.outer(self.sums, step)
            + self.rows * np.outer(step, step)
        )
        return GramSums(self.dim, self.rows, origin, shifted, self.sums + self.rows * step)


def _partition_sums(values: pa.Array) -> dict[int, GramSums]:
    """The sums of one Arrow batch per embedding length, about each length's first valid row."""
    lengths = values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    found = {}
    for dim in np.unique(lengths[lengths > 0]):
        x, valid = batch_matrix(values, int(dim))
        x = x[valid].astype(np.float64)
        if len(x):
            y = x - x[0]
            found[int(dim)] = GramSums(int(dim), len(x), x[0], y.T @ y, y.sum(axis=0))
    return found


def _added(total: GramSums | None, part: GramSums) -> GramSums:
    if total is None:
        return part
    part = part.moved_to(total.origin)
    return replace(
        total, rows=total.rows + part.rows, shifted=total.shifted + part.shifted, sums=total.sums + part.sums
    )


def gram_sums(df: DataFrame, vector_col: str) -> GramSums:
    """The Gram matrix of the valid embeddings of the most common length (ties: the shortest), in one
    pass: each task sums its rows per length, the driver adds the tasks' d x d sums in partition
    order. ValueError when no row has a valid embedding."""
    work = df.select(vector_values(df, vector_col).alias(_VALUES_TMP))

    def partials(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        totals: dict[int, GramSums] = {}
        for batch in batches:
            for dim, sums in _partition_sums(batch.column(0)).items():
                totals[dim] = _added(totals.get(dim), sums)
        part = TaskContext.get().partitionId()
        rows = [
            {"part": part, "dim": dim, "rows": g.rows, "origin": g.origin.tobytes(),
             "scatter": g.shifted.tobytes(), "sums": g.sums.tobytes()}
            for dim, g in totals.items()
        ]  # fmt: skip
        yield pa.RecordBatch.from_pylist(rows, schema=_PARTIAL_SCHEMA)

    table = work.mapInArrow(partials, _PARTIAL_DDL).toArrow()
    if table.num_rows == 0:
        raise ValueError(f"embedding column {vector_col!r} has no valid row to whiten by")
    dims, counts = table.column("dim").to_numpy(), table.column("rows").to_numpy()
    per_dim = {int(d): int(counts[dims == d].sum()) for d in np.unique(dims)}
    dim = max(per_dim, key=lambda d: (per_dim[d], -d))
    total = None
    for row in np.argsort(table.column("part").to_numpy(), kind="stable"):
        if dims[row] == dim:
            total = _added(total, _row_sums(table, int(row), dim))
    return total


def _row_sums(table: pa.Table, row: int, dim: int) -> GramSums:
    def vector(name: str) -> np.ndarray:
        return np.frombuffer(table.column(name)[row].as_py(), dtype=np.float64)

    return GramSums(
        dim,
        int(table.column("rows")[row].as_py()),
        vector("origin"),
        vector("scatter").reshape(dim, dim),
        vector("sums"),
    )


def whitening_matrix(gram: GramSums, vector_col: str) -> np.ndarray:
    """W (d x d, float64) with W^T W = (G/n)^-1: (G/n)^-1/2 up to a rotation, so the same distances,
    or a ValueError naming G's numerical rank when it is below d. With G/n, the rows' second moments,
    rather than G, whitened rows have mean squared norm d whatever n, so --tol keeps its meaning.

    The columns are first scaled to unit spread (D; a constant column by its value), so columns of
    any scale are whitened alike. Then D G D = M^T M with M = [F; sqrt(n) m^T], F^T F the scaled
    scatter about the mean m (from its eigenvalues, those within rounding of zero set to zero), and
    W = sqrt(n) V diag(1/sigma) V^T D from M's SVD. G's rank is M's by numpy's rule (singular values above
    sigma_max * max(M's shape) * eps): a constant column is not a collinearity (the mean fills its
    direction: it is an intercept); two are.
    """
    n, dim = gram.rows, gram.dim
    mean_shift = gram.sums / n
    mean = gram.origin + mean_shift
    scatter = gram.shifted - np.outer(gram.sums, mean_shift)
    spread = np.sqrt(np.maximum(np.diag(scatter), 0.0) / n)
    scale = np.where(spread > 0, spread, np.abs(mean))
    scale = np.where(scale > 0, scale, 1.0)
    scaled = scatter / np.outer(scale, scale)
    values, vectors = np.linalg.eigh((scaled + scaled.T) / 2)
    kept = values > max(values.max(initial=0.0), 0.0) * max(dim, 16) * 16 * _EPS
    factor = np.vstack(
        [np.sqrt(values[kept])[:, None] * vectors[:, kept].T, np.sqrt(n) * (mean / scale)[None, :]]
    )
    _, sigma, right = np.linalg.svd(factor, full_matrices=False)
    rank = int((sigma > sigma.max(initial=0.0) * max(factor.shape) * _EPS).sum())
    if rank < dim:
        raise ValueError(
            f"the Gram matrix of embedding column {vector_col!r} has rank {rank} < dimension {dim}: "
            "columns are collinear (or there are fewer rows than columns), so it cannot be whitened; "
            "drop collinear or duplicated columns (keep at most one constant column)"
        )
    return np.sqrt(n) * right.T @ (right / sigma[:, None]) / scale[None, :]


def whitened(df: DataFrame, vector_col: str, matrix: np.ndarray, out_col: str | None = None) -> DataFrame:
    """``df`` with ``out_col`` (default: the embedding column itself, replaced) = matrix @ x as
    array<double>, in one mapInArrow pass; null where the embedding is null, of another length than
    the matrix or not finite, so the assignment pass counts those rows as invalid."""
    out_col = out_col or vector_col
    dim = len(matrix)
    values = vector_values(df, vector_col)
    if isinstance(df.schema[vector_col].dataType, ArrayType):
        work, source = df, vector_col
    else:
        work, source = df.withColumn(_VALUES_TMP, values), _VALUES_TMP
    kept = [field for field in df.schema.fields if field.name != out_col]
    schema = StructType(kept + [StructField(out_col, ArrayType(DoubleType()))])
    names = [field.name for field in kept]
    transposed = np.ascontiguousarray(matrix.T, dtype=np.float64)

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            x, valid = batch_matrix(batch.column(source), dim)
            z = x.astype(np.float64) @ transposed
            offsets = pa.array(np.arange(0, (len(z) + 1) * dim, dim), pa.int32())
            lists = pa.ListArray.from_arrays(offsets, pa.array(z.ravel()), mask=pa.array(~valid))
            yield batch.select(names).append_column(out_col, lists)

    return work.mapInArrow(apply, schema)


def whitened_sample(sample: DataFrame, matrix: np.ndarray) -> DataFrame:
    """A k-means fit sample (its last column the embedding) with whitened, valid embeddings."""
    column = sample.columns[-1]
    return whitened(sample, column, matrix).where(F.col(column).isNotNull())


def assign_whitened(
    rows: DataFrame,
    id_col: str,
    vector_col: str,
    centers: np.ndarray,
    z: int,
    on_invalid: str,
    accelerator: str,
    matrix: np.ndarray | None,
    scan: DirectScan | None = None,
) -> AssignedRows:
    """:func:`assigned.assign_rows` on the whitened embeddings (when ``matrix`` is given); the
    result's ``rows`` are the original ones, so the subset keeps the original embeddings. ``scan``
    (the rows read by the tasks themselves) serves unwhitened runs only."""
    if matrix is None:
        return assign_rows(rows, id_col, vector_col, centers, z, on_invalid, accelerator, scan)
    if scan is not None:
        raise ValueError("a direct scan reads unwhitened embeddings only")
    work = whitened(rows.select(id_col, vector_col), vector_col, matrix)
    return replace(assign_rows(work, id_col, vector_col, centers, z, on_invalid, accelerator), rows=rows)
