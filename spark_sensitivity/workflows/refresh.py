"""Incremental refresh: sample newly appended rows as a new stratum of an existing weighted subset.

The previous subset is an unbiased sample of the old rows; it is kept as it is. The new rows are
assigned to the saved centers, scored with their OWN cluster statistics and sampled on their own,
so their weights are unbiased for the new rows. The union of the two strata is therefore unbiased
for the whole table, and the old rows are never read. See docs/INCREMENTAL.md for the argument,
the number of new draws, and when a full re-fit is needed instead.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans.assigned import AssignedRows
from spark_sensitivity.core.sampling import sample, score
from spark_sensitivity.core.sampling.rowrandom import row_hash
from spark_sensitivity.core.vectors import parse_text_vectors
from spark_sensitivity.io import lineage
from spark_sensitivity.io.delta import delta_version, read_delta
from spark_sensitivity.io.provenance import utc_timestamp, versions
from spark_sensitivity.io.publish import AtomicOutput, glob_escape, publishing
from spark_sensitivity.io.redaction import redact
from spark_sensitivity.io.storage import read_input, read_table, write_table
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.ml.params import OUTPUT_COLUMNS
from spark_sensitivity.settings import MAX_COST_DRIFT, SUBSET_FORMATS, RefreshConfig, check_settings

# Re-fit when the new rows' mean cost under the old centers exceeds the old rows' by MAX_COST_DRIFT
# (project choice, see docs/INCREMENTAL.md), or when the table has more than doubled since the fit.
MAX_GROWTH = 2.0


# New rows assigned to the saved centers: ``assigned`` (id, cluster_id, cost; persisted, valid rows
# only) and the new rows' own statistics.
ScoredRows = AssignedRows


def score_new_rows(
    model: SensitivitySamplerModel, new_rows: DataFrame, on_invalid: str | None = None
) -> ScoredRows:
    """One assignment pass and one reduce over the new rows only, under the model's centers; new rows
    with an invalid embedding fail the run or are left out, as ``on_invalid`` (default: the model's
    setting, the select run's --on-invalid) says."""
    model.validate_input(new_rows)
    scored = model.assignedRows(new_rows, onInvalid=on_invalid or model.getOnInvalid())
    if scored.stats.n == 0:
        scored.release()
        raise ValueError("the new rows have no valid embedding")
    return scored


def draw_new_stratum(scored: ScoredRows, draws: int, seed: int) -> sample.Draws:
    """Exactly ``draws`` i.i.d. draws from the new rows, with sensitivities under their own stats.

    Returns the drawn rows (persisted) with the new rows' columns plus cluster_id, cost,
    sensitivity, probability, count and weight = count / (draws * probability): unbiased for sums
    over the new rows. Per-row randomness comes from hash(id, seed), as in a full run.
    """
    id_col = scored.id_col
    hashed = scored.assigned.withColumn(sample.HASH_COL, row_hash(id_col, seed))
    drawn = sample.draw(hashed, scored.stats, draws)
    joined = drawn.frame.drop(sample.HASH_COL).join(scored.rows, on=id_col, how="inner").persist()
    try:
        if joined.count() != drawn.rows:
            duplicated = scored.rows.groupBy(id_col).count().where("count > 1").limit(3).collect()
            examples = ", ".join(str(row[id_col]) for row in duplicated)
            raise ValueError(f"id column {id_col!r} of the new rows is not unique (e.g. ids {examples})")
    except ValueError:
        joined.unpersist()
        raise
    finally:
        drawn.frame.unpersist()
    return sample.Draws(joined, drawn.candidates, drawn.attempts, drawn.rows)


def merged_stats(old: score.ClusterStats, new: score.ClusterStats) -> score.ClusterStats:
    """Sizes and costs of old and new rows together, under the same centers."""
    return score.ClusterStats(old.sizes + new.sizes, old.costs + new.costs)


def allocate_draws(old: score.ClusterStats, new: score.ClusterStats, old_draws: int) -> int:
    """Draws for the new stratum: m_new = round(m_old * S_new / S_old), at least 1.

    S_h is the sensitivity mass of stratum h under the statistics of the whole table,
    S_h = Phi_h / Phi + sum_j n_hj / n_j. A single sample of the whole table puts on average this
    share of its draws on each stratum, so the union is allocated as a fresh sample of the same
    total size would be; new rows that cost more (drift) get proportionally more draws.
    """
    if old_draws < 1:
        raise ValueError(f"the previous subset must hold at least 1 draw, got {old_draws}")
    whole = merged_stats(old, new)
    nonempty = whole.sizes > 0

    def mass(stats: score.ClusterStats) -> float:
        uniform = float((stats.sizes[nonempty] / whole.sizes[nonempty]).sum())
        return uniform + (stats.total_cost / whole.total_cost if whole.total_cost > 0 else 0.0)

    old_mass = mass(old)
    if old_mass <= 0:
        raise ValueError("the model's statistics hold no rows; fit it on the old rows first")
    return max(1, round(old_draws * mass(new) / old_mass))


def cost_drift(old: score.ClusterStats, new: score.ClusterStats) -> float:
    """Mean cost per new row over mean cost per old row, under the same centers (1 = no drift)."""
    old_mean = old.total_cost / old.n
    new_mean = new.total_cost / new.n
    if old_mean <= 0:
        return 1.0 if new_mean <= 0 else math.inf
    return new_mean / old_mean


def refit_reasons(
    drift: float,
    rows_at_fit: int,
    rows_now: int,
    max_cost_drift: float = MAX_COST_DRIFT,
    max_growth: float = MAX_GROWTH,
) -> list[str]:
    """Why a full re-fit is advised instead of further refreshes (empty: refreshing is fine)."""
    reasons = []
    if drift > max_cost_drift:
        reasons.append(
            f"the new rows cost {drift:.2f}x the old rows per row under the saved centers "
            f"(limit {max_cost_drift})"
        )
    if rows_now > max_growth * rows_at_fit:
        reasons.append(
            f"the table has {rows_now} rows, more than {max_growth:g}x the {rows_at_fit} it had when "
            "the centers were fitted"
        )
    return reasons


def refreshed_model(
    model: SensitivitySamplerModel, new: score.ClusterStats, record: dict[str, Any]
) -> SensitivitySamplerModel:
    """The same centers and params with old + new statistics, and this refresh in its history."""
    info = model.fitInfo
    info.setdefault("rows_at_fit", model.clusterStats.n)
    info["refreshes"] = [*info.get("refreshes", []), record]
    return model.withClusterStats(merged_stats(model.clusterStats, new), info)


def _read(spark: SparkSession, source: str, fmt: str, options: dict[str, str]) -> DataFrame:
    if fmt == "delta":
        version = options.get("versionAsOf")
        return read_delta(spark, source, None if version is None else int(version))
    return read_input(spark, source, fmt, options)


def _previous_subset(
    spark: SparkSession, path: str, fmt: str, id_col: str
) -> tuple[DataFrame, int, int | None]:
    """The previous subset (pinned to its current version when Delta), its draws, and that version."""
    if fmt not in SUBSET_FORMATS:
        raise ValueError(f"unknown subset format {fmt!r}; expected one of {', '.join(SUBSET_FORMATS)}")
    version = delta_version(path) if fmt == "delta" else None
    previous = read_delta(spark, path, version) if fmt == "delta" else spark.read.parquet(glob_escape(path))
    missing = [c for c in (id_col, sample.COUNT_COL, sample.WEIGHT_COL) if c not in previous.columns]
    if missing:
        raise ValueError(f"previous subset {path} has no column {missing[0]!r}; is it a subset/ output?")
    draws = previous.agg(F.sum(sample.COUNT_COL)).first()[0]
    if not draws:
        raise ValueError(f"previous subset {path} holds no draws")
    return previous, int(draws), version


def _check_fresh_ids(new_ids: DataFrame, previous: DataFrame, id_col: str) -> None:
    """Appended rows need ids of their own: a reused id would be counted in two strata."""
    clashes = (
        new_ids.select(id_col)
        .join(F.broadcast(previous.select(id_col)), on=id_col, how="inner")
        .limit(3)
        .collect()
    )
    if clashes:
        examples = ", ".join(str(row[id_col]) for row in clashes)
        raise ValueError(
            f"new rows reuse ids of the previous subset (e.g. ids {examples}); appended rows need "
            "new ids, and a refresh must not be run twice on the same rows"
        )


def _check_union(subset: DataFrame, id_col: str, expected_draws: int, expected_rows: int) -> float:
    """One row per id and every draw present in the refreshed subset; returns its weight sum."""
    totals = subset.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(id_col).alias("ids"),
        F.sum(sample.COUNT_COL).alias("draws"),
        F.sum(sample.WEIGHT_COL).alias("weights"),
    ).first()
    if (totals["rows"], totals["ids"], totals["draws"]) != (expected_rows, expected_rows, expected_draws):
        raise RuntimeError(
            f"internal error: the refreshed subset holds {totals['rows']} rows, {totals['ids']} ids "
            f"and {totals['draws']} draws; expected {expected_rows} rows and {expected_draws} draws"
        )
    return float(totals["weights"])


@dataclass(frozen=True)
class Request:
    """The settings of one refresh, named as its manifest's ``parameters`` name them."""

    model: str
    new_input: str
    format: str
    previous_subset: str
    subset_format: str
    sample_size: int | None
    seed: int
    max_cost_drift: float


@dataclass(frozen=True)
class Sources:
    """The previous subset (pinned), its draws and Delta version, the new rows, earlier runs' inputs."""

    previous: DataFrame
    old_draws: int
    version: int | None
    new_rows: DataFrame
    earlier: list[dict[str, str]]


def read_sources(
    spark: SparkSession, model: SensitivitySamplerModel, request: Request, input_options: dict[str, str]
) -> Sources:
    """The model and the previous subset from one run, and new rows with every column the subset has."""
    lineage.check_same_run(spark, request.model, request.previous_subset)
    manifest = lineage.run_manifest(spark, request.model)
    if manifest is not None and "target" in manifest:
        # Its weights stand for target rows, a new stratum's for input rows: the sum would mean nothing.
        raise ValueError(
            f"previous subset {request.previous_subset} was drawn to a --target; refresh adds input "
            "rows weighted to the input, so select again with the new rows and the target instead"
        )
    if manifest is not None and "subsets" in manifest:
        # Its draws are several subsets' at once: refreshing them together would count them as one.
        raise ValueError(
            f"previous subset {request.previous_subset} holds several sample sizes (column "
            f"{sample.BUDGET_COL!r}); refresh works on a subset of one sample size: select again with "
            "the one you keep"
        )
    earlier = lineage.inputs_read(manifest)
    previous, old_draws, version = _previous_subset(
        spark, request.previous_subset, request.subset_format, model.getIdCol()
    )
    new_rows = _read(spark, request.new_input, request.format, input_options)
    new_rows = parse_text_vectors(new_rows, model.getFeaturesCol())
    missing = [c for c in previous.columns if c not in (*new_rows.columns, *OUTPUT_COLUMNS)]
    if missing:
        raise ValueError(
            f"the new rows have no column {missing[0]!r}, which the previous subset has "
            f"(new columns: {new_rows.columns})"
        )
    return Sources(previous, old_draws, version, new_rows, earlier)


def draw_refresh(
    spark: SparkSession,
    model: SensitivitySamplerModel,
    scored: ScoredRows,
    sources: Sources,
    request: Request,
    check_earlier_ids: bool,
    allow_unreadable: bool = False,
) -> tuple[sample.Draws, SensitivitySamplerModel, dict[str, Any]]:
    """Checks the new ids, draws the new stratum (persisted), and updates the model; returns them with
    the manifest's counts, drift and re-fit advice."""
    unchecked = ["not checked (--skip-earlier-id-check)"]
    if check_earlier_ids:
        unchecked = lineage.check_not_read_before(
            spark, scored.assigned, scored.id_col, sources.earlier, request.new_input, allow_unreadable
        )
    _check_fresh_ids(scored.assigned, sources.previous, scored.id_col)
    old, new, old_draws = model.clusterStats, scored.stats, sources.old_draws
    draws = request.sample_size or allocate_draws(old, new, old_draws)
    drawn = draw_new_stratum(scored, draws, request.seed)
    drift = cost_drift(old, new)
    record = {
        "new_input": request.new_input,
        "new_rows": new.n,
        "invalid_rows": scored.invalid_rows,
        "draws": draws,
        "seed": request.seed,
        "cost_drift": drift if math.isfinite(drift) else None,
    }
    updated = refreshed_model(model, new, record)
    reasons = refit_reasons(drift, updated.fitInfo["rows_at_fit"], old.n + new.n, request.max_cost_drift)
    facts = {
        "earlier_inputs_unchecked": unchecked,
        "n_old": old.n,
        "n_new": new.n,
        "n": old.n + new.n,
        "new_invalid_rows": scored.invalid_rows,
        "m_old": old_draws,
        "m_new": draws,
        "m": old_draws + draws,
        "cost_drift": record["cost_drift"],
        "mean_cost_old": old.total_cost / old.n,
        "mean_cost_new": new.total_cost / new.n,
        "refit_advised": bool(reasons),
        "refit_reasons": reasons,
        "sampling": {"candidates": drawn.candidates, "attempts": drawn.attempts},
    }
    return drawn, updated, facts


def write_union(
    spark: SparkSession,
    sources: Sources,
    drawn: DataFrame,
    out: AtomicOutput,
    fmt: str,
    id_col: str,
    draws: int,
) -> dict[str, Any]:
    """Stages subset/ (the previous subset's rows, then the new stratum) and checks it on reading back."""
    previous = sources.previous
    # The subset keeps its schema (a Delta table demands it): new columns take the old types.
    new_part = drawn.select(*[F.col(c).cast(previous.schema[c].dataType) for c in previous.columns])
    expected_rows = previous.count() + new_part.count()
    write_table(previous.unionByName(new_part), out.path("subset"), fmt, out.final_uri("subset"))
    union = read_table(spark, out.path("subset"), fmt)
    weight_sum = _check_union(union, id_col, draws, expected_rows)
    return {"subset_rows": expected_rows, "sum_of_weights": weight_sum}


def run_refresh(spark: SparkSession, config: RefreshConfig) -> dict[str, Any]:
    """Adds a stratum of newly appended rows to a weighted subset; returns the manifest.

    Reads the saved model (``config.model``), the previous subset and the NEW rows only.
    ``sample_size`` is the number of new draws (default: :func:`allocate_draws`). Publishes under
    ``output``: model/ (same centers, old + new statistics, for the next refresh) and manifest.json
    (draws, drift, re-fit advice), plus subset/: the previous subset's rows unchanged plus the new
    stratum, as Parquet or as a new Delta table (``subset_format``). The previous output is never
    modified. New rows whose ids an earlier run's input holds are refused (one semi-join on the id
    column per input) unless ``skip_earlier_id_check``; an earlier input that cannot be read is
    refused unless ``skip_unreadable_earlier_inputs``, and then listed in the manifest's
    ``earlier_inputs_unchecked``.
    """
    check_settings(config)
    model_path, new_input, fmt = config.model, config.new_input, config.format
    previous_subset, output, subset_format = config.previous_subset, config.output, config.subset_format
    started = time.perf_counter()
    model = SensitivitySamplerModel.load(model_path)
    request = Request(
        model_path,
        new_input,
        fmt,
        previous_subset,
        subset_format,
        config.sample_size,
        config.seed,
        config.max_cost_drift,
    )
    inputs = {"--model": model_path, "--new-input": new_input, "--previous-subset": previous_subset}
    with contextlib.ExitStack() as cleanup, publishing(spark, output, config.overwrite, inputs) as job:
        sources = read_sources(spark, model, request, config.input_options)
        scored = score_new_rows(model, sources.new_rows, config.on_invalid)
        cleanup.callback(scored.release)
        drawn, updated, facts = draw_refresh(
            spark,
            model,
            scored,
            sources,
            request,
            not config.skip_earlier_id_check,
            config.skip_unreadable_earlier_inputs,
        )
        cleanup.callback(drawn.frame.unpersist)
        written = write_union(
            spark, sources, drawn.frame, job.output, subset_format, scored.id_col, facts["m"]
        )
        updated.write().save(job.output.path("model"))
        job.manifest = redact(
            {
                "parameters": asdict(request),
                "subset": lineage.recorded_input(spark, f"{job.output.destination}/subset", subset_format)[
                    "path"
                ],
                "previous_subset_version": sources.version,
                "inputs": [*sources.earlier, lineage.recorded_input(spark, new_input, fmt)],
                **facts,
                **written,
                "total_seconds": round(time.perf_counter() - started, 3),
                "versions": versions(spark),
                "created": utc_timestamp(),
                "output": job.output.destination,
            }
        )
    return job.manifest
