"""The embed job: read raw rows, embed them, and publish a table of id + embedding atomically.

The published folder is the table itself (Parquet parts) with ``_manifest.json`` beside them.
"""

from __future__ import annotations

import time
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from spark_sensitivity.embedders.stage import embed_frame
from spark_sensitivity.io import progress
from spark_sensitivity.io.provenance import utc_timestamp, versions
from spark_sensitivity.io.publish import publishing
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.settings import EmbedConfig, SettingError, check_settings

MANIFEST = "_manifest.json"  # a leading underscore: Spark and pyarrow skip it when reading the table


def _needed_columns(df: DataFrame, config: EmbedConfig) -> tuple[list[str], list[str]]:
    """The columns the job reads (checked to exist) and the input columns copied to the output."""
    vectors = config.embed_options.get("column") or config.vector_col  # what 'precomputed' reads
    sources = [config.text_col, config.image_col, vectors if config.embedder == "precomputed" else None]
    missing = [c for c in (config.id_col, *config.keep_cols, *sources) if c and c not in df.columns]
    if missing:
        raise ValueError(f"input has no column {missing[0]!r} (columns: {df.columns})")
    kept = [c for c in config.keep_cols if c not in (config.id_col, config.vector_col)]
    return [config.id_col, *kept, *(c for c in sources if c)], kept


def run_embed_job(spark: SparkSession, config: EmbedConfig) -> dict[str, Any]:
    """Embeds ``config.input`` and publishes id + embedding (+ kept columns) under ``config.output``."""
    check_settings(config)
    if config.text_col and config.image_col:
        raise SettingError("give text_col or image_col, not both", "text_col", "image_col")
    started = time.perf_counter()
    inputs = {"--input": None if config.format == "table" else config.input}
    with publishing(spark, config.output, config.overwrite, inputs, manifest_name=MANIFEST) as job:
        df = read_input(spark, config.input, config.format, dict(config.input_options))
        needed, kept = _needed_columns(df, config)
        # Only the columns the job needs travel through the Python workers.
        embedded, report = embed_frame(
            df.select(*dict.fromkeys(needed)),
            id_col=config.id_col,
            output_col=config.vector_col,
            on_invalid=config.on_invalid,
            **config.embedding,
        )
        embedded = embedded.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            # The row count (no Python worker, Parquet answers from its footers) lets the stage
            # report rows done, rows/s and time left while the model runs.
            with progress.stage(spark, "embed", rows=df.count()):
                counts = report.check()  # embeds every row once, into the cache
            embedded_at = time.perf_counter()
            with progress.stage(spark, "write", rows=counts.embedded):
                report.valid.select(config.id_col, config.vector_col, *kept).write.parquet(job.output.staging)
            written_at = time.perf_counter()
        finally:
            embedded.unpersist()
        job.manifest = {
            "parameters": {
                "input": config.input,
                "format": config.format,
                "id_col": config.id_col,
                "text_col": config.text_col,
                "image_col": config.image_col,
                "vector_col": config.vector_col,
                "keep_cols": kept,
                "on_invalid": config.on_invalid,
                **config.embedding,
            },
            **counts.as_dict(),
            "embedder_fit": report.fit_info,
            "timings": {
                "embed_seconds": round(embedded_at - started, 3),
                "write_seconds": round(written_at - embedded_at, 3),
                "total_seconds": round(written_at - started, 3),
            },
            "versions": versions(spark),
            "created": utc_timestamp(),
            "output": config.output,
        }
    return job.manifest
