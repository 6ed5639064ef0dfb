"""The 'precomputed' embedder: an existing vector column, checked and stored as array<float>."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.embedders.base import Embedder, Invalid, as_bool, l2_normalize


class PrecomputedEmbedder(Embedder):
    """Vectors that exist already (array<float|double>, an ML Vector, or text like "[0.1, 0.2]").

    The length is the most common one in a sample of the column; rows of another length, null,
    empty or not finite are flagged like any other bad input. ``column`` names the vector column
    (default: the output column, which is then replaced in place); ``normalize`` scales the
    vectors to unit length.
    """

    input_kind = "vector"
    fit_rows = 1000
    expects = "non-empty finite vectors, all of one length"

    def __init__(self, column: str | None = None, normalize: bool | str = False):
        self.column = column or None
        self.normalize = as_bool(normalize)
        self.dim: int | None = None

    def fit(self, sample: pa.Array) -> None:
        lengths = Counter(sample.value_lengths().drop_null().to_pylist())
        lengths.pop(0, None)
        if not lengths:
            raise ValueError("the vector column has no non-empty vector in its sample")
        self.dim = max(lengths, key=lambda d: (lengths[d], -d))
        self.expects = f"non-empty finite vectors of length {self.dim}"

    def embed(self, values: pa.Array, model: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.dim is None:
            raise RuntimeError("the precomputed embedder must see a sample of the column before it embeds")
        matrix, valid = batch_matrix(values, self.dim)
        lengths = values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        reasons = np.zeros(len(values), dtype=np.uint8)
        reasons[~valid] = Invalid.NON_FINITE
        reasons[lengths != self.dim] = Invalid.WRONG_SIZE
        reasons[lengths == 0] = Invalid.EMPTY
        return (l2_normalize(matrix) if self.normalize else matrix), reasons
