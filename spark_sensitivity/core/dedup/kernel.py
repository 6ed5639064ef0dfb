"""Near-duplicates inside one cluster, in numpy: the greedy SemDeDup rule, block by block.

The rows of a cluster arrive in a fixed order (see ``dedup``). A row is removed when its cosine
similarity with an earlier *kept* row is at least ``threshold`` (= 1 - eps); it then names the most
similar such row. Rows are compared in blocks of ``block_rows``: a new block is compared with the kept
rows before it (in slices of ``block_rows``), then with the rows of the block that may still be kept,
so one task holds the kept rows of the cluster (linear in its kept rows) and at most
(block_rows x block_rows) similarities and candidate pairs, never a quadratic matrix, however many of
the rows are near-duplicates.

Similarities come from float32 matrix products that only screen: every entry above threshold -
``REFINE_MARGIN`` is recomputed in float64 and decided on that value, so a decision does not depend
on how rows were blocked, and equals the one a float64 all-pairs comparison makes. The exact
recomputation gathers the candidate pairs' rows a bounded chunk at a time (``REFINE_ELEMENTS``): on
dense near-duplicates nearly every pair of a block is a candidate, and gathering them all at once
took gigabytes at d = 384. Nothing here imports Spark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spark_sensitivity.settings import DEFAULT_BLOCK_ROWS

# float32 dot products of unit vectors err by well under 1e-4 for d up to a few thousand.
REFINE_MARGIN = 1e-4
# Float64 elements gathered per side while candidate pairs are recomputed exactly: 4 MiB each.
REFINE_ELEMENTS = 1 << 19


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit rows in float64; a zero row stays zero (similarity 0 with every row: never a duplicate)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    return x / np.where(norms > 0, norms, 1.0)[:, None]


def screen(a32: np.ndarray, b32: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(row in a, row in b) of the pairs whose float32 similarity is within REFINE_MARGIN of the
    threshold or above: a superset of the close pairs, to be decided by :func:`refine`."""
    return np.nonzero(a32 @ b32.T >= np.float32(threshold - REFINE_MARGIN))


def refine(
    a64: np.ndarray, b64: np.ndarray, rows: np.ndarray, cols: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate pairs whose float64 similarity is >= threshold: rows, cols, similarities.

    Each pair's similarity is its own float64 dot product (never a blocked product's entry), so it
    does not depend on which block the pair was found in; pairs are gathered REFINE_ELEMENTS at a time.
    """
    step = max(1, REFINE_ELEMENTS // max(1, a64.shape[1]))
    exact = np.empty(len(rows))
    for start in range(0, len(rows), step):
        stop = start + step
        exact[start:stop] = np.einsum("ij,ij->i", a64[rows[start:stop]], b64[cols[start:stop]])
    close = exact >= threshold
    return rows[close], cols[close], exact[close]


def close_pairs(
    a32: np.ndarray, a64: np.ndarray, b32: np.ndarray, b64: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row in a, row in b, similarity) of every pair of unit rows with cosine >= threshold.

    The float32 product only screens (entries below threshold - REFINE_MARGIN are dropped without
    leaving float32); the candidates left are recomputed in float64 and decided on that value.
    """
    return refine(a64, b64, *screen(a32, b32, threshold), threshold)


def best_per_row(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct row, its most similar column (ties: the lowest column): rows, cols, sims."""
    order = np.lexsort((cols, -sims, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    first = np.concatenate(([True], rows[1:] != rows[:-1])) if rows.size else np.zeros(0, dtype=bool)
    return rows[first], cols[first], sims[first]


class _Rows:
    """A growable store of unit rows (float64 and a float32 copy for the products)."""

    def __init__(self, dim: int):
        self.x64 = np.empty((0, dim))
        self.x32 = np.empty((0, dim), dtype=np.float32)
        self.size = 0

    def extend(self, rows: np.ndarray) -> None:
        need = self.size + len(rows)
        if need > len(self.x64):
            capacity = max(need, 2 * len(self.x64), 64)
            dim = self.x64.shape[1]
            grown64, grown32 = np.empty((capacity, dim)), np.empty((capacity, dim), np.float32)
            grown64[: self.size], grown32[: self.size] = self.x64[: self.size], self.x32[: self.size]
            self.x64, self.x32 = grown64, grown32
        self.x64[self.size : need] = rows
        self.x32[self.size : need] = rows
        self.size = need


@dataclass(frozen=True)
class BlockResult:
    """Per row of a block: removed?, index of the kept row it duplicates (-1 if kept), similarity."""

    removed: np.ndarray
    match: np.ndarray
    similarity: np.ndarray


class ClusterDeduper:
    """The greedy rule over one cluster: feed its rows in order, in blocks, with :meth:`add`.

    Kept rows are numbered 0, 1, ... in the order they were kept; ``match`` refers to that number.
    """

    def __init__(self, dim: int, threshold: float, block_rows: int = DEFAULT_BLOCK_ROWS):
        self.threshold = threshold
        self.block_rows = block_rows
        self.kept = _Rows(dim)
        self.multiply_adds = 0

    def add(self, x: np.ndarray) -> BlockResult:
        """Decides a block of rows (at most ``block_rows``, the cluster's next ones in order)."""
        x64 = normalize_rows(x)
        x32 = x64.astype(np.float32)
        n, dim = x64.shape
        best = np.full(n, -np.inf)
        match = np.full(n, -1, dtype=np.int64)
        for start in range(0, self.kept.size, self.block_rows):
            stop = min(start + self.block_rows, self.kept.size)
            kept32, kept64 = self.kept.x32[start:stop], self.kept.x64[start:stop]
            rows, cols, sims = best_per_row(*close_pairs(x32, x64, kept32, kept64, self.threshold))
            self.multiply_adds += n * (stop - start) * dim
            better = sims > best[rows]  # strict: on a tie the earlier kept row stays the match
            best[rows[better]], match[rows[better]] = sims[better], start + cols[better]
        kept_here = best < self.threshold

        # Only rows not yet removed by an earlier kept row can be kept, so only they can remove a
        # later row of the block: on dense near-duplicates few are left after the first block.
        open_rows = np.flatnonzero(kept_here)
        rows, cols = screen(x32, x32[open_rows], self.threshold)
        cols = open_rows[cols]
        earlier = cols < rows
        rows, cols, sims = refine(x64, x64, rows[earlier], cols[earlier], self.threshold)
        self.multiply_adds += n * open_rows.size * dim
        # Rows close to an earlier row of the block are decided in order: removed when one of those
        # earlier rows was kept. Pairs sorted by (row, -similarity, col): the first kept one wins.
        order = np.lexsort((cols, -sims, rows))
        rows, cols, sims = rows[order], cols[order], sims[order]
        bounds = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1], [True]))) if rows.size else []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
            i = rows[lo]
            alive = np.flatnonzero(kept_here[cols[lo:hi]])
            if alive.size == 0:
                continue
            kept_here[i] = False
            j, value = cols[lo + alive[0]], sims[lo + alive[0]]
            if value > best[i]:
                best[i], match[i] = value, -2 - j  # provisional: a position in this block
        removed = ~kept_here
        new_index = self.kept.size + np.cumsum(kept_here) - 1
        in_block = match <= -2
        match[in_block] = new_index[-2 - match[in_block]]
        match[kept_here] = -1
        self.kept.extend(x64[kept_here])
        similarity = np.where(removed, best, np.nan)
        return BlockResult(removed, match, similarity)


def brute_force(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The same rule from the full float64 similarity matrix of rows already in order (a reference).

    Returns the removed mask and, per removed row, the position of the kept row it duplicates.
    """
    unit = normalize_rows(x)
    sims = unit @ unit.T
    kept = np.zeros(len(x), dtype=bool)
    match = np.full(len(x), -1, dtype=np.int64)
    for i in range(len(x)):
        earlier = np.flatnonzero(kept[:i] & (sims[i, :i] >= threshold))
        if earlier.size:
            match[i] = earlier[sims[i, earlier].argmax()]
        else:
            kept[i] = True
    return ~kept, match
