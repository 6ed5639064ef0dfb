"""The selection job: read, fit, score, sample, and publish subset/, clusters/ and manifest.json.

:func:`run_select` is a sequence of named steps; each step returns the part of the manifest it knows
(its facts and timings), and :func:`assemble` puts the parts together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import logging
import time
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity import settings
from spark_sensitivity.core.forecasting.forecast_inputs import PilotRows
from spark_sensitivity.core.sampling import strategies
from spark_sensitivity.core.sampling.sample import BUDGET_COL
from spark_sensitivity.core.vectors import parse_text_vectors
from spark_sensitivity.io import progress
from spark_sensitivity.io.lineage import recorded_input
from spark_sensitivity.io.provenance import utc_timestamp, versions
from spark_sensitivity.io.publish import AtomicOutput, Publication, publishing
from spark_sensitivity.io.redaction import redact, redact_text
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.io.storage import (
    check_table_name,
    read_input,
    read_table,
    register_table,
    write_table,
)
from spark_sensitivity.ml.estimator import SensitivitySampler
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.settings.choices import AUTO_MIN_ROWS_PER_REPRESENTATIVE
from spark_sensitivity.workflows import lossaware_select, target_select
from spark_sensitivity.workflows.embedding import embed_like_input
from spark_sensitivity.workflows.forecast import auto_choice, read_pilot, written_forecast

if TYPE_CHECKING:
    from spark_sensitivity.io.iceberg import IcebergOutput

__all__ = ["SelectConfig", "input_paths", "read_selection_input", "resolve_strategy", "run_select"]

log = logging.getLogger("spark_sensitivity")
Facts = dict[str, Any]


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
        "--target": None if config.target_format in ("table", "iceberg") else config.target,
    }


def resolve_strategy(config: SelectConfig) -> SelectConfig:
    """The concrete strategy and k of a run: ``auto`` resolved, k filled in, and ``--strategy
    loss-aware`` and ``--mode loss-aware`` made the same thing (``auto``, the default, follows the mode)."""
    loss_aware = config.mode == "loss-aware" or config.strategy == strategies.LOSS_AWARE
    allowed = (strategies.SENSITIVITY, strategies.LOSS_AWARE, strategies.AUTO)
    if config.mode == "loss-aware" and config.strategy not in allowed:
        raise ValueError(f"--mode loss-aware cannot be combined with --strategy {config.strategy}")
    requested = strategies.LOSS_AWARE if loss_aware else config.strategy
    if config.target is not None:
        requested = target_select.target_strategy(config, loss_aware)
    if loss_aware and len(config.budgets()) > 1:
        raise ValueError("--mode loss-aware takes one --sample-size (round 2 draws from round 1's plan)")
    strategy, k = strategies.resolve_budgets(requested, config.k, config.budgets())
    return dataclasses.replace(
        config, strategy=strategy, k=k, mode="loss-aware" if loss_aware else config.mode
    )


def sampler_for(config: SelectConfig) -> SensitivitySampler:
    """The Estimator of a run, each Param from its setting; loss-aware runs cluster as sensitivity
    sampling does (their draws are ``lossaware``'s)."""
    params = {param: getattr(config, declared.name) for param, declared in settings.param_settings().items()}
    if config.strategy == strategies.LOSS_AWARE:
        params["strategy"] = strategies.SENSITIVITY
    return SensitivitySampler(**params)


def check_written(written: DataFrame, id_col: str, drawn_rows: int, m: int) -> tuple[int, float]:
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


def assemble(*parts: Facts) -> Facts:
    """One manifest from the steps' parts; their timings go into one ``timings`` section."""
    manifest: Facts = {"timings": {}}
    for part in parts:
        manifest.update({key: value for key, value in part.items() if key != "timings"})
        manifest["timings"].update(part.get("timings", {}))
    return manifest


def _seconds_since(tick: float) -> float:
    return round(time.perf_counter() - tick, 3)


# The steps of a run, in order.


def check_flags(spark: SparkSession, config: SelectConfig) -> tuple[SelectConfig, str | None, Facts]:
    """Every setting and combination of settings, before any work. Returns the resolved config,
    round 1's folder (loss-aware round 2, when found) and the run's own facts for the manifest."""
    settings.check_settings(config)  # the dedup settings too
    config = resolve_output(config)
    requested_strategy, requested_k = config.strategy, config.k
    config = resolve_strategy(config)
    if config.rep_losses is not None and config.mode != "loss-aware":
        raise ValueError("--rep-losses needs --mode loss-aware")
    if config.whiten and config.mode == "loss-aware":
        raise ValueError("--whiten does not work with --mode loss-aware (it scores unwhitened distances)")
    for flag, value in (("--loss-col", config.loss_col), ("--report-col", config.report_col)):
        if value is not None and not config.report:
            raise ValueError(f"{flag} is used by the report only; add --report")
    round1 = lossaware_select.check_flags(spark, config)
    if config.report:
        # The report needs matplotlib (the 'report' extra), the selection does not: fail now.
        importlib.import_module("spark_sensitivity.workflows.report")
    facts = {
        "run_id": config.run_id,
        "parameters": dataclasses.asdict(config),
        "inputs": [recorded_input(spark, config.input, config.format)],
        "seed": config.seed,
        "k": config.k,
        "m": config.sample_size if len(config.budgets()) == 1 else list(config.budgets()),
        "mode": config.mode,
        "strategy": config.strategy,
        "strategy_requested": requested_strategy,
        "k_requested": requested_k,
        "output": config.output,
    }
    return config, round1, facts


def open_tables(spark: SparkSession, config: SelectConfig, publication: Publication) -> IcebergOutput | None:
    """The Iceberg tables of --output-format iceberg (undone should the run fail), or the catalog
    name of --output-table checked, before any work."""
    if config.output_format == "iceberg":
        from spark_sensitivity.io.iceberg import IcebergOutput

        lake = IcebergOutput(config.catalog_options, config.output_table, config.overwrite)
        publication.on_abort(lake.abort)
        return lake
    if config.output_table:
        check_table_name(spark, config.output_table, config.output_format, config.overwrite)
    return None


def embed_rows(
    spark: SparkSession, config: SelectConfig, cleanup: contextlib.ExitStack
) -> tuple[DataFrame, Facts]:
    """The input's rows embedded with --embedder (cached: every later pass reads them), and the
    manifest's embedding section."""
    raw = read_input(spark, config.input, config.format, config.input_options, config.catalog_options)
    embedded, report = embed_like_input(raw, config, config.on_invalid)
    # k-means, the assignment pass and the final join all read the rows: embed them once.
    embedded = embedded.persist(StorageLevel.MEMORY_AND_DISK)
    cleanup.callback(embedded.unpersist)
    with progress.stage(spark, "embed"):
        counts = report.check()
    log.info("stage embed: %d rows embedded with %s", counts.embedded, config.embedder)
    return report.valid, {**counts.as_dict(), "embedder": config.embedder, "fit": report.fit_info}


def read_rows(
    spark: SparkSession,
    config: SelectConfig,
    out: AtomicOutput,
    cleanup: contextlib.ExitStack,
    started: float,
) -> tuple[DataFrame, Facts]:
    """The rows to select from: read (or embedded), less near-duplicates with --dedup-eps; facts n,
    embedding and dedup."""
    facts: Facts = {"embedding": None}
    if config.embedder:
        df, facts["embedding"] = embed_rows(spark, config, cleanup)
    else:
        df = read_selection_input(spark, config)
    if config.dedup_eps is not None:
        # Deduplicate first, then select from the kept rows: the weights then estimate their number.
        from spark_sensitivity.workflows.dedup import deduplicate

        df, facts["dedup"] = deduplicate(df, config, out.path("duplicates"))
    if config.loss_col is not None:
        from spark_sensitivity.workflows.report import check_loss_column

        check_loss_column(df, config.loss_col)
    # Only whether there is a row at all: the fit's id check counts them in its own pass.
    with progress.stage(spark, "read"):
        empty = df.isEmpty()
    if empty:
        raise ValueError(f"input {redact_text(config.input)} has no rows")
    read_seconds = _seconds_since(started)
    return df, {**facts, "timings": {"read_seconds": read_seconds}}


def size_auto_plan(config: SelectConfig, df: DataFrame, run: Facts) -> tuple[SelectConfig, Facts]:
    """auto's plan checked against the table before the fit: one bounded count (at most
    AUTO_MIN_ROWS_PER_REPRESENTATIVE * m rows read) tells whether k = m representatives can be chosen;
    if not, k-means fits the stratified plan's k instead (``strategies.plan_auto``)."""
    if run["strategy_requested"] != strategies.AUTO or config.strategy != strategies.REPRESENTATIVES:
        return config, run
    smallest = config.budgets()[0]
    rows = df.limit(AUTO_MIN_ROWS_PER_REPRESENTATIVE * smallest).count()
    strategy, k = strategies.plan_auto(run["k_requested"], smallest, rows)
    if strategy == config.strategy:
        return config, run
    config = dataclasses.replace(config, strategy=strategy, k=k)
    return config, {**run, "parameters": dataclasses.asdict(config), "k": k, "strategy": strategy}


def fit(
    config: SelectConfig, df: DataFrame, cleanup: contextlib.ExitStack
) -> tuple[SensitivitySamplerModel, Facts]:
    """k-means on a sample, then one assignment pass and reduce over all rows."""
    model = sampler_for(config).fit(df)
    cleanup.callback(model.summary.release)
    info = model.fitInfo
    timings = {key: info.pop(key) for key in ("kmeans_seconds", "assign_reduce_seconds")}
    stats = model.clusterStats
    log.info(
        "stage k-means: fitted on %d rows (%s), %d iterations, %.1f s",
        info["fit_rows"],
        info["kmeans_engine"],
        info["kmeans_iterations"],
        timings["kmeans_seconds"],
    )
    log.info(
        "stage assign+reduce: %d rows in %d clusters (%d invalid rows skipped), cost %.6g, %.1f s; read by %s (%s)",
        stats.n,
        stats.nonempty,
        info["invalid_rows"],
        stats.total_cost,
        timings["assign_reduce_seconds"],
        info["assign_reader"],
        info["assign_reader_reason"],
    )
    return model, {
        "n": info.pop("input_rows"),
        "n_valid": stats.n,
        "invalid_rows": info["invalid_rows"],
        "nonempty_clusters": stats.nonempty,
        "kmeans_cost": stats.total_cost,
        "kmeans_fit": info,
        "sum_of_sensitivities": stats.total_sensitivity,
        "timings": timings,
    }


def choose_strategy(
    spark: SparkSession, config: SelectConfig, run: Facts, model: SensitivitySamplerModel
) -> tuple[strategies.AutoChoice, PilotRows | None]:
    """The strategy the model-free draw uses (``auto`` decided on the fitted clusters, and on the
    pilot's forecasts with --pilot-losses), and the pilot rows (None without a pilot)."""
    pilot = read_pilot(spark, config, model)
    if run["strategy_requested"] != strategies.AUTO:
        return strategies.AutoChoice(config.strategy, config.k, ""), pilot
    choice = auto_choice(config, run["k_requested"], model, pilot)
    log.info("stage choose: %s", choice.reason)
    return choice, pilot


def strategy_facts(choice: strategies.AutoChoice, requested: str) -> Facts:
    """The manifest's record of the strategy and k the run used, and why when auto chose them."""
    return {
        "strategy": choice.strategy,
        "strategy_used": choice.strategy,
        "k_used": choice.k,
        "auto_reason": choice.reason if requested == strategies.AUTO else None,
    }


def draw(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    df: DataFrame,
    out: AtomicOutput,
    round1: str | None,
    cleanup: contextlib.ExitStack,
    run: Facts,
) -> tuple[DataFrame, int, Facts]:
    """The m draws, model-free or loss-aware (round 2), cached; their distinct rows and facts."""
    tick = time.perf_counter()
    pilot = None
    if config.mode == "loss-aware":
        subset, facts = lossaware_select.draw_round2(spark, config, model, df, out, round1)
        followed = strategies.AutoChoice(config.strategy, config.k, "auto follows --mode loss-aware")
        facts.update(
            strategy_facts(followed, run["strategy_requested"]), sampling={"draws": config.sample_size}
        )
    elif config.target is not None:
        subset, facts = target_select.draw_to_target(spark, config, model)
    else:
        choice, pilot = choose_strategy(spark, config, run, model)
        model.set(model.strategy, choice.strategy)
        drop = (config.vector_col,) if config.drop_vector else ()
        subset, info = model.sampleWithInfo(config.sample_size, seed=config.seed, dropColumns=drop)
        facts = {**strategy_facts(choice, run["strategy_requested"]), "sampling": info}
    drawn_rows = facts.get("sampling", {}).get("rows")
    if drawn_rows is None or pilot is not None:
        # Counted (or read by the forecast), then written: persisted, so the join with the input
        # (a scan of all rows) runs once. Otherwise the write is its only reader and the draw
        # knows its rows: no job is spent counting them.
        subset = subset.persist()
        cleanup.callback(subset.unpersist)
        drawn_rows = subset.count()
    if pilot is not None:
        facts["forecast"] = written_forecast(config, model, pilot, facts["strategy_used"], subset)
    sample_seconds = _seconds_since(tick)
    log.info(
        "stage sample: %s, %d draws on %d distinct rows, %.1f s",
        facts["strategy_used"],
        facts["sampling"]["draws"],
        drawn_rows,
        sample_seconds,
    )
    return (
        subset,
        drawn_rows,
        {
            **facts,
            "timings": {"sample_seconds": sample_seconds},
        },
    )


def draw_all(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    df: DataFrame,
    out: AtomicOutput,
    round1: str | None,
    cleanup: contextlib.ExitStack,
    run: Facts,
) -> tuple[DataFrame, int, Facts]:
    """:func:`draw` for each sample size of the run, from the one fitted model. Several sizes give
    one table whose BUDGET_COL names each row's size, and a manifest section ``subsets`` with each
    size's strategy, k, reason, draws and rows (the same seed for every size)."""
    budgets = config.budgets()
    if len(budgets) == 1:
        return draw(spark, config, model, df, out, round1, cleanup, run)
    if BUDGET_COL in df.columns:
        raise ValueError(
            f"the input has a column {BUDGET_COL!r}, the name of the column that tells the sample sizes "
            "apart when --sample-size lists several: rename it, or give one sample size"
        )
    parts, subsets, seconds = [], [], 0.0
    for m in budgets:
        one = dataclasses.replace(config, sample_size=m)
        subset, rows, facts = draw(spark, one, model, df, out, round1, cleanup, run)
        seconds += facts.pop("timings")["sample_seconds"]
        draws = facts["sampling"]["draws"]
        subsets.append({"sample_size": m, "draws": draws, "subset_rows": rows, **facts})
        parts.append(subset.withColumn(BUDGET_COL, F.lit(m)))
    union = functools.reduce(DataFrame.unionByName, parts)
    return (
        union,
        sum(part["subset_rows"] for part in subsets),
        {
            "subsets": subsets,
            "timings": {"sample_seconds": round(seconds, 3)},
        },
    )


def write_and_verify(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    subset: DataFrame,
    drawn_rows: int,
    out: AtomicOutput,
    started: float,
    draws: int,
    subsets: list[Facts] | None = None,
) -> tuple[DataFrame, Facts]:
    """Stages subset/, clusters/ and model/, and reads the subset back to check it (each sample
    size's part, when ``subsets`` lists several: their facts come back with their sum of weights)."""
    tick = time.perf_counter()
    write_table(subset, out.path("subset"), config.output_format, out.final_uri("subset"))
    model.clustersFrame(spark).coalesce(1).write.parquet(out.path("clusters"))
    # The model (centers and cluster statistics) lets `refresh` add new rows later.
    model.write().save(out.path("model"))
    written = read_table(spark, out.path("subset"), config.output_format)
    timings = {"write_seconds": 0.0, "total_seconds": 0.0}
    if subsets is None:
        rows, weight_sum = check_written(written, config.id_col, drawn_rows, draws)
        facts: Facts = {"subset_rows": rows, "sum_of_weights": weight_sum, "timings": timings}
    else:
        checked = []
        for part in subsets:
            one = written.where(F.col(BUDGET_COL) == part["sample_size"])
            _, weight_sum = check_written(one, config.id_col, part["subset_rows"], part["draws"])
            checked.append({**part, "sum_of_weights": weight_sum})
        facts = {"subset_rows": drawn_rows, "subsets": checked, "timings": timings}
    timings.update(write_seconds=_seconds_since(tick), total_seconds=_seconds_since(started))
    log.info("stage write: %d rows, %.1f s", drawn_rows, timings["write_seconds"])
    return written, facts


def add_report(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    df: DataFrame,
    out: AtomicOutput,
    manifest: Facts,
) -> Facts:
    """Stages report/ (--report) from the staged outputs and the manifest so far."""
    from spark_sensitivity.workflows.report import write_report

    tick = time.perf_counter()
    if "subsets" in manifest:  # several sample sizes: the report shows the largest
        largest = manifest["subsets"][-1]
        manifest = {**manifest, **largest, BUDGET_COL: largest["sample_size"]}
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
        example_col=config.report_col or config.text_col,
    )
    return {"report": "report/index.html", "timings": {"report_seconds": _seconds_since(tick)}}


def commit_tables(
    spark: SparkSession, lake: IcebergOutput, written: DataFrame, out: AtomicOutput, run_id: str
) -> Facts:
    """The folder is complete but for its manifest: now the Iceberg tables get their one commit each."""
    lake.stage("subset", written)
    lake.stage("clusters", spark.read.parquet(out.path("clusters")))
    return {"iceberg": lake.commit(run_id)}


def run_select(spark: SparkSession, config: SelectConfig) -> Facts:
    """Runs one selection and publishes it atomically under ``config.output``; returns the manifest."""
    config, round1, run = check_flags(spark, config)
    with (
        contextlib.ExitStack() as cleanup,
        publishing(spark, config.output, config.overwrite, input_paths(config)) as job,
    ):
        lake = open_tables(spark, config, job)
        started = time.perf_counter()
        sizes = ", ".join(map(str, config.budgets()))
        log.info("run %s: sample size %s from %s", config.run_id, sizes, redact_text(config.input))
        df, read = read_rows(spark, config, job.output, cleanup, started)
        config, run = size_auto_plan(config, df, run)
        with progress.stage(spark, f"fit (k-means with k = {config.k}, then every row assigned)"):
            model, fitted = fit(config, df, cleanup)
        if config.mode == "loss-aware" and config.rep_losses is None:
            model.clustersFrame(spark).coalesce(1).write.parquet(job.output.path("clusters"))
            job.manifest = lossaware_select.round1_manifest(
                spark, config, job.output, model, df, fitted["n"], started
            )
            return job.manifest
        with progress.stage(spark, "sample"):
            subset, drawn_rows, drawn = draw_all(spark, config, model, df, job.output, round1, cleanup, run)
        with progress.stage(spark, "write", rows=drawn_rows):
            written, wrote = write_and_verify(
                spark,
                config,
                model,
                subset,
                drawn_rows,
                job.output,
                started,
                drawn.get("sampling", {}).get("draws", 0),
                drawn.pop("subsets", None),
            )
        provenance = {"versions": versions(spark), "created": utc_timestamp()}
        job.manifest = redact(assemble(run, read, fitted, drawn, wrote, provenance))
        if config.report:
            with progress.stage(spark, "report"):
                job.manifest = assemble(
                    job.manifest, add_report(spark, config, model, df, job.output, job.manifest)
                )
        if lake is not None:
            with progress.stage(spark, "commit Iceberg tables"):
                job.manifest.update(commit_tables(spark, lake, written, job.output, config.run_id))
    if config.output_table and lake is None:
        register_table(spark, config.output_table, f"{job.output.uri}/subset", config.output_format)
        log.info("registered table %s", config.output_table)
    log.info("published %s in %.1f s", job.manifest["output"], time.perf_counter() - started)
    return job.manifest
