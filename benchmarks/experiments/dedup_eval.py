"""Evidence for semantic deduplication (docs/DEDUP.md): planted duplicates, Fashion-MNIST's own
near-duplicates, and throughput against single-machine numpy baselines.

Feeds docs/DEDUP.md, section "Evidence" (blobs, Fashion-MNIST, throughput; its ``dedup``,
``planted_scores`` and ``write`` also serve ``dedup_text``), and docs/PERFORMANCE.md, section
"Semantic deduplication (`dedup`, `select --dedup-eps`)" (the throughput table). From the
repository root:

    python -m benchmarks.experiments.dedup_eval --workdir runs/dedup_eval [--rows 100000]

Prints one JSON document. Planted groups are a source row plus one or two copies with tiny noise;
recall = rows of planted groups removed / (group size - 1, summed), precision = removed rows that
name a row of their own group / all removed rows (blobs hold no natural near-duplicates at the eps
used). Timings are indicative: the machine is shared; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spark_sensitivity.core.dedup.kernel import ClusterDeduper, normalize_rows
from spark_sensitivity.io.datasets import load_fashion_mnist, pca_embed
from spark_sensitivity.settings import DedupConfig
from spark_sensitivity.workflows.dedup import run_dedup


def plant(
    base: np.ndarray, pairs: int, triples: int, noise: float, seed: int
) -> tuple[np.ndarray, list[set[int]]]:
    """base plus copies (relative Gaussian noise of scale ``noise``); returns points and groups."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(base), size=pairs + triples, replace=False)
    copy_of = np.concatenate([sources, sources[pairs:]])
    scale = noise * np.linalg.norm(base[copy_of], axis=1, keepdims=True) / np.sqrt(base.shape[1])
    copies = base[copy_of] + rng.normal(size=(len(copy_of), base.shape[1])) * scale
    groups = {int(s): {int(s)} for s in sources}
    for i, s in enumerate(copy_of):
        groups[int(s)].add(len(base) + i)
    return np.vstack([base, copies]), list(groups.values())


def write(path: Path, points: np.ndarray) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    flat = pa.array(np.ascontiguousarray(points, dtype=np.float32).ravel())
    table = pa.table(
        {
            "id": pa.array(np.arange(len(points), dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, points.shape[1]).cast(
                pa.list_(pa.float32())
            ),
        }
    )
    pq.write_table(table, path / "part-0.parquet")
    return path


def dedup(
    spark, table: Path, out: Path, eps: float, k: int, neighbors: int = 1
) -> tuple[dict, dict[int, int]]:
    manifest = run_dedup(
        spark,
        DedupConfig(
            input=str(table), output=str(out), dedup_eps=eps, k=k, dedup_neighbors=neighbors, overwrite=True
        ),
    )
    rows = spark.read.parquet(str(out / "duplicates")).select("id", "duplicate_of").collect()
    return manifest, {r.id: r.duplicate_of for r in rows}


def planted_scores(pairs: dict[int, int], groups: list[set[int]]) -> dict[str, float]:
    group_of = {i: g for g, group in enumerate(groups) for i in group}
    expected = sum(len(group) - 1 for group in groups)
    found = sum(min(len(group & pairs.keys()), len(group) - 1) for group in groups)
    right = sum(1 for i, j in pairs.items() if i in group_of and group_of.get(j) == group_of[i])
    return {
        "planted_removals": expected,
        "recall": found / expected,
        "precision": right / len(pairs) if pairs else 1.0,
        "missed": expected - found,
        "removed_outside_planted_groups": sum(1 for i in pairs if i not in group_of),
    }


def numpy_all_pairs(points: np.ndarray, eps: float, block: int = 1024) -> tuple[int, float]:
    """Baseline: every pair of the whole table (no clustering), float32 blocks. Returns the number
    of rows with an earlier row at cosine >= 1 - eps (what a global pass would flag) and seconds."""
    started = time.perf_counter()
    unit = normalize_rows(points).astype(np.float32)
    threshold = np.float32(1.0 - eps)
    flagged = np.zeros(len(unit), dtype=bool)
    for start in range(0, len(unit), block):
        rows = unit[start : start + block]
        earlier = (rows @ unit[:start].T >= threshold).any(axis=1) if start else False
        inner = np.tril(rows @ rows.T >= threshold, k=-1).any(axis=1)
        flagged[start : start + len(rows)] = earlier | inner
    return int(flagged.sum()), time.perf_counter() - started


def numpy_clustered(points: np.ndarray, eps: float, k: int, seed: int = 0) -> tuple[int, float, float]:
    """Baseline: the same within-cluster rule on one machine (random unit centers from the data, the
    kernel per cluster). Returns removed rows, seconds of the comparisons, multiply-adds."""
    unit = normalize_rows(points)
    centers = unit[np.random.default_rng(seed).choice(len(unit), k, replace=False)]
    started = time.perf_counter()
    cluster = (unit.astype(np.float32) @ centers.T.astype(np.float32)).argmax(axis=1)
    removed, work = 0, 0
    for j in range(k):
        members = unit[cluster == j]
        deduper = ClusterDeduper(unit.shape[1], 1.0 - eps)
        for start in range(0, len(members), deduper.block_rows):
            removed += int(deduper.add(members[start : start + deduper.block_rows]).removed.sum())
        work += deduper.multiply_adds
    return removed, time.perf_counter() - started, float(work)


def cluster_size_scaling(dim: int, sizes: list[int]) -> list[dict[str, float]]:
    """The kernel on one cluster of each size (no duplicates: every row is kept, the worst case)."""
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        x = rng.normal(size=(size, dim))
        deduper = ClusterDeduper(dim, 0.99)
        started = time.perf_counter()
        for start in range(0, size, deduper.block_rows):
            deduper.add(x[start : start + deduper.block_rows])
        seconds = time.perf_counter() - started
        rows.append(
            {
                "rows": size,
                "seconds": round(seconds, 3),
                "multiply_adds": float(deduper.multiply_adds),
                "gmadd_per_s": round(deduper.multiply_adds / seconds / 1e9, 2),
                "kept_store_mib": round(deduper.kept.x64.nbytes * 1.5 / 2**20, 1),
            }
        )
    return rows


def fashion_pairs(pairs: dict[int, int], labels: np.ndarray, count: int = 6) -> list[dict]:
    chosen = sorted(pairs.items())[:count]
    return [
        {"id": i, "duplicate_of": j, "label": int(labels[i]), "label_of_kept": int(labels[j])}
        for i, j in chosen
    ]


def main() -> None:
    """The three measurements one after the other, in one Spark session, into one JSON document.

    Why this is long: it is the script's single linear record of what docs/DEDUP.md quotes (blobs
    with planted copies, Fashion-MNIST's own and planted near-duplicates, the numpy baselines), each
    part a few lines of set-up and a dict of figures; split up, the parts would only pass the session,
    the work folder and the shared random stream around.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/dedup_eval")
    parser.add_argument("--rows", type=int, default=100_000, help="blob rows before planting")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    work = Path(args.workdir)
    result: dict = {
        "load_average_at_start": os.getloadavg(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }

    # 1. Blobs with planted pairs and triples.
    rng = np.random.default_rng(1)
    means = rng.normal(scale=3.0, size=(50, args.dim))
    base = means[rng.integers(0, 50, args.rows)] + rng.normal(size=(args.rows, args.dim))
    points, groups = plant(base, pairs=2000, triples=1000, noise=1e-3, seed=2)
    table = write(work / "blobs", points)
    blobs = {}
    for neighbors in (1, 2):
        manifest, pairs = dedup(spark, table, work / f"blobs_out_{neighbors}", 0.001, args.k, neighbors)
        info = manifest["dedup"]
        blobs[f"neighbors_{neighbors}"] = {
            **planted_scores(pairs, groups),
            "removed_cross_cluster": info["removed_cross_cluster"],
            "dedup_seconds": info["dedup_seconds"],
            "kmeans_seconds": info["kmeans_seconds"],
            "rows_per_second": round(len(points) / info["dedup_seconds"]),
            "pairs_compared_at_most": info["pairs_compared_at_most"],
            "multiply_adds_at_most": info["pairs_compared_at_most"] * info["dimension"],
            "largest_cluster": info["largest_cluster"],
        }
    flagged, seconds = numpy_all_pairs(points, 0.001)
    removed, clustered_seconds, clustered_work = numpy_clustered(points, 0.001, args.k)
    blobs["rows"] = len(points)
    blobs["numpy_all_pairs"] = {
        "rows_flagged": flagged,
        "seconds": round(seconds, 2),
        "rows_per_second": round(len(points) / seconds),
        "multiply_adds": len(points) * (len(points) - 1) / 2 * args.dim,
    }
    blobs["numpy_same_rule_one_machine"] = {
        "removed": removed,
        "seconds": round(clustered_seconds, 2),
        "rows_per_second": round(len(points) / clustered_seconds),
        "multiply_adds": clustered_work,
    }
    result["blobs"] = blobs

    # 2. Fashion-MNIST (PCA-32 of the pixels): its own near-duplicates, then planted copies.
    images, labels = load_fashion_mnist("train")
    embedded = pca_embed(images, 32)
    table = write(work / "fmnist", embedded)
    natural = {}
    for eps in (0.01, 0.05, 0.1):
        manifest, pairs = dedup(spark, table, work / f"fmnist_out_{eps}", eps, 50)
        natural[str(eps)] = {
            "removed": manifest["dedup"]["removed_rows"],
            "share": round(manifest["dedup"]["removed_rows"] / len(embedded), 4),
            "same_label_share": round(np.mean([labels[i] == labels[j] for i, j in pairs.items()]), 4),
            "dedup_seconds": manifest["dedup"]["dedup_seconds"],
            "examples": fashion_pairs(pairs, labels),
        }
    result["fashion_mnist_natural"] = natural
    noisy = np.clip(images[:3000].astype(np.float32) + rng.normal(scale=2.0, size=(3000, 28, 28)), 0, 255)
    copies_pixels = np.concatenate([images.astype(np.float32), noisy, noisy[2000:] + 1.0])
    # PCA of the pixels with the copies (+- 2 grey levels of noise; the triples' third copy 1 level brighter).
    planted = pca_embed(copies_pixels.astype(np.float32), 32)
    groups = [{i, 60_000 + i} for i in range(2000)] + [{i, 60_000 + i, 61_000 + i} for i in range(2000, 3000)]
    table = write(work / "fmnist_planted", planted)
    planted_result = {}
    for neighbors in (1, 2):
        manifest, pairs = dedup(spark, table, work / f"fmnist_planted_out_{neighbors}", 0.001, 50, neighbors)
        scores = planted_scores(pairs, groups)
        planted_result[f"neighbors_{neighbors}"] = {
            **scores,
            "removed": manifest["dedup"]["removed_rows"],
            "removed_cross_cluster": manifest["dedup"]["removed_cross_cluster"],
            "dedup_seconds": manifest["dedup"]["dedup_seconds"],
        }
    result["fashion_mnist_planted_eps_0.001"] = planted_result
    result["cluster_size_scaling_d32"] = cluster_size_scaling(32, [2_000, 8_000, 32_000])
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2, default=float))
    spark.stop()


if __name__ == "__main__":
    main()
