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

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core import cluster
from spark_sensitivity.core.assigned import check_ids
from spark_sensitivity.core.dedup import (
    CROSS_COL,
    DUPLICATE_OF_COL,
    SIMILARITY_COL,
    DedupSettings,
    assign_neighbors,
    find_duplicates,
    unit_vectors,
)
from spark_sensitivity.core.vectors import parse_text_vectors
from spark_sensitivity.io.provenance import utc_timestamp, versions
from spark_sensitivity.io.publish import publishing
from spark_sensitivity.io.redaction import redact, redact_text
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.settings import DedupConfig

log = logging.getLogger("spark_sensitivity")
EXAMPLE_PAIRS = 5


def settings_from(config: Any) -> DedupSettings:
    return DedupSettings(
        eps=config.dedup_eps,
        keep=config.dedup_keep,
        neighbors=config.dedup_neighbors,
        block_rows=config.dedup_block_rows,
        seed=config.seed,
    )


def kmeans_settings(config: Any) -> cluster.KMeansSettings:
    if config.k < 1:
        raise ValueError(f"k must be at least 1, got {config.k}")
    return cluster.KMeansSettings(
        k=config.k,
        max_iter=config.max_iter,
        tol=config.tol,
        init_mode=config.init_mode,
        init_steps=config.init_steps,
        seed=config.seed,
        engine=config.fit_engine,
        driver_max_bytes=config.driver_fit_max_mb << 20,
    )


def deduplicate(df: DataFrame, config: Any, duplicates_path: str) -> tuple[DataFrame, dict[str, Any]]:
    """Finds the near-duplicates of ``df``, writes them to ``duplicates_path`` (Parquet) and returns
    the kept rows (the input's rows less removed and skipped ones) and the facts for the manifest.

    ``config`` is a :class:`DedupConfig` or a ``SelectConfig`` with --dedup-eps set.
    """
    settings = settings_from(config)
    settings.validate()
    kmeans = kmeans_settings(config)
    id_col, vector_col = config.id_col, config.vector_col
    missing = [c for c in (id_col, vector_col) if c not in df.columns]
    if missing:
        raise ValueError(f"input has no column {missing[0]!r} (columns: {df.columns})")
    started = time.perf_counter()
    n_rows = check_ids(df, id_col, config.check_unique_ids)
    if n_rows == 0:
        raise ValueError(f"input {redact_text(config.input)} has no rows")
    fraction = cluster.fit_fraction(config.fit_fraction, config.points_per_center, config.k, lambda: n_rows)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fitFraction must be in (0, 1], got {fraction}")
    unit = df.select(id_col, unit_vectors(df, vector_col).alias(vector_col))
    fit = cluster.fit_centers(cluster.fit_sample(unit, id_col, vector_col, fraction, config.seed), kmeans)
    fitted = time.perf_counter()

    assigned = assign_neighbors(df, id_col, vector_col, fit.centers).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        invalid, invalid_rows = _invalid_rows(assigned, id_col, vector_col, config.on_invalid)
        dim = fit.centers.shape[1]
        sizes = _cluster_sizes(assigned)
        with find_duplicates(assigned, id_col, vector_col, dim, settings) as found:
            found.write.parquet(duplicates_path)
    finally:
        assigned.unpersist()
    duplicates = df.sparkSession.read.parquet(duplicates_path)
    info = summarize(duplicates, id_col)
    dropped = duplicates.select(id_col)
    if invalid_rows:
        dropped = dropped.unionByName(invalid.select(id_col))
    kept = df.join(dropped, on=id_col, how="left_anti")
    info.update(
        {
            "eps": settings.eps,
            "keep": settings.keep,
            "neighbors": settings.neighbors,
            "input_rows": n_rows,
            "invalid_rows": invalid_rows,
            "kept_rows": n_rows - invalid_rows - info["removed_rows"],
            "largest_cluster": max(sizes, default=0),
            # Within-cluster pairs, an upper bound of the comparisons (rows meet kept rows only).
            "pairs_compared_at_most": sum(size * (size - 1) // 2 for size in sizes),
            "dimension": dim,
            "kmeans_fit": {
                "fit_fraction": fraction,
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


def _cluster_sizes(assigned: DataFrame) -> list[int]:
    """The sizes of the non-empty clusters (k numbers to the driver)."""
    valid = assigned.where(F.col(cluster.CLUSTER_COL).isNotNull())
    return [row[0] for row in valid.groupBy(cluster.CLUSTER_COL).count().select("count").collect()]


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
    settings_from(config).validate()
    kmeans_settings(config)
    config = resolve_output(config)
    inputs = {"--input": None if config.format == "table" else config.input}
    with publishing(spark, config.output, config.overwrite, inputs) as job:
        started = time.perf_counter()
        df = parse_text_vectors(
            read_input(spark, config.input, config.format, config.input_options), config.vector_col
        )
        kept, info = deduplicate(df, config, job.output.path("duplicates"))
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
