"""The selection job: read, fit, score, sample, and publish subset/, clusters/ and manifest.json."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core import forecast_inputs, lossaware, strategies
from spark_sensitivity.core.dedupkernel import DEFAULT_BLOCK_ROWS
from spark_sensitivity.core.vectors import parse_text_vectors
from spark_sensitivity.embedders import embed_frame
from spark_sensitivity.io.provenance import utc_timestamp, versions
from spark_sensitivity.io.publish import AtomicOutput
from spark_sensitivity.io.redaction import redact, redact_text
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.io.storage import (
    check_table_name,
    read_input,
    read_table,
    register_table,
    write_table,
)
from spark_sensitivity.ml.estimator import SensitivitySampler, SensitivitySamplerModel
from spark_sensitivity.workflows import lossaware_rounds

log = logging.getLogger("spark_sensitivity")


@dataclass
class SelectConfig:
    """Every setting of one selection run (the CLI flags, one to one)."""

    input: str
    output: str
    sample_size: int
    k: int | None = None  # None: the strategy's choice (strategies.resolve), 100 for most
    format: str = "parquet"
    input_options: dict[str, str] = field(default_factory=dict)
    catalog_options: dict[str, str] = field(default_factory=dict)
    id_col: str = "id"
    vector_col: str = "embedding"
    z: int = 2
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
    drop_vector: bool = False
    overwrite: bool = False
    run_id: str | None = None
    config_file: str | None = None
    report: bool = False
    loss_col: str | None = None
    output_format: str = "parquet"
    output_table: str | None = None
    mode: str = "model-free"
    strategy: str = strategies.SENSITIVITY
    rep_losses: str | None = None
    rep_losses_format: str = "parquet"
    rep_loss_col: str = "loss"
    loss_lambda: float | None = None
    uniform_share: float = lossaware.DEFAULT_UNIFORM_SHARE
    round1: str | None = None
    rep_weights: str = "zero"
    pilot_losses: str | None = None
    pilot_losses_format: str = "parquet"
    pilot_loss_col: str = "loss"
    embedder: str | None = None
    text_col: str | None = None
    image_col: str | None = None
    embed_batch_size: int = 64
    embed_options: dict[str, str] = field(default_factory=dict)
    dedup_eps: float | None = None
    dedup_keep: str = "farthest"
    dedup_neighbors: int = 1
    dedup_block_rows: int = DEFAULT_BLOCK_ROWS


def read_selection_input(spark: SparkSession, config: SelectConfig) -> DataFrame:
    """The input table, with an embedding stored as text (CSV) parsed to an array."""
    df = read_input(spark, config.input, config.format, config.input_options, config.catalog_options)
    return parse_text_vectors(df, config.vector_col)


def input_paths(config: SelectConfig) -> dict[str, str | None]:
    """The paths a run reads, which its output must never replace or overlap."""
    return {
        "--input": None if config.format in ("table", "iceberg") else config.input,
        "--rep-losses": config.rep_losses,
        "--pilot-losses": config.pilot_losses,
        "--round1": config.round1,
    }


def resolve_strategy(config: SelectConfig) -> SelectConfig:
    """The concrete strategy and k of a run: ``auto`` resolved, k filled in, and ``--strategy
    loss-aware`` and ``--mode loss-aware`` made the same thing."""
    loss_aware = config.mode == "loss-aware" or config.strategy == strategies.LOSS_AWARE
    if config.mode == "loss-aware" and config.strategy not in (strategies.SENSITIVITY, strategies.LOSS_AWARE):
        raise ValueError(f"--mode loss-aware cannot be combined with --strategy {config.strategy}")
    requested = strategies.LOSS_AWARE if loss_aware else config.strategy
    strategy, k = strategies.resolve(requested, config.k, config.sample_size)
    return dataclasses.replace(
        config, strategy=strategy, k=k, mode="loss-aware" if loss_aware else config.mode
    )


def _sampler(config: SelectConfig) -> SensitivitySampler:
    return SensitivitySampler(
        idCol=config.id_col,
        featuresCol=config.vector_col,
        k=config.k,
        costPower=config.z,
        maxIter=config.max_iter,
        tol=config.tol,
        seed=config.seed,
        initMode=config.init_mode,
        initSteps=config.init_steps,
        fitFraction=config.fit_fraction,
        pointsPerCenter=config.points_per_center,
        fitEngine=config.fit_engine,
        driverFitMaxMB=config.driver_fit_max_mb,
        onInvalid=config.on_invalid,
        checkUniqueIds=config.check_unique_ids,
        strategy=strategies.SENSITIVITY if config.strategy == strategies.LOSS_AWARE else config.strategy,
    )


def _clusters_frame(spark: SparkSession, model: SensitivitySamplerModel) -> DataFrame:
    stats = model.clusterStats
    rows = [
        (j, int(stats.sizes[j]), float(stats.costs[j]), [float(x) for x in center])
        for j, center in enumerate(model.clusterCenters())
    ]
    return spark.createDataFrame(rows, "cluster_id int, size long, cost double, center array<double>")


def _check_written(written: DataFrame, id_col: str, drawn_rows: int, m: int) -> tuple[int, float]:
    """Reads back the staged subset: one row per drawn id, and exactly m draws in total."""
    totals = written.agg(
        F.count(F.lit(1)).alias("rows"), F.sum("count").alias("draws"), F.sum("weight").alias("weights")
    ).first()
    if totals["rows"] != drawn_rows:
        duplicated = written.groupBy(id_col).count().where("count > 1").limit(3).collect()
        examples = ", ".join(str(row[id_col]) for row in duplicated)
        raise ValueError(f"id column {id_col!r} is not unique (e.g. ids {examples}); ids must be unique")
    if totals["draws"] != m:
        raise RuntimeError(f"internal error: the subset holds {totals['draws']} draws, expected {m}")
    return int(totals["rows"]), float(totals["weights"])


def run_select(spark: SparkSession, config: SelectConfig) -> dict[str, Any]:
    """Runs one selection and publishes it atomically under ``config.output``; returns the manifest."""
    if config.sample_size < 1:
        raise ValueError(f"--sample-size must be at least 1, got {config.sample_size}")
    config = resolve_output(config)
    if config.mode not in ("model-free", "loss-aware"):
        raise ValueError(f"--mode must be model-free or loss-aware, got {config.mode!r}")
    requested_strategy = config.strategy
    config = resolve_strategy(config)
    if config.rep_losses is not None and config.mode != "loss-aware":
        raise ValueError("--rep-losses needs --mode loss-aware")
    if config.loss_col is not None and not config.report:
        raise ValueError("--loss-col is used by the report only; add --report")
    round1 = _check_loss_aware_flags(spark, config)
    if config.report:
        # Imported here: the report needs matplotlib (the 'report' extra), the selection does not.
        from spark_sensitivity.workflows.report import check_loss_column, write_report
    sampler = _sampler(config)
    sampler._validate_params()
    out = AtomicOutput(spark, config.output, config.overwrite, inputs=input_paths(config))
    out.check_destination()
    lake = None
    if config.output_format == "iceberg":
        from spark_sensitivity.io.iceberg import IcebergOutput

        lake = IcebergOutput(config.catalog_options, config.output_table, config.overwrite)
    elif config.output_table:
        check_table_name(spark, config.output_table, config.output_format, config.overwrite)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    log.info("run %s: %d draws from %s", config.run_id, config.sample_size, redact_text(config.input))

    embedded = embed_report = None
    if config.embedder:
        raw = read_input(spark, config.input, config.format, config.input_options, config.catalog_options)
        embedded, embed_report = embed_frame(
            raw,
            embedder=config.embedder,
            id_col=config.id_col,
            text_col=config.text_col,
            image_col=config.image_col,
            output_col=config.vector_col,
            batch_size=config.embed_batch_size,
            on_invalid=config.on_invalid,
            options=config.embed_options,
        )
        # k-means, the assignment pass and the final join all read the rows: embed them once.
        embedded = embedded.persist(StorageLevel.MEMORY_AND_DISK)
        embed_counts = embed_report.check()
        df = embed_report.valid
        log.info("stage embed: %d rows embedded with %s", embed_counts.embedded, config.embedder)
    else:
        df = read_selection_input(spark, config)
    dedup_info = None
    if config.dedup_eps is not None:
        # Deduplicate first, then select from the kept rows: the weights then estimate their number.
        from spark_sensitivity.workflows.dedup import deduplicate

        try:
            df, dedup_info = deduplicate(df, config, out.path("duplicates"))
        except BaseException:
            out.abort()
            raise
    if config.loss_col is not None:
        check_loss_column(df, config.loss_col)
    n_rows = df.count()
    if n_rows == 0:
        raise ValueError(f"input {redact_text(config.input)} has no rows")
    timings["read_seconds"] = round(time.perf_counter() - started, 3)
    log.info("stage read: %d rows, %.1f s", n_rows, timings["read_seconds"])

    try:
        model = sampler.fit(df)
    except BaseException:
        out.abort()  # the dedup step may have staged duplicates/
        raise
    info = model.fitInfo
    timings["kmeans_seconds"] = info.pop("kmeans_seconds")
    timings["assign_reduce_seconds"] = info.pop("assign_reduce_seconds")
    stats = model.clusterStats
    log.info(
        "stage k-means: fitted on %d rows (%s), %d iterations, %.1f s",
        info["fit_rows"],
        info["kmeans_engine"],
        info["kmeans_iterations"],
        timings["kmeans_seconds"],
    )
    log.info(
        "stage assign+reduce: %d rows in %d clusters (%d invalid rows skipped), cost %.6g, %.1f s",
        stats.n,
        stats.nonempty,
        info["invalid_rows"],
        stats.total_cost,
        timings["assign_reduce_seconds"],
    )

    if config.mode == "loss-aware" and config.rep_losses is None:
        try:
            return _publish_representatives(spark, config, out, model, df, n_rows, started)
        finally:
            model.summary.release()
            if embedded is not None:
                embedded.unpersist()

    subset = None
    try:
        tick = time.perf_counter()
        drop = (config.vector_col,) if config.drop_vector else ()
        loss_aware: dict[str, Any] = {}
        forecast: dict[str, Any] | None = None
        if config.mode == "loss-aware":
            _write_representatives(model, df, config, out)
            if round1 is not None:
                reps = spark.read.parquet(out.path("representatives"))
                lossaware_rounds.check_same_representatives(spark, round1, reps, config.id_col)
            losses = read_input(spark, config.rep_losses, config.rep_losses_format, {})

            def on_prepared(selection: lossaware.LossAwareSelection) -> None:
                nonlocal forecast
                forecast = _forecast(spark, config, model, selection)

            subset, loss_aware = lossaware.select_with_roles(
                model, losses, config.sample_size, config.seed, config.rep_loss_col,
                config.loss_lambda, config.uniform_share, drop, config.rep_weights, on_prepared,
            )  # fmt: skip
        else:
            subset = model.sample(config.sample_size, seed=config.seed, dropColumns=drop)
            forecast = _forecast(spark, config, model)
        # Counted, then written: without this the join with the input (a scan of all rows) runs twice.
        subset = subset.persist()
        drawn_rows = subset.count()
        timings["sample_seconds"] = round(time.perf_counter() - tick, 3)
        log.info(
            "stage sample: %d draws on %d distinct rows, %.1f s",
            config.sample_size,
            drawn_rows,
            timings["sample_seconds"],
        )

        tick = time.perf_counter()
        write_table(subset, out.path("subset"), config.output_format)
        _clusters_frame(spark, model).coalesce(1).write.parquet(out.path("clusters"))
        # The model (centers and cluster statistics) lets `refresh` add new rows later.
        model.write().save(out.path("model"))
        written = read_table(spark, out.path("subset"), config.output_format)
        draws = model.lastSampleInfo.get("draws", config.sample_size)
        rows, weight_sum = _check_written(written, config.id_col, drawn_rows, draws)
        timings["write_seconds"] = round(time.perf_counter() - tick, 3)
        timings["total_seconds"] = round(time.perf_counter() - started, 3)
        log.info("stage write: %d rows, %.1f s", rows, timings["write_seconds"])
        manifest = {
            "run_id": config.run_id,
            "parameters": dataclasses.asdict(config),
            "seed": config.seed,
            "n": n_rows,
            "n_valid": stats.n,
            "invalid_rows": info["invalid_rows"],
            "k": config.k,
            "nonempty_clusters": stats.nonempty,
            "m": config.sample_size,
            "subset_rows": rows,
            "kmeans_cost": stats.total_cost,
            "kmeans_fit": info,
            "sum_of_weights": weight_sum,
            "sum_of_sensitivities": loss_aware.pop("sum_of_sensitivities", stats.total_sensitivity),
            "mode": config.mode,
            "strategy": config.strategy,
            "strategy_requested": requested_strategy,
            **({"loss_aware": loss_aware} if loss_aware else {}),
            **({"forecast": forecast} if forecast else {}),
            "sampling": model.lastSampleInfo,
            **({"dedup": dedup_info} if dedup_info is not None else {}),
            "embedding": None
            if embed_report is None
            else {**embed_counts.as_dict(), "embedder": config.embedder, "fit": embed_report.fit_info},
            "timings": timings,
            "versions": versions(spark),
            "created": utc_timestamp(),
            "output": config.output,
        }
        manifest = redact(manifest)
        if config.report:
            tick = time.perf_counter()
            write_report(
                spark,
                output=out,
                model=model,
                data=df,
                id_col=config.id_col,
                vector_col=config.vector_col,
                manifest=manifest,
                loss_col=config.loss_col,
                seed=config.seed,
            )
            manifest["timings"]["report_seconds"] = round(time.perf_counter() - tick, 3)
            manifest["report"] = "report/index.html"
        if lake is not None:
            # The folder is complete but for its manifest: now the tables get their one commit each.
            lake.stage("subset", written)
            lake.stage("clusters", spark.read.parquet(out.path("clusters")))
            manifest["iceberg"] = lake.commit(config.run_id)
        out.write_json("manifest.json", manifest)
        out.publish()
        if config.output_table and lake is None:
            register_table(spark, config.output_table, f"{out.uri}/subset", config.output_format)
            log.info("registered table %s", config.output_table)
        log.info("published %s in %.1f s", manifest["output"], time.perf_counter() - started)
    except BaseException:
        if lake is not None:
            lake.abort()
        out.abort()
        raise
    finally:
        model.summary.release()
        if subset is not None:
            subset.unpersist()
        if embedded is not None:
            embedded.unpersist()
    return manifest


def _publish_representatives(
    spark: SparkSession,
    config: SelectConfig,
    out: AtomicOutput,
    model: SensitivitySamplerModel,
    df: DataFrame,
    n_rows: int,
    started: float,
) -> dict[str, Any]:
    """Loss-aware step 1 (no --rep-losses yet): publishes representatives/, clusters/ and a manifest
    that says what to do next."""
    try:
        _write_representatives(model, df, config, out)
        _clusters_frame(spark, model).coalesce(1).write.parquet(out.path("clusters"))
        reps = spark.read.parquet(out.read_path("representatives")).count()
        manifest = redact(
            {
                "run_id": config.run_id,
                "parameters": dataclasses.asdict(config),
                "mode": config.mode,
                "n": n_rows,
                "k": config.k,
                "representatives": reps,
                "round_settings": lossaware_rounds.round_settings(dataclasses.asdict(config)),
                "next_step": "compute the model's loss on the rows of representatives/ (a table of id, "
                "loss) and run again with the same input, seed and k-means settings plus --rep-losses",
                "timings": {"total_seconds": round(time.perf_counter() - started, 3)},
                "created": utc_timestamp(),
                "output": config.output,
            }
        )
        out.write_json("manifest.json", manifest)
        out.publish()
    except BaseException:
        out.abort()
        raise
    return manifest


def _write_representatives(
    model: SensitivitySamplerModel, df: DataFrame, config: SelectConfig, out: AtomicOutput
) -> None:
    """representatives/: cluster_id, id, distance and the input's columns (the embedding too unless
    --drop-vector), so the user can score them without a join."""
    drop = (config.vector_col,) if config.drop_vector else ()
    reps = lossaware.with_input_columns(lossaware.model_representatives(model), df, config.id_col, drop)
    reps.coalesce(1).write.parquet(out.path("representatives"))


def _check_loss_aware_flags(spark: SparkSession, config: SelectConfig) -> str | None:
    """Flags that need each other, and round 2's settings against round 1's manifest when one is
    found (``lossaware_rounds``); returns round 1's folder, or None."""
    if config.rep_weights not in lossaware.REP_WEIGHTS:
        raise ValueError(
            f"--rep-weights must be one of {', '.join(lossaware.REP_WEIGHTS)}, got {config.rep_weights!r}"
        )
    if config.rep_weights != "zero" and config.rep_losses is None:
        raise ValueError("--rep-weights needs --mode loss-aware with --rep-losses")
    if config.round1 is not None and config.rep_losses is None:
        raise ValueError("--round1 needs --mode loss-aware with --rep-losses")
    if config.pilot_losses is not None and config.mode == "loss-aware" and config.rep_losses is None:
        raise ValueError("--pilot-losses forecasts the draws: in loss-aware mode it needs --rep-losses")
    if config.pilot_losses is not None:
        pilot = read_input(spark, config.pilot_losses, config.pilot_losses_format, {})
        forecast_inputs.check_pilot_columns(pilot, config.id_col, config.pilot_loss_col)
    if config.rep_losses is None:
        return None
    losses = read_input(spark, config.rep_losses, config.rep_losses_format, {})
    lossaware.check_loss_columns(losses, config.id_col, config.rep_loss_col)
    found = lossaware_rounds.round1_manifest(spark, config.round1, config.rep_losses)
    if found is None:
        return None
    manifest, folder = found
    lossaware_rounds.check_same_settings(manifest, folder, dataclasses.asdict(config))
    return folder


def _forecast(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    selection: lossaware.LossAwareSelection | None = None,
) -> dict[str, Any] | None:
    """The forecast section of the manifest: from --pilot-losses when given, else from the
    representatives' losses in loss-aware mode; None in model-free mode without a pilot."""
    m, seed = config.sample_size, config.seed
    if config.pilot_losses is not None:
        pilot = read_input(spark, config.pilot_losses, config.pilot_losses_format, {})
        if selection is None:
            scored = model.summary.assignments.where(F.col("cluster_id").isNotNull())
            scorer, sizes = model.clusterStats, model.clusterStats.sizes
        else:
            scored, scorer, sizes = selection.scored, selection.scorer, selection.sizes
        result = forecast_inputs.pilot_forecast(
            scored, scorer, sizes, pilot, config.id_col, config.pilot_loss_col, m, seed
        )
    elif selection is not None:
        result = forecast_inputs.representatives_forecast(
            model.summary.assignments, selection.scored, selection.scorer, selection.sizes,
            selection.scorer.proxy, selection.rep_vectors_by_cluster(), config.z, m, seed,
        )  # fmt: skip
    else:
        return None
    return {**result.as_dict(), "sensitivity_rule": config.mode}
