"""--dry-run: what a selection would do and cost, from cheap facts only (row count and one row)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans.cluster import (
    KMeansSettings,
    choose_engine,
    driver_heap_bytes,
    fit_fraction,
)
from spark_sensitivity.core.kmeans.localkmeans import SCORE_BLOCK_ELEMENTS
from spark_sensitivity.core.sampling import strategies
from spark_sensitivity.core.vectors import vector_values
from spark_sensitivity.io.parquet_scan import why_spark_reads
from spark_sensitivity.io.publish import AtomicOutput
from spark_sensitivity.io.redaction import redact
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.settings import ClusteringFields, SelectConfig, settings_of
from spark_sensitivity.settings.choices import AUTO_MIN_EXPLAINED_SHARE, AUTO_MIN_ROWS_PER_REPRESENTATIVE
from spark_sensitivity.workflows.select import read_selection_input, resolve_strategy

# Each center's draws come mostly from its 1/n_j term, about m / (k + 1) of them; ten per cluster
# keep per-cluster estimates usable, hence k <= m / 10. k beyond sqrt(n) buys little k-means cost.
_DRAWS_PER_CLUSTER = 10
# The suggested fit fraction is the default one: about this many rows per center.
_POINTS_PER_CENTER = settings_of(ClusteringFields)["points_per_center"].default


def suggested_k(n: int, m: int) -> int:
    return max(1, min(m // _DRAWS_PER_CLUSTER, int(math.sqrt(n))))


def auto_plan(k_given: int | None, n: int, m: int, shared_k: int | None = None) -> str:
    """What ``auto`` will do, from what the dry run knows (n, m, k); the clusters decide the rest.
    ``shared_k``: the k of the one fit that several sample sizes share, when m is not the smallest."""
    planned, k = strategies.plan_auto(k_given, m, n)
    if shared_k is not None and shared_k != k:
        planned, k = strategies.STRATIFIED, shared_k
    if planned == strategies.STRATIFIED:
        return (
            f"auto will choose stratified with k = {k} because "
            f"{strategies.planned_reason(k_given, m, n, k)} (sensitivity instead should m exceed n or "
            "the non-empty clusters)"
        )
    return (
        f"auto will fit k = m = {k} clusters and choose representatives (n / m = {n / m:.0f} >= "
        f"{AUTO_MIN_ROWS_PER_REPRESENTATIVE} rows per representative) unless the fitted clusters explain "
        f"less than {AUTO_MIN_EXPLAINED_SHARE:.0%} of the embeddings' spread, then stratified (one uniform "
        "row per cluster); with --pilot-losses the one with the lowest forecast error"
    )


def _auto_plans(k_given: int | None, n: int, budgets: tuple[int, ...], k: int) -> str | dict[str, str]:
    """auto's plan for the one sample size, or by sample size when several share one fit."""
    if len(budgets) == 1:
        return auto_plan(k_given, n, budgets[0])
    return {str(m): auto_plan(k_given, n, m, shared_k=k) for m in budgets}


def _planned_for(strategy: str, k: int, m: int) -> str:
    """The planned strategy of one sample size: auto's representatives plan serves only m = k."""
    return strategies.STRATIFIED if strategy == strategies.REPRESENTATIVES and m != k else strategy


def _sample_stage(strategy: str, k: int, m: int) -> str:
    if strategy in (strategies.SENSITIVITY, strategies.LOSS_AWARE):
        return f"sample: Poisson candidates (about {m + 6 * math.sqrt(m) + 10:.0f}), keep exactly {m} draws"
    if strategy == strategies.REPRESENTATIVES:
        return f"sample: the row nearest each of the {k} centers (one aggregation), weight n_j"
    return f"sample: {strategy}, m_j of the {m} rows per cluster (one window over the rows), weight n_j / m_j"


def _suggested(strategy: str, n: int, k: int, m: int) -> dict[str, Any]:
    fraction = fit_fraction(None, _POINTS_PER_CENTER, k, lambda: n)
    if strategy == strategies.REPRESENTATIVES:
        return {
            "k": k,
            "fit_fraction": fraction,
            "why": "representatives keep one row per cluster, so k = m; k-means needs only a few hundred "
            "rows per center to place it",
        }
    return {
        "k": suggested_k(n, m),
        "fit_fraction": fraction,
        "why": "about m/(k+1) draws land in each cluster through its 1/n_j term: keep k <= m/10; "
        "k-means needs only a few hundred rows per center to place it",
    }


def plan_select(spark: SparkSession, config: SelectConfig) -> dict[str, Any]:
    """The plan of a selection run: stages, sizes, estimated work and memory, suggestions; for
    ``auto`` the strategy and k it plans and the rule that decides after the fit."""
    requested, k_given = config.strategy, config.k
    config = resolve_strategy(resolve_output(config))
    df = read_selection_input(spark, config)
    n = df.count()  # Parquet answers from file footers
    first = df.select(F.size(vector_values(df, config.vector_col)).alias("d")).where("d > 0").first()
    if first is None:
        raise ValueError(f"embedding column {config.vector_col!r} has no non-empty value")
    budgets = config.budgets()
    if requested == strategies.AUTO and config.strategy == strategies.REPRESENTATIVES:
        strategy, k = strategies.plan_auto(k_given, budgets[0], n)
        config = dataclasses.replace(config, strategy=strategy, k=k)
    d, k, m = int(first["d"]), config.k, budgets[-1]
    fraction = fit_fraction(config.fit_fraction, config.points_per_center, k, lambda: n)
    fit_rows = int(n * fraction)
    batch_rows = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "10000"))
    score_rows = min(batch_rows, max(1, SCORE_BLOCK_ELEMENTS // k))
    task_memory = batch_rows * d * 8 * 2 + score_rows * k * 4 + k * d * 12
    settings = KMeansSettings.from_config(dataclasses.replace(config, k=k))
    engine = choose_engine(settings, fit_rows, d, driver_heap_bytes(spark))
    where = {
        "driver": "on the driver in numpy",
        "executors": "seeded on the driver, Lloyd iterations on the executors",
        "mllib": "MLlib block solver (distributed)",
    }[engine]
    columns = [config.id_col, config.vector_col]
    why_spark = why_spark_reads(df, columns, config.assign_reader, config.whiten)
    reader = "the tasks read the Parquet files with pyarrow" if why_spark is None else why_spark
    exists = AtomicOutput(spark, config.output, config.overwrite).exists()
    return redact(
        {
            "input": config.input,
            "output": config.output,
            "output_exists": exists,
            "will_fail_because_output_exists": exists and not config.overwrite,
            "run_id": config.run_id,
            "n": n,
            "d": d,
            "k": k,
            "m": m if len(budgets) == 1 else list(budgets),
            "strategy_requested": requested,
            "strategy": config.strategy,
            "auto_plan": _auto_plans(k_given, n, budgets, k) if requested == strategies.AUTO else None,
            "stages": [
                f"read: count {n} rows",
                f"k-means: {where} on a {fraction:.4g} sample (about {fit_rows} rows, "
                f"{fit_rows * d * 4 / 2**20:.0f} MiB as float32), "
                f"at most {config.max_iter} iterations",
                f"assign + reduce: nearest of {k} centers for all {n} rows (mapInArrow; {reader}), "
                f"then {k} cluster statistics",
                *(_sample_stage(_planned_for(config.strategy, k, one), k, one) for one in budgets),
                *(
                    [
                        f"target: assign the rows of {config.target} to the {k} centers, allocate the draws by "
                        "their cluster shares, weight them to the target"
                    ]
                    if config.target
                    else []
                ),  # fmt: skip
                "write: subset/, clusters/, manifest.json to a staging folder, then publish by rename",
            ],
            "estimated_work": {
                "kmeans_multiply_adds": fit_rows * k * d * config.max_iter,
                "assignment_multiply_adds": n * k * d,
                "id_uniqueness_check": "one shuffle of the id column"
                if config.check_unique_ids
                else "skipped",
            },
            "estimated_memory_per_task_bytes": task_memory,
            "suggested": _suggested(config.strategy, n, k, m),
        }
    )
