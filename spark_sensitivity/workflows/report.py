"""The HTML report of a selection: bounded numbers gathered with Spark, rendered into report/.

The job may run on billions of rows, so nothing O(n) reaches the driver: the report reads the staged
subset/ (at most m rows, aggregated in Spark) and clusters/ (k rows), takes at most ``max_points``
rows of the input chosen by a hash of (id, seed) for the projection and the sensitivity histogram,
and, when a loss column is named, computes its true mean with one distributed aggregate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL
from spark_sensitivity.core.sampling import rowrandom, score
from spark_sensitivity.core.sampling.sample import BUDGET_COL, COUNT_COL, WEIGHT_COL
from spark_sensitivity.core.sampling.score import SENSITIVITY_COL
from spark_sensitivity.core.vectors import parse_text_vectors, vector_values
from spark_sensitivity.io.publish import AtomicOutput
from spark_sensitivity.io.storage import read_table
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.workflows.report_render import LossComparison, ReportData, render

REPORT_DIR = "report"
_VALUES = "__ss_report_vector"
_RANK = "__ss_report_rank"
# The report's example rows: the few nearest the center in each of the largest clusters.
EXAMPLE_CLUSTERS = 20
EXAMPLES_PER_CLUSTER = 3
EXAMPLE_CHARS = 160


def check_loss_column(df: DataFrame, loss_col: str) -> None:
    """Fails early (no pass over the data) when the loss column is missing or not a number."""
    if loss_col not in df.columns:
        raise ValueError(f"loss column {loss_col!r} is not in the input (columns: {df.columns})")
    dtype = df.schema[loss_col].dataType
    if not isinstance(dtype, NumericType):
        raise ValueError(f"loss column {loss_col!r} has type {dtype.simpleString()}; expected a number")


def write_report(
    spark: SparkSession,
    *,
    output: AtomicOutput,
    model: SensitivitySamplerModel,
    data: DataFrame,
    id_col: str,
    vector_col: str,
    manifest: dict[str, Any],
    loss_col: str | None = None,
    seed: int = 0,
    max_points: int = 20_000,
    example_col: str | None = None,
) -> None:
    """Writes report/index.html and its PNG figures into the staged output, next to subset/."""
    report = gather(
        spark,
        output=output,
        model=model,
        data=data,
        id_col=id_col,
        vector_col=vector_col,
        manifest=manifest,
        loss_col=loss_col,
        seed=seed,
        max_points=max_points,
        example_col=example_col,
    )
    for name, content in render(report).items():
        output.write_bytes(f"{REPORT_DIR}/{name}", content)


def gather(
    spark: SparkSession,
    *,
    output: AtomicOutput,
    model: SensitivitySamplerModel,
    data: DataFrame,
    id_col: str,
    vector_col: str,
    manifest: dict[str, Any],
    loss_col: str | None = None,
    seed: int = 0,
    max_points: int = 20_000,
    example_col: str | None = None,
) -> ReportData:
    """The report's numbers, from the staged outputs and bounded samples of the input."""
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    if "n" not in manifest:
        raise ValueError("the manifest has no 'n' (the number of input rows)")
    centers, sizes, costs = _staged_clusters(spark, output)
    n_valid = int(sizes.sum())

    loss_truth = None
    if loss_col is not None:
        check_loss_column(data, loss_col)
        loss_truth = true_mean_loss(data, id_col, vector_col, loss_col, centers.shape[1])

    subset_format = manifest.get("parameters", {}).get("output_format", "parquet")
    subset = parse_text_vectors(read_table(spark, output.path("subset"), subset_format), vector_col)
    if BUDGET_COL in manifest:  # a run of several sample sizes: the one the report shows
        subset = subset.where(F.col(BUDGET_COL) == manifest[BUDGET_COL]).drop(BUDGET_COL)
    draws, weights, weighted_loss, subset_rows = _per_cluster(subset, len(centers), loss_col)

    scorer = model.copy({model.featuresCol: vector_col})
    rows = bounded_sample(data.select(id_col, vector_col), id_col, seed, int(manifest["n"]), max_points)
    population = scorer.transform(rows).where(F.col(CLUSTER_COL).isNotNull())
    (population_sens,), population_points = _collect(
        population, vector_col, centers.shape[1], [SENSITIVITY_COL]
    )

    shown = bounded_sample(subset, id_col, seed, subset_rows, max_points)
    if vector_col not in subset.columns:  # written with --drop-vector: look the shown rows up
        shown = data.select(id_col, vector_col).join(F.broadcast(shown), on=id_col)
    (selected_sens, selected_count, selected_weight), selected_points = _collect(
        shown, vector_col, centers.shape[1], [SENSITIVITY_COL, COUNT_COL, WEIGHT_COL]
    )

    mean, basis, explained = principal_plane(population_points)
    total_weight = float(weights.sum())
    loss = None
    if loss_col is not None:
        loss = LossComparison(loss_col, loss_truth, weighted_loss / n_valid, weighted_loss / total_weight)
    return ReportData(
        n=int(manifest["n"]),
        n_valid=n_valid,
        k=len(centers),
        m=int(draws.sum()),
        subset_rows=subset_rows,
        kmeans_cost=float(costs.sum()),
        sum_of_weights=total_weight,
        cluster_sizes=sizes,
        cluster_costs=costs,
        cluster_draws=draws,
        cluster_weights=weights,
        population_xy=(population_points - mean) @ basis.T,
        population_sensitivity=population_sens,
        selected_xy=(selected_points - mean) @ basis.T,
        selected_sensitivity=selected_sens,
        selected_count=selected_count,
        selected_weight=selected_weight,
        centers_xy=(centers - mean) @ basis.T,
        explained_variance=explained,
        loss=loss,
        forecast=manifest.get("forecast"),
        run_facts=_run_facts(manifest),
        examples=cluster_examples(subset, sizes, id_col, example_col),
        example_col=example_col,
        **_target_counts(manifest.get("target")),
    )


def _target_counts(facts: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """The target's rows and uncovered rows per cluster, from the manifest (none without --target)."""
    if not facts:
        return {}
    return {
        "target_rows": np.asarray(facts["cluster_rows"], dtype=np.int64),
        "target_uncovered": np.asarray(facts["cluster_uncovered"], dtype=np.int64),
    }


def cluster_examples(
    subset: DataFrame, sizes: np.ndarray, id_col: str, example_col: str | None
) -> dict[int, list[tuple[str, str]]]:
    """Up to EXAMPLES_PER_CLUSTER selected rows of each of the EXAMPLE_CLUSTERS largest clusters,
    the nearest to the center first, as (id, ``example_col``'s value cut to EXAMPLE_CHARS, or '')."""
    if example_col is not None and example_col not in subset.columns:
        raise ValueError(
            f"--report-col {example_col!r} is not a column of subset/ (columns: {', '.join(subset.columns)})"
        )
    largest = [int(j) for j in np.argsort(-sizes, kind="stable")[:EXAMPLE_CLUSTERS] if sizes[j] > 0]
    order = Window.partitionBy(CLUSTER_COL).orderBy(F.col(COST_COL), F.col(id_col))
    shown = F.substring(F.col(example_col).cast("string"), 1, EXAMPLE_CHARS) if example_col else F.lit("")
    rows = (
        subset.where(F.col(CLUSTER_COL).isin(largest))
        .withColumn(_RANK, F.row_number().over(order))
        .where(F.col(_RANK) <= EXAMPLES_PER_CLUSTER)
        .select(CLUSTER_COL, _RANK, F.col(id_col).cast("string").alias("id"), shown.alias("shown"))
        .collect()
    )
    examples: dict[int, list[tuple[str, str]]] = {}
    for row in sorted(rows, key=lambda row: (row[CLUSTER_COL], row[_RANK])):
        examples.setdefault(row[CLUSTER_COL], []).append((row["id"], row["shown"] or ""))
    return examples


def _staged_clusters(spark: SparkSession, output: AtomicOutput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centers, sizes and costs from the staged clusters/ (k rows), in cluster order."""
    centers, stats = score.clusters_from_rows(spark.read.parquet(output.read_path("clusters")).collect())
    return centers, stats.sizes, stats.costs


def principal_plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Mean, the top two principal directions (2, d) and their shares of the variance.

    With one dimension the second direction is zero, so every point lies on the first axis.
    """
    mean = points.mean(axis=0)
    _, singular, vt = np.linalg.svd(points - mean, full_matrices=False)
    basis = np.zeros((2, points.shape[1]))
    basis[: min(2, len(vt))] = vt[:2]
    variance = singular**2
    total = float(variance.sum())
    shares = [float(v / total) if total > 0 else 0.0 for v in variance[:2]]
    shares += [0.0] * (2 - len(shares))
    return mean, basis, (shares[0], shares[1])


def _uniform(id_col: str, seed: int) -> Column:
    return rowrandom.jvm_uniform(id_col, seed, rowrandom.STREAM_REPORT_SAMPLE)


def bounded_sample(df: DataFrame, id_col: str, seed: int, rows: int, max_points: int) -> DataFrame:
    """At most ``max_points`` rows, uniform by a hash of (id, seed): a filter pass, then a top-k sort.

    The filter keeps about 6 standard deviations more than needed, so the limit almost always has
    enough rows; only the kept rows are sorted.
    """
    expected = max_points + 6.0 * math.sqrt(max_points) + 10.0
    fraction = min(1.0, expected / max(rows, 1))
    return (
        df.where(_uniform(id_col, seed) < fraction).orderBy(_uniform(id_col, seed), id_col).limit(max_points)
    )


def _collect(
    df: DataFrame, vector_col: str, dim: int, columns: list[str]
) -> tuple[list[np.ndarray], np.ndarray]:
    """The named numeric columns and the embedding matrix of a bounded frame, via Arrow."""
    table = df.select(*columns, vector_values(df, vector_col).alias(_VALUES)).toArrow()
    matrix, valid = batch_matrix(table.column(_VALUES), dim)
    values = [table.column(c).to_numpy().astype(np.float64)[valid] for c in columns]
    return values, matrix[valid].astype(np.float64)


def _per_cluster(
    subset: DataFrame, k: int, loss_col: str | None
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Draws and sum of weights per cluster, the subset's sum of weight * loss, and its row count."""
    loss = F.col(WEIGHT_COL) * F.col(loss_col).cast("double") if loss_col else F.lit(0.0)
    rows = (
        subset.groupBy(CLUSTER_COL)
        .agg(
            F.sum(COUNT_COL).alias("draws"),
            F.sum(WEIGHT_COL).alias("weight"),
            F.sum(loss).alias("weighted_loss"),
            F.count(F.lit(1)).alias("rows"),
        )
        .collect()
    )
    draws = np.zeros(k, dtype=np.int64)
    weights = np.zeros(k, dtype=np.float64)
    for row in rows:
        draws[row[CLUSTER_COL]] = row["draws"]
        weights[row[CLUSTER_COL]] = row["weight"]
    return draws, weights, float(sum(r["weighted_loss"] for r in rows)), sum(int(r["rows"]) for r in rows)


def true_mean_loss(data: DataFrame, id_col: str, vector_col: str, loss_col: str, dim: int) -> float:
    """The loss's mean over the rows with a valid embedding (the rows the subset stands for)."""
    values = vector_values(data, vector_col)
    valid = (
        values.isNotNull()
        & (F.size(values) == dim)
        & F.forall(values, lambda x: ~F.isnan(x) & (F.abs(x) < float("inf")))
    )
    loss = F.col(loss_col).cast("double")
    bad = loss.isNull() | F.isnan(loss) | (F.abs(loss) == float("inf"))
    row = (
        data.where(valid)
        .agg(F.count_if(bad).alias("bad"), F.sum(loss).alias("total"), F.count(F.lit(1)).alias("rows"))
        .first()
    )
    if row["bad"]:
        examples = [
            str(i) for i in sorted(r[0] for r in data.where(valid & bad).select(id_col).limit(3).collect())
        ]
        raise ValueError(
            f"loss column {loss_col!r} has {row['bad']} null or non-finite values "
            f"(e.g. ids {', '.join(examples)}); the mean loss needs a finite loss on every row"
        )
    return float(row["total"]) / row["rows"]


def _run_facts(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The manifest's facts worth a glance, as (label, text); absent ones are left out."""
    parameters = manifest.get("parameters", {})
    fit = manifest.get("kmeans_fit", {})
    versions = manifest.get("versions", {})
    facts = [
        ("input", parameters.get("input")),
        ("strategy", _strategy_fact(manifest)),
        ("seed", manifest.get("seed")),
        ("cost power z", parameters.get("z")),
        ("rows k-means was fitted on", fit.get("fit_rows")),
        ("k-means engine", fit.get("kmeans_engine")),
        ("k-means iterations", fit.get("kmeans_iterations")),
        ("rows skipped for an invalid embedding", manifest.get("invalid_rows")),
        ("near-duplicates removed before selection", _dedup_fact(manifest.get("dedup"))),
        (
            "seconds from reading the input to the checked subset (before this report and publishing)",
            manifest.get("timings", {}).get("total_seconds"),
        ),
        ("created", manifest.get("created")),
        ("spark-sensitivity version", versions.get("spark_sensitivity")),
        ("Spark version", versions.get("spark")),
    ]
    return [(label, str(value)) for label, value in facts if value is not None]


def _strategy_fact(manifest: dict[str, Any]) -> str | None:
    """'representatives, k = 400 (auto chose ... because ...)', or '..., as requested'."""
    used = manifest.get("strategy_used", manifest.get("strategy"))
    if used is None:
        return None
    text = f"{used}, k = {manifest.get('k_used', manifest.get('k'))}"
    if BUDGET_COL in manifest:
        sizes = ", ".join(str(part["sample_size"]) for part in manifest["subsets"])
        text += f" for sample size {manifest[BUDGET_COL]}, the largest of this run's ({sizes}), which this report shows"
    reason = manifest.get("auto_reason")
    return f"{text} ({reason})" if reason else f"{text}, as requested"


def _dedup_fact(dedup: dict[str, Any] | None) -> str | None:
    """Counts and a few of the least similar removed pairs (id ~ duplicate_of), from the manifest."""
    if dedup is None:
        return None
    pairs = ", ".join(
        f"{p['id']} ~ {p['duplicate_of']} ({p['similarity']:.4f})" for p in dedup["least_similar_pairs"]
    )
    return (
        f"{dedup['removed_rows']} of {dedup['input_rows']} rows at eps {dedup['eps']} "
        f"({dedup['removed_cross_cluster']} across clusters); e.g. {pairs or 'none'}"
    )
