"""k-means on one machine in numpy: the nearest-center kernel, k-means|| seeding and Lloyd iterations.

The kernel runs in every assignment task; the rest fits the bounded k-means sample on the driver
(``cluster.fit_centers`` with the driver engine). Nothing here imports Spark.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

# Rows per block of the (rows x k) score matrix: 8 MiB of float32, which stays in the cache while it
# is reduced to an arg-min. Measured at k = 1000, d = 128, one thread: 88 GFLOP/s, against 71 with
# 64 MiB blocks and the center norms added in a separate pass.
SCORE_BLOCK_ELEMENTS = 1 << 21

# The float32 unit roundoff. A score ||c'||^2 - 2 x'.c' of the shifted data is off from the exact one
# by at most (d + 4) * eps * (||x'|| + ||c'||)^2: d + 1 roundings in the product, one in the norm,
# two in rounding x' and c' to float32. Twice that separates two scores that may be swapped; the
# factor 2 more is headroom (the threshold itself is rounded to float32).
_FLOAT32_EPSILON = 2.0**-24
_TIE_SLACK = 4.0

# Float64 elements per block of the near-tie refinement (rows x d differences): 8 MiB.
_PAIR_BLOCK_ELEMENTS = 1 << 20

# k-means|| seeds on this many sample rows per center (the first ones of the hash-ordered sample,
# a uniform subsample). At 1M x 128, k = 1000: 64 rows per center seeded in 1.0 s instead of 3.2 s
# with 256, and changed the final cost by -0.4% and +0.2% (two seeds); 32 cost up to 5% more.
INIT_ROWS_PER_CENTER = 64

# MLlib runs up to this many weighted Lloyd iterations on the k-means|| candidates; so do we.
_CANDIDATE_ITERATIONS = 30


def nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of each point's nearest center (int32): the float64 arg-min, ties to the lowest index.

    The hot loop is a blocked float32 product on data shifted to the centers' mean (the shift in
    float64), so an offset added to every coordinate cannot swamp the distances. A row's float32
    winner is kept only when every other score is more than twice a bound on the rounding error
    above it; the other rows (near-ties) are decided by exact float64 distances to the centers that
    came close. The result therefore depends on the row and the centers only, never on the batching.
    The center norms ride in the product as one more column, [x', 1] @ [-2 C'^T; |c'|^2], which
    saves a pass over the scores.
    """
    centers = np.asarray(centers, dtype=np.float64)
    n, (k, dim) = len(points), centers.shape
    shift = centers.mean(axis=0)
    shifted = (centers - shift).astype(np.float32)
    norms = np.einsum("ij,ij->i", shifted, shifted, dtype=np.float64)
    rhs = np.vstack([-2.0 * shifted.T, norms.astype(np.float32)[None, :]])
    reach = float(np.sqrt(norms.max()))
    slack = tie_slack(dim)
    index = np.empty(n, dtype=np.int32)
    step = max(1, SCORE_BLOCK_ELEMENTS // k)
    local = np.ones((min(step, n), dim + 1), dtype=np.float32)
    for start in range(0, n, step):
        block = points[start : start + step]
        rows = len(block)
        np.subtract(block, shift, out=local[:rows, :dim], casting="unsafe")  # in float64, then rounded
        scores = local[:rows] @ rhs
        best = scores.argmin(axis=1)
        index[start : start + rows] = best
        if k == 1:
            continue
        spread = np.sqrt(np.einsum("ij,ij->i", local[:rows, :dim], local[:rows, :dim]), dtype=np.float64)
        every = np.arange(rows)
        threshold = (scores[every, best] + slack * (spread + reach) ** 2).astype(np.float32)
        scores[every, best] = np.inf
        near_tie = ~(scores.min(axis=1) > threshold)  # also catches NaN scores (overflow)
        if near_tie.any():
            tied = np.flatnonzero(near_tie)
            tied_scores = scores[tied]
            tied_scores[np.arange(len(tied)), best[tied]] = -np.inf
            index[start + tied] = settle_near_ties(block[tied], centers, tied_scores, threshold[tied])
    return index


def tie_slack(dim: int) -> float:
    """The factor s of the bound s * (||x'|| + ||c'||)^2 within which two float32 scores may be
    swapped (see the constants above): shared by every kernel that decides near-ties exactly."""
    return _TIE_SLACK * (dim + 4) * _FLOAT32_EPSILON


def settle_near_ties(
    points: np.ndarray, centers: np.ndarray, scores: np.ndarray, threshold: np.ndarray
) -> np.ndarray:
    """Each row's exact nearest center, for rows whose float32 winner is not certain.

    ``scores`` are the rows' float32 scores with the float32 winner set to -inf (it stays a
    candidate); every center scoring at most the row's ``threshold`` is a candidate, and the
    candidates are compared by exact float64 distances.
    """
    close = scores <= threshold[:, None]
    close[~close.any(axis=1)] = True  # no usable float32 score: every center is a candidate
    pair_rows, pair_centers = np.nonzero(close)
    return _nearest_among(points, centers, pair_rows, pair_centers)


def _nearest_among(
    points: np.ndarray, centers: np.ndarray, rows: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """For (row, candidate center) pairs sorted by row, each row's nearest candidate by exact float64
    distances (ties to the lowest index), in row order."""
    distance = np.empty(len(rows))
    step = max(1, _PAIR_BLOCK_ELEMENTS // centers.shape[1])
    for start in range(0, len(rows), step):
        part = slice(start, start + step)
        distance[part] = squared_distances(points[rows[part]], centers, candidates[part])
    order = np.lexsort((candidates, distance, rows))
    first = np.ones(len(order), dtype=bool)
    first[1:] = rows[order][1:] != rows[order][:-1]
    return candidates[order][first]


def squared_distances(points: np.ndarray, centers: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Exact float64 ||x_i - c_index(i)||^2: does not depend on how rows were blocked or batched."""
    diff = points.astype(np.float64, copy=False) - centers[index]
    return np.einsum("ij,ij->i", diff, diff)


def count_distinct_rows(x: np.ndarray, k: int) -> int:
    """The number of distinct rows of ``x``, or, when its first 4k rows already hold k distinct ones
    (the usual case, and a cheap check), their number: enough to tell whether k centers fit."""
    head = len(distinct_rows(x[: 4 * k]))
    return head if head >= k or len(x) <= 4 * k else len(distinct_rows(x))


def distinct_rows(x: np.ndarray) -> np.ndarray:
    """Indices of one row per distinct value, by a 64-bit fingerprint of the float32 bits.

    About 20x faster than ``np.unique(axis=0)``. A collision can only undercount, so a caller that
    refuses too few distinct points errs on the side of refusing.
    """
    bits = (x.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # + 0.0 makes -0.0 equal 0.0
    mix = np.random.default_rng(0).integers(1, 2**63, size=x.shape[1], dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        fingerprints = (bits.astype(np.uint64) * mix).sum(axis=1)
    return np.sort(np.unique(fingerprints, return_index=True)[1])


# For fixed rows: centers -> each row's nearest center (the arg-min of :func:`nearest`).
Assigner = Callable[[np.ndarray], np.ndarray]


def lloyd(
    x: np.ndarray,
    centers: np.ndarray,
    max_iter: int,
    tol: float,
    weights: np.ndarray | None = None,
    assigner: Assigner | None = None,
) -> tuple[np.ndarray, int, float]:
    """(Weighted) Lloyd iterations, stopping when no center moves more than ``tol``.

    Returns the centers (float64), the iterations run and the final cost. An empty cluster keeps its
    center, as in MLlib. ``assigner`` finds the rows' nearest centers (default: :func:`nearest` on
    ``x``); one that returns the same arg-min, e.g. on a GPU, gives the same result.
    """
    if assigner is None:
        assigner = functools.partial(nearest, x)
    centers = centers.astype(np.float64)
    k = len(centers)
    # Per-cluster sums as one bincount per dimension over contiguous rows of x^T: 0.04 s a pass at
    # 256,000 x 128, against 1 s for sorting the rows and summing runs.
    columns = np.ascontiguousarray((x if weights is None else x * weights[:, None]).T, dtype=np.float64)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        index = assigner(centers)
        mass = np.bincount(index, weights=weights, minlength=k)
        sums = np.stack([np.bincount(index, weights=column, minlength=k) for column in columns], axis=1)
        centers, shift = moved_centers(centers, np.bincount(index, minlength=k), mass, sums)
        if shift <= tol * tol:
            break
    distance = squared_distances(x, centers, assigner(centers))
    return centers, iterations, float(distance.sum() if weights is None else distance @ weights)


def moved_centers(
    centers: np.ndarray, counts: np.ndarray, mass: np.ndarray, sums: np.ndarray
) -> tuple[np.ndarray, float]:
    """Lloyd's update: each center with rows (``counts`` > 0) moves to their mean, ``sums`` / ``mass``
    (weighted or not); an empty cluster keeps its center, as in MLlib. Returns the new centers and
    the largest squared move."""
    present = np.flatnonzero(counts)
    moved = centers.copy()
    moved[present] = sums[present] / mass[present, None]
    return moved, float(((moved - centers) ** 2).sum(axis=1).max())


def _weighted_kmeans_pp(
    points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator, trials: int
) -> np.ndarray:
    """Greedy weighted k-means++: of ``trials`` candidates per step, keep the one that lowers the
    weighted cost most (scikit-learn's rule; MLlib tries one)."""
    norms = np.einsum("ij,ij->i", points, points)
    chosen = [int(rng.choice(len(points), p=weights / weights.sum()))]
    best = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        mass = weights * best
        total = mass.sum()
        picks = (
            rng.integers(len(points), size=1)
            if total <= 0
            else rng.choice(len(points), trials, p=mass / total)
        )
        distances = norms[picks, None] - 2.0 * (points[picks] @ points.T) + norms[None, :]
        updated = np.minimum(best[None, :], np.maximum(distances, 0.0))
        winner = int(np.argmin(updated @ weights))
        chosen.append(int(picks[winner]))
        best = updated[winner]
    return points[chosen]


def init_parallel(x: np.ndarray, k: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """k-means|| (Bahmani et al.), as MLlib runs it: ``steps`` rounds each adding about 2k rows drawn
    in proportion to their cost, then weighted k-means++ and Lloyd on the candidates, weighted by
    the rows nearest to each."""
    candidates = [x[rng.integers(len(x))][None, :]]
    cost = ((x - candidates[0]) ** 2).sum(axis=1, dtype=np.float64)
    for _ in range(steps):
        total = cost.sum()
        if total <= 0:
            break
        picked = x[rng.random(len(x)) < 2.0 * k * cost / total]
        if len(picked):
            candidates.append(picked)
            cost = np.minimum(cost, squared_distances(x, picked, nearest(x, picked)))
    pool = np.vstack(candidates)
    pool = pool[distinct_rows(pool)]
    if len(pool) <= k:
        fill = rng.choice(len(x), size=k - len(pool), replace=False)
        return np.vstack([pool, x[np.sort(fill)]])
    weights = np.bincount(nearest(x, pool), minlength=len(pool)).astype(np.float64)
    trials = 2 + int(np.log(k))
    seeds = _weighted_kmeans_pp(pool.astype(np.float64), weights, k, rng, trials)
    return lloyd(pool, seeds, _CANDIDATE_ITERATIONS, 0.0, weights)[0]


def fit(
    x: np.ndarray,
    k: int,
    max_iter: int,
    tol: float,
    init_mode: str,
    init_steps: int,
    seed: int,
    assigner: Assigner | None = None,
) -> tuple[np.ndarray, int, float]:
    """k-means on the rows of ``x`` (float32, in a fixed order): centers, iterations and cost.

    ``x`` must hold at least ``k`` distinct rows. k-means|| seeds on the first
    ``INIT_ROWS_PER_CENTER * k`` rows, so ``x`` should be in random order (the fit sample is sorted
    by row hash). ``assigner`` runs the Lloyd iterations' nearest-center passes over ``x`` (see
    :func:`lloyd`).
    """
    start = seed_centers(x, k, init_mode, init_steps, np.random.default_rng(seed))
    return lloyd(x, start, max_iter, tol, assigner=assigner)


def seed_centers(
    x: np.ndarray, k: int, init_mode: str, init_steps: int, rng: np.random.Generator
) -> np.ndarray:
    """k starting centers from the rows of ``x`` (in random order): k distinct rows at random, or
    k-means|| on the first ``INIT_ROWS_PER_CENTER * k`` rows."""
    if init_mode == "random":
        return x[np.sort(rng.choice(distinct_rows(x), size=k, replace=False))]
    return init_parallel(x[: INIT_ROWS_PER_CENTER * k], k, init_steps, rng)
