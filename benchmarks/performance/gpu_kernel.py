"""The nearest-center kernel and the driver's k-means fit on a GPU (torch) against numpy, on one machine.

Feeds docs/PERFORMANCE.md, section "On a GPU" (prints JSON and a short table). From the repository
root:

    python -m benchmarks.performance.gpu_kernel                        # the sizes of docs/PERFORMANCE.md
    python -m benchmarks.performance.gpu_kernel --device cpu --rows 20000 --fit-rows 20000 --k 100   # a smoke run

Needs numpy and torch only (no Spark, no Java): it is what runs on a GPU host that has no Spark.
For each case it checks that the GPU's arg-min is numpy's, row for row, and that the driver fit
through the GPU gives numpy's centers bit for bit; then it times

  * the assignment kernel as an assignment task runs it: Arrow-sized batches from host memory
    (upload, product, near-tie settling, the float64 cost on the host), rows/s and GFLOP/s;
  * the driver fit (k-means|| seeding in numpy, then Lloyd with the products on the device);
  * the device's own float32 GEMM rate, the floor for the product.

Prints one JSON object; the last lines are a short table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from benchmarks.performance.probes import best_seconds
from spark_sensitivity.core.kmeans import kernels, localkmeans, torchkernel


def _blobs(rows: int, dim: int, clusters: int, seed: int, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(clusters, dim))
    points = centers[rng.integers(clusters, size=rows)] + rng.normal(size=(rows, dim))
    return (points + offset).astype(np.float32)


def _sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def check_assignment(device: str, seeds: int) -> list[dict]:
    """The device's arg-min against numpy's on fresh data: blobs, offsets, and near-ties."""
    results = []
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        k, dim = int(rng.integers(2, 2000)), int(rng.integers(2, 300))
        offset = float(rng.choice([0.0, 1e3, 1e6]))
        points = _blobs(50_000, dim, max(k // 3, 1), 200 + seed, offset)
        centers = points[rng.choice(len(points), size=k, replace=False)].astype(np.float64)
        # A tenth of the rows on the bisector of two centers: their float32 scores tie.
        pairs = rng.integers(k, size=(5000, 2))
        points[:5000] = ((centers[pairs[:, 0]] + centers[pairs[:, 1]]) / 2).astype(np.float32)
        gpu = torchkernel.NearestKernel(centers, device)(points)
        cpu = localkmeans.nearest(points, centers)
        results.append(
            {
                "k": k,
                "dim": dim,
                "offset": offset,
                "rows": len(points),
                "differing_rows": int((gpu != cpu).sum()),
            }
        )
    return results


def time_assignment(device: str, rows: int, dim: int, k: int, batch: int, repeats: int) -> dict:
    """kernels.nearest_centers as a task runs it, over ``rows`` rows in batches of ``batch``."""
    points = _blobs(rows, dim, k // 4, 1)
    centers = points[np.random.default_rng(2).choice(rows, size=k, replace=False)].astype(np.float64)
    batches = [points[i : i + batch] for i in range(0, rows, batch)]
    on_device = (
        kernels.nearest_function(centers, "cuda")
        if device == "cuda"
        else torchkernel.NearestKernel(centers, device)
    )

    def run(nearest) -> np.ndarray:
        return np.concatenate([kernels.nearest_centers(b, centers, 2, nearest)[0] for b in batches])

    same = bool((run(on_device) == run(None)).all())
    flops = 2.0 * rows * k * dim
    numpy_s = best_seconds(lambda: run(None), repeats)
    device_s = best_seconds(lambda: run(on_device), repeats)
    return {
        "rows": rows,
        "dim": dim,
        "k": k,
        "batch_rows": batch,
        "same_assignment": same,
        "numpy_s": round(numpy_s, 3),
        "device_s": round(device_s, 3),
        "numpy_gflops": round(flops / numpy_s / 1e9, 1),
        "device_gflops": round(flops / device_s / 1e9, 1),
        "speedup": round(numpy_s / device_s, 2),
    }


def time_fit(device: str, rows: int, dim: int, k: int) -> dict:
    """localkmeans.fit as the driver engine runs it, with and without the device for Lloyd."""
    x = _blobs(rows, dim, k // 4, 3)
    tick = time.perf_counter()
    plain = localkmeans.fit(x, k, 20, 1e-4, "k-means||", 2, seed=0)
    numpy_s = time.perf_counter() - tick
    tick = time.perf_counter()
    on_device = localkmeans.fit(
        x, k, 20, 1e-4, "k-means||", 2, seed=0, assigner=torchkernel.resident_assigner(x, device)
    )
    device_s = time.perf_counter() - tick
    return {
        "rows": rows,
        "dim": dim,
        "k": k,
        "iterations": plain[1],
        "same_centers_bitwise": bool(np.array_equal(plain[0], on_device[0])),
        "cost_numpy": plain[2],
        "cost_device": on_device[2],
        "numpy_s": round(numpy_s, 2),
        "device_s": round(device_s, 2),
        "speedup": round(numpy_s / device_s, 2),
    }


def gemm_rate(device: str) -> float:
    """The device's float32 (no TF32) GEMM rate in GFLOP/s, 8192^3 (2048^3 on a CPU)."""
    import torch

    size = 8192 if device == "cuda" else 2048
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.set_float32_matmul_precision("highest")
    for _ in range(3):
        a @ b
    _sync(torch, device)

    def run() -> None:
        a @ b
        _sync(torch, device)

    return 2.0 * size**3 / best_seconds(run, 10) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--batches", type=int, nargs="+", default=[10_000, 100_000], help="rows per batch")
    parser.add_argument("--fit-rows", type=int, default=256_000)
    parser.add_argument("--check-seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    report: dict = {
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor(),
            "accelerator_auto": torchkernel.resolve_accelerator("auto"),
        },
        "gemm_fp32_gflops": round(gemm_rate(args.device), 1),
        "assignment_checks": check_assignment(args.device, args.check_seeds),
        "assignment": [
            time_assignment(args.device, args.rows, args.dim, k, batch, args.repeats)
            for k in args.k
            for batch in args.batches
        ],
        "fit": [time_fit(args.device, args.fit_rows, args.dim, k) for k in args.k[:1]],
    }
    print(json.dumps(report, indent=2))
    print(f"GEMM floor: {report['gemm_fp32_gflops']} GFLOP/s fp32; checks: {report['assignment_checks']}")
    for row in report["assignment"]:
        print(
            f"assign {row['rows']}x{row['dim']} k={row['k']} batch {row['batch_rows']}: numpy {row['numpy_s']} s, "
            f"device {row['device_s']} s ({row['speedup']}x, {row['device_gflops']} GFLOP/s), same {row['same_assignment']}"
        )
    for row in report["fit"]:
        print(
            f"fit {row['rows']}x{row['dim']} k={row['k']}: numpy {row['numpy_s']} s, device {row['device_s']} s "
            f"({row['speedup']}x), same centers {row['same_centers_bitwise']}"
        )


if __name__ == "__main__":
    main()
