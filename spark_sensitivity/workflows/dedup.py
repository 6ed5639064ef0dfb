"""The dedup job (``spark-sensitivity dedup``) and the dedup step of ``select --dedup-eps``.

k-means runs on a sample of the unit embeddings (the project's fit: driver or MLlib), then
``dedup`` finds the removed rows on the executors. Published: ``duplicates/`` (one row per removed
row), ``kept/`` (the input's rows less the removed ones) and ``manifest.json``, atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core.dedup.search import (
    CROSS_COL,
    DUPLICATE_OF_COL,
    GROUP_COL,
    SIMILARITY_COL,
    DedupSettings,
    assign_neighbors,
    find_duplicates,
    unit_rows,
)
from spark_sensitivity.core.dedup.split import regroup, split_giant_clusters, split_plan
from spark_sensitivity.core.kmeans import cluster
from spark_sensitivity.core.kmeans.assigned import check_ids
from spark_sensitivity.core.vectors import parse_text_vectors
from spark_sensitivity.io import progress
from spark_sensitivity.io.provenance import utc_timestamp, versions
from spark_sensitivity.io.publish import publishing
from spark_sensitivity.io.redaction import redact, redact_text
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.settings import DedupConfig

log = logging.getLogger("spark_sensitivity")
EXAMPLE_PAIRS = 5


def deduplicate(df: DataFrame, config: Any, duplicates_path: str) -> tuple[DataFrame, dict[str, Any]]:
    """Finds the near-duplicates of ``df``, writes them to ``duplicates_path`` (Parquet) and returns
    the kept rows (the input's rows less removed and skipped ones) and the facts for the manifest.

    ``config`` is a :class:`DedupConfig` or a ``SelectConfig`` with --dedup-eps set.
    """
    settings = DedupSettings.from_config(config)
    kmeans = cluster.KMeansSettings.from_config(config)
    id_col, vector_col = config.id_col, config.vector_col
    missing = [c for c in (id_col, vector_col) if c not in df.columns]
    if missing:
        raise ValueError(f"input has no column {missing[0]!r} (columns: {df.columns})")
    spark = df.sparkSession
    started = time.perf_counter()
    with progress.stage(spark, "dedup: check ids"):
        n_rows = check_ids(df, id_col, config.check_unique_ids)
    if n_rows == 0:
        raise ValueError(f"input {redact_text(config.input)} has no rows")
    with progress.stage(spark, "dedup: k-means"):
        fit = cluster.fit(unit_rows(df, id_col, vector_col), id_col, vector_col, kmeans, n_rows)
    fitted = time.perf_counter()
    with progress.stage(spark, "dedup: compare", rows=n_rows):
        info = _find(df, config, settings, kmeans, fit.centers, duplicates_path)
    duplicates = spark.read.parquet(duplicates_path)
    info.update(summarize(duplicates, id_col))
    invalid = info.pop("invalid")
    dropped = duplicates.select(id_col)
    if info["invalid_rows"]:
        dropped = dropped.unionByName(invalid.select(id_col))
    kept = df.join(dropped, on=id_col, how="left_anti")
    info.update(
        {
            "eps": settings.eps,
            "keep": settings.keep,
            "neighbors": settings.neighbors,
            "input_rows": n_rows,
            "kept_rows": n_rows - info["invalid_rows"] - info["removed_rows"],
            "dimension": fit.centers.shape[1],
            "kmeans_fit": {
                "fit_fraction": fit.fit_fraction,
                "fit_rows": fit.fit_rows,
                "kmeans_engine": fit.engine,
                "kmeans_iterations": fit.iterations,
            },
            "kmeans_seconds": round(fitted - started, 3),
            "dedup_seconds": round(time.perf_counter() - fitted, 3),
        }
    )
    log.info(
        "stage dedup: removed %d of %d rows (%d across clusters), %.1f s",
        info["removed_rows"],
        n_rows,
        info["removed_cross_cluster"],
        info["dedup_seconds"],
    )
    return kept, info


def _find(
    df: DataFrame,
    config: Any,
    settings: DedupSettings,
    kmeans: cluster.KMeansSettings,
    centers: np.ndarray,
    duplicates_path: str,
) -> dict[str, Any]:
    """Assigns the rows, splits the giant clusters and writes the removed rows to ``duplicates_path``;
    returns the group facts, the invalid rows' count and (as ``invalid``) those rows."""
    id_col, vector_col = config.id_col, config.vector_col
    # The rows with their embeddings (1.5 GB at 1M x 384) are read again by the comparison: kept on
    # disk, not in the JVM heap, where caching them ran a 4 GB driver out of memory at 1M rows.
    assigned = assign_neighbors(df, id_col, vector_col, centers).persist(StorageLevel.DISK_ONLY)
    grouped = assigned
    try:
        invalid, invalid_rows = _invalid_rows(assigned, id_col, vector_col, config.on_invalid)
        sizes = _sizes(assigned, cluster.CLUSTER_COL)
        parts = split_plan(sizes, settings.max_cluster_rows)
        if parts:
            grouped = _split(assigned, config, centers, sizes, parts, kmeans)
        group_sizes = _sizes(grouped, GROUP_COL) if parts else sizes
        with find_duplicates(grouped, id_col, vector_col, centers.shape[1], settings) as found:
            found.write.parquet(duplicates_path)
    finally:
        grouped.unpersist()
        assigned.unpersist()
    return {
        "invalid": invalid,
        "invalid_rows": invalid_rows,
        "max_cluster_rows": settings.max_cluster_rows,
        "largest_cluster": max(sizes.values(), default=0),
        "split_clusters": len(parts),
        "groups": len(group_sizes),
        "largest_group": max(group_sizes.values(), default=0),
        # Within-group pairs, an upper bound of the comparisons (rows meet kept rows only).
        "pairs_compared_at_most": sum(size * (size - 1) // 2 for size in group_sizes.values()),
    }


def _split(
    assigned: DataFrame,
    config: Any,
    centers: np.ndarray,
    sizes: dict[int, int],
    parts: dict[int, int],
    kmeans: cluster.KMeansSettings,
) -> DataFrame:
    """The assigned rows regrouped with the giant clusters split (persisted: the caller frees it)."""
    log.info(
        "stage dedup: splitting %d clusters above %d rows (largest %d) into %d parts",
        len(parts),
        config.dedup_max_cluster_rows,
        max(sizes.values()),
        sum(parts.values()),
    )
    dim = centers.shape[1]
    part_centers = split_giant_clusters(assigned, config.id_col, config.vector_col, dim, sizes, parts, kmeans)
    return regroup(assigned, config.vector_col, centers, part_centers).persist(StorageLevel.DISK_ONLY)


def _invalid_rows(assigned: DataFrame, id_col: str, vector_col: str, policy: str) -> tuple[DataFrame, int]:
    """The rows with an invalid embedding and their count; a ValueError when the policy is 'fail'."""
    invalid = assigned.where(F.col(cluster.CLUSTER_COL).isNull())
    count = invalid.count()
    if count and policy == "fail":
        examples = ", ".join(str(row[0]) for row in invalid.select(id_col).limit(3).collect())
        raise ValueError(
            f"embedding column {vector_col!r} has {count} rows that are null, of the wrong "
            f"length or not finite (e.g. ids {examples}); fix them, or skip them with --on-invalid skip"
        )
    return invalid, count


def _sizes(assigned: DataFrame, key: str) -> dict[int, int]:
    """The sizes of the non-empty clusters or groups (one number per group to the driver)."""
    valid = assigned.where(F.col(key).isNotNull())
    return {row[0]: row[1] for row in valid.groupBy(key).count().collect()}


def summarize(duplicates: DataFrame, id_col: str) -> dict[str, Any]:
    """Counts (in total, across clusters, per cluster: k rows at most) and a few example pairs."""
    per_cluster = (
        duplicates.groupBy(cluster.CLUSTER_COL)
        .agg(F.count(F.lit(1)).alias("removed"), F.sum(F.col(CROSS_COL).cast("int")).alias("cross"))
        .collect()
    )
    examples = (
        duplicates.orderBy(F.col(SIMILARITY_COL).asc(), F.col(id_col))
        .select(id_col, DUPLICATE_OF_COL, SIMILARITY_COL, cluster.CLUSTER_COL)
        .limit(EXAMPLE_PAIRS)
        .collect()
    )
    return {
        "removed_rows": sum(row["removed"] for row in per_cluster),
        "removed_cross_cluster": sum(row["cross"] for row in per_cluster),
        "removed_per_cluster": {
            str(row[cluster.CLUSTER_COL]): row["removed"]
            for row in sorted(per_cluster, key=lambda r: r[cluster.CLUSTER_COL])
        },
        "least_similar_pairs": [
            {"id": row[0], DUPLICATE_OF_COL: row[1], SIMILARITY_COL: round(row[2], 6), "cluster_id": row[3]}
            for row in examples
        ],
    }


def run_dedup(spark: SparkSession, config: DedupConfig) -> dict[str, Any]:
    """Runs one dedup and publishes duplicates/, kept/ and manifest.json; returns the manifest."""
    if config.dedup_eps is None:
        raise ValueError("--dedup-eps is required")
    DedupSettings.from_config(config)
    cluster.KMeansSettings.from_config(config)  # refuses a bad k before Spark reads anything
    config = resolve_output(config)
    inputs = {"--input": None if config.format == "table" else config.input}
    with publishing(spark, config.output, config.overwrite, inputs) as job:
        started = time.perf_counter()
        df = parse_text_vectors(
            read_input(spark, config.input, config.format, config.input_options), config.vector_col
        )
        kept, info = deduplicate(df, config, job.output.path("duplicates"))
        with progress.stage(spark, "dedup: write kept rows", rows=info["kept_rows"]):
            kept.write.parquet(job.output.path("kept"))
        job.manifest = redact(
            {
                "run_id": config.run_id,
                "parameters": dataclasses.asdict(config),
                "dedup": info,
                "versions": versions(spark),
                "created": utc_timestamp(),
                "timings": {"total_seconds": round(time.perf_counter() - started, 3)},
                "output": config.output,
            }
        )
    return job.manifest
