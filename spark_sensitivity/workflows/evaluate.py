"""How well a selection scheme estimates the mean loss of a table that has a loss for every row.

For each sample size m and each of many seeds, the scheme selects rows, and the estimate of the mean
loss is compared with the true mean. Estimators:

- weighted (Horvitz-Thompson):  mean_hat = (1/n) * sum_{i in S} w_i * loss_i
- difference (loss-aware only): the representatives' losses as a control variate,

      mean_hat = (1/n) * [ sum_j n_j * loss(r_j)  +  sum_{i in S} w_i * (loss_i - loss(r_a(i))) ]

  Unbiased for the same reason as the weighted estimate (E[sum_S w_i g_i] = sum_i g_i for any g, here
  g_i = loss_i - loss(r_a(i))); it gains when a row's loss is close to its representative's.

Reported per m: the true mean, each seed's estimate and relative error, and the RMSE of the relative
error, next to uniform sampling (m distinct rows, weight n/m) given the same number of loss
evaluations (m draws, plus the k representatives for the loss-aware scheme).

Draws for many seeds run as one Spark job per m: the scored rows are cross-joined with the seeds and
each seed keeps exactly what ``sample.draw`` would have drawn under that seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL
from spark_sensitivity.core.sampling import lossaware, representatives, sample
from spark_sensitivity.core.sampling import uniform as reference
from spark_sensitivity.core.sampling.score import PROBABILITY_COL
from spark_sensitivity.io.publish import publishing
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.ml.estimator import SensitivitySampler
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.settings import EVALUATE_SCHEMES, EvaluateConfig, check_settings

SEED_COL = reference.SEED_COL


def repeated_draws(
    scored: DataFrame, scorer: sample.Sensitivity, m: int, seeds: Sequence[int], id_col: str
) -> DataFrame:
    """For every seed s, the rows ``sample.draw`` draws from ``scored`` with the row hash under s.

    ``scored`` has the id, ``cluster_id`` and ``cost``. Returns (seed, id, cluster_id, cost,
    sensitivity, probability, count, weight), persisted.
    """
    if m < 1:
        raise ValueError(f"sample size must be at least 1, got {m}")
    remaining, frames = list(seeds), []
    for attempt in range(sample.MAX_ATTEMPTS):
        multi = scored.crossJoin(F.broadcast(reference.seeds_frame(scored, remaining))).withColumn(
            sample.HASH_COL, F.xxhash64(F.col(id_col), F.col(SEED_COL))
        )
        candidates = sample.candidates_frame(multi, scorer, sample.poisson_rate(m, attempt), attempt)
        per_seed = Window.partitionBy(SEED_COL)
        order = per_seed.orderBy(sample.DRAW_KEY_COL, sample.HASH_COL, sample.DRAW_INDEX_COL)
        carried = [c for c in candidates.columns if c not in (sample.DRAW_KEY_COL, sample.DRAW_INDEX_COL)]
        # A seed whose Poisson candidates fell short of m is dropped here and retried below.
        frame = (
            candidates.withColumn("__rank", F.row_number().over(order))
            .withColumn("__total", F.count(F.lit(1)).over(per_seed))
            .where((F.col("__rank") <= m) & (F.col("__total") >= m))
            .groupBy(*carried)
            .agg(F.count(F.lit(1)).cast("int").alias(sample.COUNT_COL))
            .withColumn(
                sample.WEIGHT_COL, F.col(sample.COUNT_COL) / (F.lit(float(m)) * F.col(PROBABILITY_COL))
            )
            .drop(sample.HASH_COL)
            .persist()
        )
        done = {r[0] for r in frame.groupBy(SEED_COL).agg(F.sum(sample.COUNT_COL)).collect() if r[1] == m}
        frames.append(frame)
        remaining = [s for s in remaining if s not in done]
        if not remaining:
            break
    else:
        raise RuntimeError(
            f"could not draw {m} samples for seeds {remaining[:3]} in {sample.MAX_ATTEMPTS} attempts"
        )
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def weighted_estimate(selection: DataFrame, losses: DataFrame, n: int, id_col: str, loss_col: str) -> float:
    """(1/n) * sum over the selection of weight * loss: the estimate of the mean loss."""
    joined = selection.select(id_col, sample.WEIGHT_COL).join(losses.select(id_col, loss_col), on=id_col)
    total = joined.agg(F.sum(F.col(sample.WEIGHT_COL) * F.col(loss_col))).first()[0]
    return float(total or 0.0) / n


@dataclass
class Evaluation:
    """One scheme, estimator and sample size over many seeds."""

    scheme: str
    estimator: str
    sample_size: int
    loss_evaluations: int
    true_mean: float
    seeds: list[int]
    estimates: list[float]
    uniform_rmse: float | None = None

    @property
    def relative_errors(self) -> np.ndarray:
        return (np.array(self.estimates) - self.true_mean) / self.true_mean

    @property
    def rmse(self) -> float:
        """Root mean square of the relative error over the seeds."""
        return float(np.sqrt(np.mean(self.relative_errors**2)))

    @property
    def mean_relative_error(self) -> float:
        """The average signed relative error (bias, up to the seeds' noise)."""
        return float(np.mean(self.relative_errors))

    def summary(self) -> dict:
        ratio = self.rmse / self.uniform_rmse if self.uniform_rmse else None
        return {
            "scheme": self.scheme,
            "estimator": self.estimator,
            "sample_size": self.sample_size,
            "loss_evaluations": self.loss_evaluations,
            "true_mean": self.true_mean,
            "seeds": len(self.seeds),
            "mean_estimate": float(np.mean(self.estimates)),
            "mean_relative_error": self.mean_relative_error,
            "rmse": self.rmse,
            "uniform_rmse": self.uniform_rmse,
            "rmse_vs_uniform": ratio,
        }


@dataclass
class LossTable:
    """A table with an id, an embedding and a loss for every row, checked once and persisted."""

    frame: DataFrame
    id_col: str
    vector_col: str
    loss_col: str
    n: int = field(init=False)
    true_mean: float = field(init=False)

    def __post_init__(self) -> None:
        for column in (self.id_col, self.vector_col, self.loss_col):
            if column not in self.frame.columns:
                raise ValueError(f"the table has no column {column!r} (columns: {self.frame.columns})")
        loss = F.col(self.loss_col).cast("double")
        bad = ~(loss.isNotNull() & ~F.isnan(loss) & (F.abs(loss) < float("inf")))
        self.frame = self.frame.select(self.id_col, self.vector_col, loss.alias(self.loss_col)).persist()
        totals = self.frame.agg(F.count(F.lit(1)), F.sum(self.loss_col), F.count_if(bad)).first()
        if totals[2]:
            examples = self.frame.where(bad).select(self.id_col).limit(3).collect()
            raise ValueError(
                f"loss column {self.loss_col!r} is null or not finite for {totals[2]} rows "
                f"(e.g. ids {', '.join(str(r[0]) for r in examples)})"
            )
        self.n = int(totals[0])
        if self.n == 0:
            raise ValueError("the table has no rows")
        self.true_mean = float(totals[1]) / self.n
        if self.true_mean == 0:
            raise ValueError(f"the mean of {self.loss_col!r} is 0: relative errors are undefined")

    @property
    def losses(self) -> DataFrame:
        return self.frame.select(self.id_col, self.loss_col)

    def estimates(
        self, draws: DataFrame, seeds: Sequence[int], control_total: float | None = None
    ) -> list[float]:
        """Per seed, the weighted estimate, or the difference estimate when the draws carry
        ``proxy_loss`` and ``control_total`` = sum_i proxy_i is given."""
        loss, weight = F.col(self.loss_col), F.col(sample.WEIGHT_COL)
        value = weight * loss if control_total is None else weight * (loss - F.col(representatives.PROXY_COL))
        joined = draws.join(self.losses, on=self.id_col, how="inner")
        sums = {r[0]: float(r[1]) for r in joined.groupBy(SEED_COL).agg(F.sum(value)).collect()}
        offset = 0.0 if control_total is None else control_total
        return [(offset + sums.get(s, 0.0)) / self.n for s in seeds]


@dataclass(frozen=True)
class SchemeSettings:
    """The clustering and loss-aware settings of the schemes that cluster."""

    k: int = 100
    z: int = 2
    lam: float | None = None
    uniform_share: float = lossaware.DEFAULT_UNIFORM_SHARE
    fit_seed: int = 0
    max_iter: int = 20
    points_per_center: int = 256


Estimates = Iterator[tuple[str, int, int, list[float]]]


def evaluate(
    table: LossTable,
    scheme: str,
    sample_sizes: Sequence[int],
    seeds: Sequence[int],
    settings: SchemeSettings = SchemeSettings(),
    model: SensitivitySamplerModel | None = None,
    uniform_cache: dict[int, float] | None = None,
) -> list[Evaluation]:
    """The scheme's estimates of the mean loss for each sample size over ``seeds``, each with the RMSE
    of uniform sampling at the same number of loss evaluations (``uniform_rmse``).

    ``model`` (fitted on ``table.frame``) is reused instead of fitting one from ``settings``, and kept;
    ``uniform_cache`` (budget -> uniform RMSE for these seeds) lets several calls share uniform runs.
    """
    if scheme not in EVALUATE_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(EVALUATE_SCHEMES)}")
    seeds = list(seeds)
    results: list[Evaluation] = []
    uniform_cache = {} if uniform_cache is None else uniform_cache
    if scheme == "uniform":
        for estimator, m, labels, estimates in _uniform_estimates(table, sample_sizes, seeds):
            evaluation = Evaluation(scheme, estimator, m, labels, table.true_mean, seeds, estimates)
            evaluation.uniform_rmse = uniform_cache.setdefault(m, evaluation.rmse)
            results.append(evaluation)
        return results
    fitted_here = model is None
    model = model or fit_model(table, settings)
    try:
        if scheme == "loss-aware":
            found = _loss_aware_estimates(table, model, sample_sizes, seeds, settings)
        else:
            found = _model_estimates(table, model, scheme, sample_sizes, seeds)
        # Lazily: each scheme's draws are released before the next sample size's are made.
        for estimator, m, labels, estimates in found:
            evaluation = Evaluation(scheme, estimator, m, labels, table.true_mean, seeds, estimates)
            evaluation.uniform_rmse = uniform_rmse(table, seeds, labels, uniform_cache)
            results.append(evaluation)
    finally:
        if fitted_here:
            model.summary.release()
    return results


def fit_model(table: LossTable, settings: SchemeSettings) -> SensitivitySamplerModel:
    """The k-means model of the schemes that cluster, fitted on the whole loss table."""
    return SensitivitySampler(
        idCol=table.id_col,
        featuresCol=table.vector_col,
        k=settings.k,
        costPower=settings.z,
        maxIter=settings.max_iter,
        seed=settings.fit_seed,
        pointsPerCenter=settings.points_per_center,
    ).fit(table.frame)


def uniform_rmse(table: LossTable, seeds: list[int], budget: int, cache: dict[int, float]) -> float:
    """The RMSE of uniform sampling with ``budget`` loss evaluations, computed once per budget."""
    if budget not in cache:
        draws = reference.uniform_many(table.frame, table.id_col, min(budget, table.n), seeds, table.n)
        estimate = Evaluation(
            "uniform", "weighted", budget, budget, table.true_mean, seeds, table.estimates(draws, seeds)
        )
        draws.unpersist()
        cache[budget] = estimate.rmse
    return cache[budget]


def _uniform_estimates(table: LossTable, sample_sizes: Sequence[int], seeds: list[int]) -> Estimates:
    """(estimator, m, loss evaluations, estimates per seed) of uniform sampling."""
    for m in sample_sizes:
        draws = reference.uniform_many(table.frame, table.id_col, m, seeds, table.n)
        estimates = table.estimates(draws, seeds)
        draws.unpersist()
        yield "weighted", m, m, estimates


def _model_estimates(
    table: LossTable,
    model: SensitivitySamplerModel,
    scheme: str,
    sample_sizes: Sequence[int],
    seeds: list[int],
) -> Estimates:
    """The same for model-free sensitivity sampling and stratified sampling of the clusters."""
    for m in sample_sizes:
        if scheme == "model-free":
            draws = repeated_draws(model.summary.assignments, model.clusterStats, m, seeds, table.id_col)
        else:
            sizes = model.clusterStats.sizes
            draws = reference.stratified_many(model.summary.assignments, table.id_col, sizes, m, seeds)
        yield "weighted", m, m, table.estimates(draws, seeds)
        draws.unpersist()


def _loss_aware_estimates(
    table: LossTable,
    model: SensitivitySamplerModel,
    sample_sizes: Sequence[int],
    seeds: list[int],
    settings: SchemeSettings,
) -> Estimates:
    """The same for loss-aware sampling, weighted and difference estimates, with the k
    representatives' losses counted among the loss evaluations."""
    selection = lossaware.prepare(model, table.losses, table.loss_col, settings.lam, settings.uniform_share)
    try:
        k = len(selection.representatives)
        proxies = F.broadcast(selection.proxy_frame())
        for m in sample_sizes:
            draws = repeated_draws(selection.scored, selection.scorer, m, seeds, table.id_col)
            with_proxy = draws.join(proxies, on=CLUSTER_COL)
            yield "weighted", m, m + k, table.estimates(with_proxy, seeds)
            yield "difference", m, m + k, table.estimates(with_proxy, seeds, selection.proxy_total)
            draws.unpersist()
    finally:
        selection.release()


# The settings a loss evaluation uses, as evaluation.json records them.
PARAMETERS = (
    "input", "schemes", "sample_sizes", "seeds", "first_seed", "format", "id_col", "vector_col", "loss_col",
    "k", "z", "lam", "uniform_share", "max_iter", "points_per_center", "output", "overwrite",
)  # fmt: skip


def recorded(config: EvaluateConfig, names: tuple[str, ...]) -> dict:
    """The settings ``names`` of a resolved config, as evaluation.json records them."""
    values = {name: getattr(config, name) for name in names}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def run_evaluate(spark: SparkSession, config: EvaluateConfig) -> dict:
    """Evaluates every scheme; writes ``evaluation.json`` under ``config.output`` when given."""
    check_settings(config)
    config = config.resolved()
    if config.output is None:
        return evaluate_schemes(spark, config)
    inputs = {"--input": None if config.format == "table" else config.input}
    with publishing(spark, config.output, config.overwrite, inputs, manifest_name="evaluation.json") as job:
        job.manifest = evaluate_schemes(spark, config)
    return job.manifest


def evaluate_schemes(spark: SparkSession, config: EvaluateConfig) -> dict:
    """The report of every scheme of ``config`` on its loss table."""
    table = LossTable(
        read_input(spark, config.input, config.format, {}), config.id_col, config.vector_col, config.loss_col
    )
    settings = SchemeSettings(
        k=config.k,
        z=config.z,
        lam=config.lam,
        uniform_share=config.uniform_share,
        fit_seed=config.first_seed,
        max_iter=config.max_iter,
        points_per_center=config.points_per_center,
    )
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    rows = []
    try:
        for scheme in config.schemes:
            rows += [e.summary() for e in evaluate(table, scheme, config.sample_sizes, seeds, settings)]
    finally:
        table.frame.unpersist()
    return {
        "parameters": recorded(config, PARAMETERS),
        "n": table.n,
        "true_mean": table.true_mean,
        "results": rows,
    }


def format_report(report: dict) -> str:
    """The results as an aligned text table."""
    lines = [
        f"n = {report['n']}, true mean loss = {report['true_mean']:.6g}",
        f"{'scheme':<12} {'estimator':<11} {'m':>7} {'losses':>7} {'RMSE':>8} {'uniform':>8} {'ratio':>6} {'bias':>8}",
    ]
    for r in report["results"]:
        ratio = "" if r["rmse_vs_uniform"] is None else f"{r['rmse_vs_uniform']:.2f}"
        uniform = "" if r["uniform_rmse"] is None else f"{r['uniform_rmse']:.4f}"
        lines.append(
            f"{r['scheme']:<12} {r['estimator']:<11} {r['sample_size']:>7} {r['loss_evaluations']:>7} "
            f"{r['rmse']:>8.4f} {uniform:>8} {ratio:>6} {r['mean_relative_error']:>+8.4f}"
        )
    return "\n".join(lines)
