"""What the exact nearest-center kernel costs: the assignment kernel and one driver Lloyd pass, next to
another version of ``spark_sensitivity/core/localkmeans.py`` (for example the one before the
change), interleaved.

Feeds docs/PERFORMANCE.md, section "What was tried, and what each change measured" (the table
"What the exact nearest center costs"; prints JSON). From the repository root (c00934f, the commit
before the change, still had the module at spark_sensitivity/localkmeans.py):

    git show c00934f:spark_sensitivity/localkmeans.py > before_localkmeans.py
    python -m benchmarks.performance.exactness --baseline before_localkmeans.py

Both run in one thread (as in a Spark task); the best of ``--repeats`` runs is kept, because the
machine is shared. Prints one JSON object, with the load average before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from types import ModuleType
from typing import Any

import numpy as np


def _module(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_localkmeans", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _interleaved(runs: dict[str, Any], repeats: int) -> dict[str, tuple[float, float]]:
    """The best (wall, CPU) seconds of each run, the runs alternated so they share the machine's load.

    CPU seconds of this process are the steadier figure on a shared machine: another process's work
    slows the wall clock, not the CPU time this one spends (cache sharing aside)."""
    best = {name: (float("inf"), float("inf")) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def _near_tie_share(points: np.ndarray, centers: np.ndarray, dim: int) -> float:
    """The share of rows whose float32 scores leave the winner in doubt (decided in float64)."""
    from spark_sensitivity.core.kmeans import localkmeans

    shifted = (points - centers.mean(axis=0)).astype(np.float32)
    c = (centers - centers.mean(axis=0)).astype(np.float32)
    scores = np.einsum("ij,ij->i", c, c)[None, :] - 2.0 * shifted @ c.T
    part = np.partition(scores, 1, axis=1)
    reach = np.sqrt(np.einsum("ij,ij->i", c, c, dtype=np.float64).max())
    spread = np.sqrt(np.einsum("ij,ij->i", shifted, shifted, dtype=np.float64))
    slack = localkmeans._TIE_SLACK * (dim + 4) * localkmeans._FLOAT32_EPSILON * (spread + reach) ** 2
    return float(np.mean(part[:, 1] - part[:, 0] <= slack))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another localkmeans.py to time next to the current one")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--kernel-rows", type=int, default=100_000)
    parser.add_argument("--lloyd-rows", type=int, default=256_000, help="the driver fit sample")
    parser.add_argument(
        "--spread", type=float, default=0.5, help="noise around the centers (more: more near-ties)"
    )
    parser.add_argument("--offset", type=float, default=0.0, help="added to every coordinate")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from spark_sensitivity.core.kmeans import localkmeans

    versions = {"current": localkmeans}
    if args.baseline:
        versions["baseline"] = _module(args.baseline)
    rng = np.random.default_rng(0)
    # Points drawn around the centers (the usual case after a fit), not uniform noise.
    centers = rng.standard_normal((args.k, args.dim))
    rows = max(args.kernel_rows, args.lloyd_rows)
    points = (
        centers[rng.integers(args.k, size=rows)] + args.spread * rng.standard_normal((rows, args.dim))
    ).astype(np.float32)
    points += np.float32(args.offset)
    centers += args.offset
    kernel_points = points[: args.kernel_rows]
    lloyd_points = points[: args.lloyd_rows]
    result: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "shape": {
            "k": args.k,
            "dim": args.dim,
            "kernel_rows": args.kernel_rows,
            "lloyd_rows": args.lloyd_rows,
        },
        "offset": args.offset,
        "spread": args.spread,
        "openblas_env": {key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "near_tie_share": _near_tie_share(kernel_points[:20_000].astype(np.float64), centers, args.dim),
    }

    def kernel(module: ModuleType) -> None:
        module.squared_distances(kernel_points, centers, module.nearest(kernel_points, centers))

    with threadpool_limits(limits=1, user_api="blas"):
        for module in versions.values():
            module.nearest(kernel_points[:10_000], centers)  # warm-up
        timed = _interleaved(
            {name: lambda m=module: kernel(m) for name, module in versions.items()}, args.repeats
        )
        for name, (wall, cpu) in timed.items():
            result[f"{name}_kernel_seconds"] = {"wall": round(wall, 3), "cpu": round(cpu, 3)}
            result[f"{name}_kernel_rows_per_cpu_s"] = round(args.kernel_rows / cpu)
        # max_iter=1: one assignment and update, then the final assignment for the cost.
        start = centers[: args.k]
        lloyd = {
            name: lambda m=module: m.lloyd(lloyd_points, start, 1, 0.0) for name, module in versions.items()
        }
        for name, (wall, cpu) in _interleaved(lloyd, args.repeats).items():
            result[f"{name}_lloyd_one_iteration_seconds"] = {"wall": round(wall, 3), "cpu": round(cpu, 3)}
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
