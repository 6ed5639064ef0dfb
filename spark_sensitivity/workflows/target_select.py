"""--target: the rows a subset should look like, read (and embedded) as the input is, and the draws
that follow their cluster shares (``core.sampling.target``; docs/METHOD.md, "Target-matched selection")."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core.sampling import strategies
from spark_sensitivity.core.vectors import parse_text_vectors
from spark_sensitivity.io.redaction import redact_text
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.workflows.embedding import embed_like_input

log = logging.getLogger("spark_sensitivity")
Facts = dict[str, Any]


def target_strategy(config: SelectConfig, loss_aware: bool) -> str:
    """The strategy of a --target run: how draws spread within a cluster (auto: uniform, as stratified)."""
    if loss_aware:
        raise ValueError("--target does not work with --mode loss-aware")
    if config.strategy not in (strategies.AUTO, strategies.STRATIFIED, strategies.SENSITIVITY):
        raise ValueError(
            f"--target draws uniformly within each cluster (--strategy auto or stratified) or by "
            f"sensitivity (--strategy sensitivity), not with --strategy {config.strategy}"
        )
    if config.pilot_losses is not None:
        raise ValueError(
            "--pilot-losses forecasts the estimate of the input's mean, not the target's: not with --target"
        )
    return strategies.STRATIFIED if config.strategy == strategies.AUTO else config.strategy


def read_target(spark: SparkSession, config: SelectConfig) -> DataFrame:
    """The --target rows with their embedding in --vector-col, embedded as the input is with --embedder."""
    raw = read_input(
        spark, config.target, config.target_format, config.target_options, config.catalog_options
    )
    if config.embedder is None:
        source = config.target_vector_col or config.vector_col
        if source not in raw.columns:
            raise ValueError(
                f"target {redact_text(config.target)} has no column {source!r} (columns: {', '.join(raw.columns)})"
            )
        rows = parse_text_vectors(raw, source).select(
            *([config.id_col] if config.id_col in raw.columns else []), F.col(source).alias(config.vector_col)
        )
        return rows
    if config.id_col not in raw.columns:
        raw = raw.withColumn(config.id_col, F.monotonically_increasing_id())
    _, report = embed_like_input(raw, config, on_invalid="fail")
    if report.fit_info:
        raise ValueError(
            f"--target with --embedder {config.embedder}: this embedder fits itself to its input, so the "
            "target would get other coordinates; embed both with `spark-sensitivity embed` and pass vectors"
        )
    return report.valid.select(config.id_col, config.vector_col)


def draw_to_target(
    spark: SparkSession, config: SelectConfig, model: SensitivitySamplerModel
) -> tuple[DataFrame, Facts]:
    """The m draws following the --target's cluster shares; the manifest's strategy and target facts."""
    within = "uniformly" if config.strategy == strategies.STRATIFIED else "by sensitivity"
    choice = strategies.AutoChoice(
        config.strategy,
        config.k,
        f"--target: the draws follow the target's cluster shares, {within} within each cluster",
    )
    model.set(model.strategy, config.strategy)
    drop = (config.vector_col,) if config.drop_vector else ()
    subset, info = model.sampleWithInfo(
        config.sample_size, seed=config.seed, dropColumns=drop, target=read_target(spark, config)
    )
    found = info["target"]
    log.info(
        "stage target: %d target rows in %d clusters, %d uncovered (%.1f%%), total variation from the "
        "input's shares %.3f, effective sample size %.0f, %d thin clusters",
        found["rows"], found["clusters_reached"], found["uncovered"], 100 * found["uncovered_share"],
        found["total_variation"], found["effective_sample_size"], found["thin_clusters"],
    )  # fmt: skip
    facts = {
        "strategy": choice.strategy,
        "strategy_used": choice.strategy,
        "k_used": choice.k,
        "auto_reason": choice.reason,  # said whatever was requested: --target changes what a strategy does
        "target": {"path": config.target, "format": config.target_format, **found},
        "sampling": {"draws": info["draws"]},
    }
    return subset, facts
