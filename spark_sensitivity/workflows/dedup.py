"""The dedup job (``spark-sensitivity dedup``) and the dedup step of ``select --dedup-eps``.

k-means runs on a sample of the unit embeddings (the project's fit: driver or MLlib), then
``dedup`` finds the removed rows on the executors. Published: ``duplicates/`` (one row per removed
row), ``kept/`` (the input's rows less the removed ones) and ``manifest.json``, atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.cli.flags import add_config, add_key_values, add_running, number, seed_type
from spark_sensitivity.core import cluster
from spark_sensitivity.core.dedup import (
    CROSS_COL,
    DUPLICATE_OF_COL,
    KEEP_RULES,
    SIMILARITY_COL,
    DedupSettings,
    assign_neighbors,
    find_duplicates,
    unit_vectors,
)
from spark_sensitivity.core.dedupkernel import DEFAULT_BLOCK_ROWS
from spark_sensitivity.core.vectors import parse_text_vectors
from spark_sensitivity.io.provenance import utc_timestamp, versions
from spark_sensitivity.io.publish import publishing
from spark_sensitivity.io.redaction import redact, redact_text
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.io.storage import INPUT_FORMATS, read_input
from spark_sensitivity.ml.estimator import check_ids

log = logging.getLogger("spark_sensitivity")
REQUIRED_DEDUP_FLAGS = ("input", "output", "dedup_eps")
EXAMPLE_PAIRS = 5


@dataclass
class DedupConfig:
    """Every setting of one dedup run (the CLI flags, one to one)."""

    input: str
    output: str
    dedup_eps: float
    k: int = 100
    format: str = "parquet"
    input_options: dict[str, str] = field(default_factory=dict)
    id_col: str = "id"
    vector_col: str = "embedding"
    dedup_keep: str = "farthest"
    dedup_neighbors: int = 1
    dedup_block_rows: int = DEFAULT_BLOCK_ROWS
    seed: int = 0
    max_iter: int = 20
    tol: float = 1e-4
    init_mode: str = "k-means||"
    init_steps: int = 2
    fit_fraction: float | None = None
    points_per_center: int = 256
    fit_engine: str = "auto"
    driver_fit_max_mb: int = 512
    on_invalid: str = "fail"
    check_unique_ids: bool = True
    overwrite: bool = False
    run_id: str | None = None
    config_file: str | None = None


def add_dedup_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--dedup-eps and its companions (shared by ``dedup`` and ``select``)."""
    group = parser.add_argument_group("semantic deduplication")
    group.add_argument(
        "--dedup-eps",
        type=float,
        default=None,
        help="rows of one k-means cluster whose cosine similarity is at least 1 - E are near-duplicates; "
        "one of each group is kept"
        + (" (required)" if required else "; select then draws from the kept rows"),
    )
    group.add_argument(
        "--dedup-keep",
        default="farthest",
        choices=KEEP_RULES,
        help="which row of a group is kept: rows are taken farthest from the cluster center first "
        "(SemDeDup's default) or nearest first, and a row is removed when it is that similar to an "
        "earlier kept row (default: farthest)",
    )
    group.add_argument(
        "--dedup-neighbors",
        type=int,
        default=1,
        choices=(1, 2),
        help="2: also compare every kept row with the kept rows of its second-nearest cluster, which "
        "finds most duplicates split across two clusters, for about twice the comparisons (default: 1)",
    )
    group.add_argument(
        "--dedup-block-rows",
        type=int,
        default=DEFAULT_BLOCK_ROWS,
        help=f"rows compared at once; bounds a task's similarity matrix (default: {DEFAULT_BLOCK_ROWS})",
    )


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
    check_ids(df, id_col, config.check_unique_ids)
    n_rows = df.count()
    if n_rows == 0:
        raise ValueError(f"input {redact_text(config.input)} has no rows")
    if config.fit_fraction is not None:
        fraction = config.fit_fraction
    elif config.points_per_center == 0:
        fraction = 1.0
    else:
        fraction = min(1.0, config.points_per_center * config.k / n_rows)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fitFraction must be in (0, 1], got {fraction}")
    unit = df.select(id_col, unit_vectors(df, vector_col).alias(vector_col))
    fit = cluster.fit_centers(cluster.fit_sample(unit, id_col, vector_col, fraction, config.seed), kmeans)
    fitted = time.perf_counter()

    assigned = assign_neighbors(df, id_col, vector_col, fit.centers).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        invalid = assigned.where(F.col(cluster.CLUSTER_COL).isNull())
        invalid_rows = invalid.count()
        if invalid_rows and config.on_invalid == "fail":
            examples = ", ".join(str(row[0]) for row in invalid.select(id_col).limit(3).collect())
            raise ValueError(
                f"embedding column {vector_col!r} has {invalid_rows} rows that are null, of the wrong "
                f"length or not finite (e.g. ids {examples}); fix them, or skip them with --on-invalid skip"
            )
        dim = fit.centers.shape[1]
        sizes = [
            row[0]
            for row in assigned.where(F.col(cluster.CLUSTER_COL).isNotNull())
            .groupBy(cluster.CLUSTER_COL)
            .count()
            .select("count")
            .collect()
        ]
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


def add_dedup_command_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``spark-sensitivity dedup`` (input and k-means flags as in ``select``)."""
    add_config(parser, " (dedup-eps: 0.05)")
    data = parser.add_argument_group("input")
    data.add_argument("--input", help="input path, or a catalog table name with --format table (required)")
    data.add_argument(
        "--format", default="parquet", choices=INPUT_FORMATS, help="input format (default: parquet)"
    )
    add_key_values(data, "--input-option", "a reader option, repeatable (e.g. sep=;)")
    data.add_argument("--id-col", default="id", help="unique, non-null row id column (default: id)")
    data.add_argument("--vector-col", default="embedding", help="embedding column (default: embedding)")
    data.add_argument(
        "--on-invalid",
        default="fail",
        choices=("fail", "skip"),
        help="rows with a null, wrong-length or non-finite embedding: fail (default) or skip them "
        "(left out of kept/ and counted)",
    )
    data.add_argument("--skip-id-check", action="store_true", help="do not check that ids are unique")
    method = parser.add_argument_group("clustering (as in select)")
    method.add_argument(
        "--k", type=number(int, 1), default=100, help="k-means clusters of the unit embeddings (default: 100)"
    )
    method.add_argument(
        "--seed",
        type=seed_type(),
        default=0,
        help="seeds the fit sample, k-means and tie-breaks (default: 0)",
    )
    method.add_argument(
        "--max-iter", type=number(int, 1), default=20, help="k-means iterations at most (default: 20)"
    )
    method.add_argument(
        "--tol", type=number(float, 0), default=1e-4, help="k-means tolerance (default: 1e-4)"
    )
    method.add_argument("--init-mode", default="k-means||", choices=("k-means||", "random"))
    method.add_argument("--init-steps", type=number(int, 1), default=2, help="k-means|| steps (default: 2)")
    method.add_argument(
        "--fit-fraction",
        type=number(float, 0, 1, above=True),
        default=None,
        help="fit k-means on this fraction, in (0, 1]",
    )
    method.add_argument(
        "--points-per-center",
        type=int,
        default=256,
        help="fit on about this many rows per center (default: 256)",
    )
    method.add_argument("--fit-engine", default="auto", choices=cluster.ENGINES)
    method.add_argument("--driver-fit-max-mb", type=number(int, 0), default=512)
    add_dedup_arguments(parser, required=True)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--output",
        help="output folder (required): duplicates/, kept/ and manifest.json appear together or not at all",
    )
    output.add_argument("--run-id", help="run id for the manifest and {run_id} (default: a new one)")
    output.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_running(parser)


def config_from_args(args: argparse.Namespace) -> DedupConfig:
    return DedupConfig(
        input=args.input,
        output=args.output,
        dedup_eps=args.dedup_eps,
        k=args.k,
        format=args.format,
        input_options=dict(args.input_option),
        id_col=args.id_col,
        vector_col=args.vector_col,
        dedup_keep=args.dedup_keep,
        dedup_neighbors=args.dedup_neighbors,
        dedup_block_rows=args.dedup_block_rows,
        seed=args.seed,
        max_iter=args.max_iter,
        tol=args.tol,
        init_mode=args.init_mode,
        init_steps=args.init_steps,
        fit_fraction=args.fit_fraction,
        points_per_center=args.points_per_center,
        fit_engine=args.fit_engine,
        driver_fit_max_mb=args.driver_fit_max_mb,
        on_invalid=args.on_invalid,
        check_unique_ids=not args.skip_id_check,
        overwrite=args.overwrite,
        run_id=args.run_id,
        config_file=args.config,
    )


def summary_line(manifest: dict[str, Any]) -> str:
    info = manifest["dedup"]
    return (
        f"removed {info['removed_rows']} near-duplicates ({info['removed_cross_cluster']} across clusters) "
        f"of {info['input_rows']} rows at eps {info['eps']}; kept {info['kept_rows']}; "
        f"{manifest['timings']['total_seconds']:.1f} s\noutput: {manifest['output']} (duplicates/, kept/, manifest.json)"
    )
