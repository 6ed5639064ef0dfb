"""Lloyd iterations that skip rows whose nearest center provably did not change (Hamerly's bound,
and Yinyang's bounds per group of centers) against the driver engine's plain Lloyd.

Feeds docs/PERFORMANCE.md, "What was tried". From the repository root, on a quiet machine (about
4 minutes at the defaults):

    python -m benchmarks.performance.bounded_lloyd
    python -m benchmarks.performance.bounded_lloyd --rows 64000 --k 250   # under a minute

The rows are the first ``--rows`` of the 1M x 128 mixture that benchmarks.performance.compare
writes (its rows are in random order, so a uniform sample, as the select job's hash sample is),
seeded once with the driver engine's k-means||, then fitted by each variant from the same seeds,
alternated ``--repeats`` times. A bounded variant keeps, for every row, an upper bound on its
distance to its center and lower bounds on its distance to every other center; after the centers
move it widens them by the moves and recomputes (one blocked float32 product over the rows left, the
same rounding rule and near-tie settling as ``localkmeans.nearest``) only the rows whose bounds
overlap. It must give the plain Lloyd's centers bit for bit: checked every run. Also printed: the
share of rows whose center really changed at each iteration (what a perfect bound would recompute),
and why the bounds cannot tell: each row's margin (second-nearest distance minus nearest) against
the centers' moves. Raw figures go to runs/perf/bounded_lloyd.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.common import REPO
from benchmarks.performance.direct_read import dataset
from spark_sensitivity.core.kmeans import localkmeans as lk

# Bounds are widened by these relative margins: far above float64 rounding, far below any gap.
_UP, _DOWN = 1 + 1e-9, 1 - 1e-9


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256_000, help="fit rows (default: 256,000, the job's)")
    parser.add_argument("--table-rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--groups", default="1,32,100", help="center groups per variant (1 = Hamerly)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default=str(REPO / "runs" / "perf" / "data"))
    parser.add_argument("--results", default=str(REPO / "runs" / "perf" / "bounded_lloyd.json"))
    return parser


def nearest_with_bounds(points: np.ndarray, centers: np.ndarray, starts: np.ndarray) -> tuple:
    """``localkmeans.nearest`` and, per group of centers (columns from each of ``starts``), a lower
    bound on the distance to its centers other than the nearest (0 where the row was a near-tie)."""
    n, (k, dim) = len(points), centers.shape
    shift = centers.mean(axis=0)
    shifted = (centers - shift).astype(np.float32)
    norms = np.einsum("ij,ij->i", shifted, shifted, dtype=np.float64)
    rhs = np.vstack([-2.0 * shifted.T, norms.astype(np.float32)[None, :]])
    reach = float(np.sqrt(norms.max()))
    index, lower = np.empty(n, dtype=np.int32), np.zeros((n, len(starts)))
    step = max(1, lk.SCORE_BLOCK_ELEMENTS // k)
    local = np.ones((min(step, n), dim + 1), dtype=np.float32)
    for start in range(0, n, step):
        block = points[start : start + step]
        rows, every = len(block), np.arange(len(block))
        np.subtract(block, shift, out=local[:rows, :dim], casting="unsafe")
        scores = local[:rows] @ rhs
        best = scores.argmin(axis=1)
        index[start : start + rows] = best
        spread2 = np.einsum("ij,ij->i", local[:rows, :dim], local[:rows, :dim], dtype=np.float64)
        error = lk.tie_slack(dim) * (np.sqrt(spread2) + reach) ** 2
        threshold = (scores[every, best] + error).astype(np.float32)
        scores[every, best] = np.inf
        group_min = np.minimum.reduceat(scores, starts, axis=1)
        lower[start : start + rows] = np.sqrt(np.maximum(spread2[:, None] + group_min - error[:, None], 0))
        tied = np.flatnonzero(~(group_min.min(axis=1) > threshold))
        if len(tied):
            lower[start + tied] = 0.0
            tied_scores = scores[tied]
            tied_scores[np.arange(len(tied)), best[tied]] = -np.inf
            index[start + tied] = lk.settle_near_ties(block[tied], centers, tied_scores, threshold[tied])
    return index, lower * _DOWN


def center_groups(centers: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """An order of the centers that makes each group contiguous, and each group's first position:
    Yinyang's grouping, a few Lloyd steps on the centers themselves."""
    if groups <= 1:
        return np.arange(len(centers)), np.array([0])
    first = centers[np.linspace(0, len(centers) - 1, groups).astype(int)]
    group = lk.nearest(centers, lk.lloyd(centers.astype(np.float32), first, 5, 0.0)[0])
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])
    return order, starts


def bounded_lloyd(x: np.ndarray, centers: np.ndarray, max_iter: int, tol: float, groups: int) -> dict:
    """``localkmeans.lloyd`` (unweighted), recomputing only the rows whose bounds overlap."""
    centers = centers.astype(np.float64)
    k = len(centers)
    order, starts = center_groups(centers, groups)

    def assign(rows: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index, lower = nearest_with_bounds(rows, at[order], starts)
        index = order[index].astype(np.int32)
        return index, np.sqrt(lk.squared_distances(rows, at, index)) * _UP, lower

    columns = np.ascontiguousarray(x.T, dtype=np.float64)
    index, upper, lower = assign(x, centers)
    recomputed, iterations = [len(x)], 0
    while iterations < max_iter:
        iterations += 1
        if iterations > 1:
            stale = np.flatnonzero(upper >= lower.min(axis=1))
            upper[stale] = np.sqrt(lk.squared_distances(x[stale], centers, index[stale])) * _UP
            stale = stale[upper[stale] >= lower[stale].min(axis=1)]
            if len(stale):
                index[stale], upper[stale], lower[stale] = assign(x[stale], centers)
            recomputed.append(len(stale))
        sums = np.stack([np.bincount(index, weights=column, minlength=k) for column in columns], axis=1)
        counts = np.bincount(index, minlength=k)
        moved, largest = lk.moved_centers(centers, counts, counts.astype(np.float64), sums)
        move = np.sqrt(((moved - centers) ** 2).sum(axis=1)) * _UP
        centers = moved
        if largest <= tol * tol:
            break
        upper += move[index]
        lower -= np.maximum.reduceat(move[order], starts)[None, :]
    return {"centers": centers, "iterations": iterations, "recomputed": recomputed}


def changes_and_margins(x: np.ndarray, start: np.ndarray, max_iter: int, tol: float) -> dict:
    """The plain Lloyd, recording the rows that changed center at each iteration, the largest and
    median center move, and at the end each row's margin (second-nearest minus nearest distance)."""
    trail: list[np.ndarray] = []
    centers_seen: list[np.ndarray] = []

    def assigner(centers: np.ndarray) -> np.ndarray:
        centers_seen.append(centers)
        trail.append(lk.nearest(x, centers))
        return trail[-1]

    final = lk.lloyd(x, start, max_iter, tol, assigner=assigner)[0]
    moves = [np.sqrt(((b - a) ** 2).sum(axis=1)) for a, b in itertools.pairwise(centers_seen)]
    sample = x[:: max(1, len(x) // 20_000)].astype(np.float64)
    squared = (sample**2).sum(axis=1)[:, None] - 2 * sample @ final.T + (final**2).sum(axis=1)[None, :]
    distances = np.sqrt(np.maximum(squared, 0))
    two = np.sort(distances, axis=1)[:, :2]
    return {
        "changed_share": [float((b != a).mean()) for a, b in itertools.pairwise(trail)],
        "move_max": [float(m.max()) for m in moves],
        "move_median": [float(np.median(m)) for m in moves],
        "nearest_median": float(np.median(two[:, 0])),
        "margin_quantiles": {q: float(np.quantile(two[:, 1] - two[:, 0], q)) for q in (0.1, 0.5, 0.9)},
    }


def main() -> None:
    args = _parser().parse_args()
    folder = Path(dataset(Path(args.data_dir), args.table_rows, args.dim, args.k))
    files = sorted(str(path) for path in folder.glob("*.parquet"))
    column = pq.read_table(files, columns=["embedding"]).column("embedding").slice(0, args.rows)
    x = np.stack(column.to_numpy(zero_copy_only=False)).astype(np.float32)
    start = lk.seed_centers(x, args.k, "k-means||", 2, np.random.default_rng(0))
    groups = [int(value) for value in args.groups.split(",")]
    seconds: dict[str, list[float]] = {"plain": []} | {f"groups={g}": [] for g in groups}
    results: dict = {"settings": vars(args), "load_start": os.getloadavg()[0], "variants": {}}
    for _ in range(args.repeats):
        tick = time.perf_counter()
        plain, iterations, _ = lk.lloyd(x, start, args.max_iter, 1e-4)
        seconds["plain"].append(time.perf_counter() - tick)
        for g in groups:
            tick = time.perf_counter()
            bounded = bounded_lloyd(x, start, args.max_iter, 1e-4, g)
            seconds[f"groups={g}"].append(time.perf_counter() - tick)
            results["variants"][f"groups={g}"] = {
                "identical_centers": bool(np.array_equal(plain, bounded["centers"])),
                "iterations": bounded["iterations"],
                "recomputed_share": [round(r / len(x), 4) for r in bounded["recomputed"]],
            }
    results["plain_iterations"] = iterations
    results["seconds"] = {name: [round(s, 2) for s in runs] for name, runs in seconds.items()}
    results["median_seconds"] = {name: round(statistics.median(runs), 2) for name, runs in seconds.items()}
    results["plain_trace"] = changes_and_margins(x, start, args.max_iter, 1e-4)
    results["load_end"] = os.getloadavg()[0]
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=1))
    print(json.dumps({key: results[key] for key in ("median_seconds", "seconds")}))
    for name, variant in results["variants"].items():
        print(name, variant)
    print("plain trace", json.dumps(results["plain_trace"]))


if __name__ == "__main__":
    main()
