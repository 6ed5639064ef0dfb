"""Does training on the selected subset beat a uniform subset of the same size, on the user's labels?

The labelled table (id, embedding, label) is split once by a hash of the id (``rowrandom``'s
``eval_test`` stream, the same for every seed) into a held-out test part and a training part. For
each budget B and seed, the training part gives two subsets of B rows:

- the subset ``select`` would write with that --strategy, B and seed (the same planning, k-means fit
  and ``auto`` decision, through ``workflows.select``), drawn with ``SensitivitySamplerModel.sample``;
- a uniform subset of B rows (``reference.uniform``) under the same seed.

A multinomial logistic regression (``core.classifier``) is trained on each subset on the driver (B
rows), the strategy's both unweighted (a row drawn c times counts c times) and with its weights
w / mean(w); the uniform subset's weights are all equal, so it is trained once. Accuracy on the
test part is computed on the executors (one mapInArrow pass per budget, the classifiers shipped with
the task); only per-classifier counts reach the driver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, IntegralType, StringType

from spark_sensitivity.core.classifier import DEFAULT_ITERATIONS, DEFAULT_L2, LinearClassifier, fit_logistic
from spark_sensitivity.core.kmeans.batches import batch_matrix
from spark_sensitivity.core.sampling import rowrandom, strategies
from spark_sensitivity.core.sampling import uniform as reference
from spark_sensitivity.core.sampling.sample import COUNT_COL, WEIGHT_COL
from spark_sensitivity.core.vectors import vector_values
from spark_sensitivity.io.publish import publishing
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.settings import EvaluateConfig, SelectConfig, check_settings
from spark_sensitivity.workflows import select
from spark_sensitivity.workflows.evaluate import recorded

MAX_CLASSES = 1000
# The split's hash seed: fixed, so the test rows do not change with --seeds or --first-seed.
SPLIT_SEED = 0
UNWEIGHTED, WEIGHTED = "unweighted", "weighted"
_VECTOR = "__ss_vector"
# Columns of class scores computed at once per pass, and rows per matrix product: bounds executor memory.
_MAX_SCORE_COLUMNS = 4096
_ROWS_PER_PRODUCT = 4096


# The settings a label evaluation uses, as evaluation.json records them.
PARAMETERS = (
    "input", "label_col", "sample_sizes", "seeds", "first_seed", "format", "id_col", "vector_col", "strategy",
    "k", "test_share", "output", "overwrite",
)  # fmt: skip


def check_label_config(config: EvaluateConfig) -> None:
    """What the declared checks cannot see: a label run trains on a strategy's subset."""
    check_settings(config)
    if config.strategy == strategies.LOSS_AWARE:
        raise ValueError("--label-col cannot evaluate --strategy loss-aware (it needs a model's losses)")
    strategies.check_strategy(config.strategy, strategies.SELECT_STRATEGIES)


@dataclass
class LabelledTable:
    """The labelled rows split into a training part and a held-out test part, both persisted."""

    train: DataFrame
    test: DataFrame
    classes: list
    dim: int
    n_train: int
    n_test: int

    def release(self) -> None:
        self.train.unpersist()
        self.test.unpersist()


def split_table(frame: DataFrame, config: EvaluateConfig) -> LabelledTable:
    """Checks the id, embedding and label columns and splits the rows by a hash of the id."""
    id_col, vector_col, label_col = config.id_col, config.vector_col, config.label_col
    for column, flag in ((id_col, "--id-col"), (vector_col, "--vector-col"), (label_col, "--label-col")):
        if column not in frame.columns:
            raise ValueError(f"{flag}: the table has no column {column!r} (columns: {frame.columns})")
    dtype = frame.schema[label_col].dataType
    if not isinstance(dtype, (IntegralType, StringType, BooleanType)):
        raise ValueError(
            f"label column {label_col!r} has type {dtype.simpleString()}; expected integers or strings"
        )
    frame = frame.select(id_col, vector_col, label_col)
    classes = label_classes(frame, id_col, label_col)
    is_test = rowrandom.jvm_uniform(id_col, SPLIT_SEED, rowrandom.STREAM_EVAL_TEST) < config.test_share
    train = frame.where(~is_test).persist(StorageLevel.MEMORY_AND_DISK)
    test = frame.where(is_test).persist(StorageLevel.MEMORY_AND_DISK)
    n_train, n_test = train.count(), test.count()
    if n_test == 0 or n_train == 0:
        train.unpersist()
        test.unpersist()
        raise ValueError(f"--test-share {config.test_share} leaves {n_train} training and {n_test} test rows")
    return LabelledTable(train, test, classes, embedding_dim(train, vector_col), n_train, n_test)


def label_classes(frame: DataFrame, id_col: str, label_col: str) -> list:
    """The sorted distinct labels (at most MAX_CLASSES reach the driver); one-line errors otherwise."""
    nulls = frame.where(F.col(label_col).isNull())
    example = nulls.select(id_col).first()
    if example is not None:
        raise ValueError(
            f"label column {label_col!r} is null for {nulls.count()} rows (e.g. id {example[0]})"
        )
    found = [r[0] for r in frame.select(label_col).distinct().limit(MAX_CLASSES + 1).collect()]
    if len(found) > MAX_CLASSES:
        raise ValueError(f"label column {label_col!r} has more than {MAX_CLASSES:,} classes")
    if len(found) < 2:
        raise ValueError(f"label column {label_col!r} has a single class ({found[0]!r}): nothing to classify"
                         if found else "the table has no rows")  # fmt: skip
    return sorted(found)


def embedding_dim(frame: DataFrame, vector_col: str) -> int:
    """The length of the first non-empty embedding (rows of other lengths are skipped later)."""
    size = F.size(vector_values(frame, vector_col))
    row = frame.select(size.alias("d")).where(F.col("d") > 0).first()
    if row is None:
        raise ValueError(f"embedding column {vector_col!r} has no non-empty embedding")
    return int(row[0])


@dataclass(frozen=True)
class Subset:
    """The rows of one subset on the driver: features, class indices and the two training weights."""

    features: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    weights: np.ndarray


def driver_subset(subset: DataFrame, table: LabelledTable, config: EvaluateConfig) -> Subset:
    """The subset's B rows brought to the driver (rows with an invalid embedding left out)."""
    count = F.col(COUNT_COL) if COUNT_COL in subset.columns else F.lit(1)
    arrow = subset.select(
        vector_values(subset, config.vector_col).cast("array<double>").alias(_VECTOR),
        F.col(config.label_col),
        count.cast("double").alias(COUNT_COL),
        F.col(WEIGHT_COL).cast("double"),
    ).toArrow()
    features, valid = batch_matrix(arrow.column(_VECTOR), table.dim)
    index = {label: i for i, label in enumerate(table.classes)}
    labels = np.array([index[value] for value in arrow.column(config.label_col).to_pylist()], dtype=np.int64)
    counts, weights = (arrow.column(c).to_numpy() for c in (COUNT_COL, WEIGHT_COL))
    return Subset(features[valid], labels[valid], counts[valid], weights[valid])


def train(subset: Subset, n_classes: int, weighted: bool, config: EvaluateConfig) -> LinearClassifier:
    """The classifier of one subset: unweighted (each draw counts once) or with w / mean(w)."""
    weights = subset.weights / subset.weights.mean() if weighted else subset.counts
    return fit_logistic(subset.features, subset.labels, n_classes, weights, DEFAULT_L2, DEFAULT_ITERATIONS)


def heldout_accuracies(
    table: LabelledTable, classifiers: Sequence[LinearClassifier], config: EvaluateConfig
) -> tuple[np.ndarray, int]:
    """Each classifier's accuracy on the test part, and the test rows scored (valid embedding)."""
    n_classes = len(table.classes)
    per_pass = max(1, _MAX_SCORE_COLUMNS // n_classes)
    correct, scored = [], 0
    for start in range(0, len(classifiers), per_pass):
        counts, scored = _correct_counts(table, classifiers[start : start + per_pass], config)
        correct.append(counts)
    return np.concatenate(correct) / max(scored, 1), scored


def _correct_counts(
    table: LabelledTable, classifiers: Sequence[LinearClassifier], config: EvaluateConfig
) -> tuple[np.ndarray, int]:
    """One pass over the test rows: per classifier the number of correct predictions."""
    coef = np.hstack([c.coef for c in classifiers])
    intercept = np.concatenate([c.intercept for c in classifiers])
    models, n_classes, dim = len(classifiers), len(table.classes), table.dim
    classes, label_col = table.classes, config.label_col

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            features, valid = batch_matrix(batch.column(_VECTOR), dim)
            labels = batch.column(label_col)
            known = pc.index_in(labels, value_set=pa.array(classes).cast(labels.type))
            truth = known.fill_null(-1).to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(valid)
            hits = np.zeros(models, dtype=np.int64)
            for lo in range(0, rows.size, _ROWS_PER_PRODUCT):
                part = rows[lo : lo + _ROWS_PER_PRODUCT]
                scores = (features[part] @ coef + intercept).reshape(part.size, models, n_classes)
                hits += (scores.argmax(axis=2) == truth[part, None]).sum(axis=0)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.arange(models, dtype=np.int32)),
                    pa.array(hits),
                    pa.array(np.full(models, rows.size)),
                ],
                names=["model", "correct", "scored"],
            )

    test = table.test.select(
        vector_values(table.test, config.vector_col).cast("array<double>").alias(_VECTOR), F.col(label_col)
    )
    totals = (
        test.mapInArrow(predict, "model int, correct long, scored long")
        .groupBy("model")
        .agg(F.sum("correct").alias("correct"), F.sum("scored").alias("scored"))
        .collect()
    )
    counts = np.zeros(models, dtype=np.int64)
    scored = 0
    for row in totals:
        counts[row["model"]] = row["correct"]
        scored = int(row["scored"])
    return counts, scored


class StrategySubsets:
    """The subsets ``select`` would write on the training part, its k-means fits shared between
    budgets that fit the same k under the same seed (a fit does not depend on the sample size)."""

    def __init__(self, spark: SparkSession, table: LabelledTable, config: EvaluateConfig):
        self.spark, self.table, self.config = spark, table, config
        self.models: dict[tuple[int, int], SensitivitySamplerModel] = {}

    def draw(self, m: int, seed: int) -> tuple[DataFrame, strategies.AutoChoice]:
        """The subset of m rows under ``seed`` and the strategy and k it used (with auto's reason)."""
        plan = SelectConfig(
            input=self.config.input,
            output="evaluate",
            sample_size=m,
            strategy=self.config.strategy,
            k=self.config.k,
            seed=seed,
            id_col=self.config.id_col,
            vector_col=self.config.vector_col,
        )
        plan = select.resolve_strategy(plan)
        run = {"strategy_requested": self.config.strategy, "k_requested": self.config.k}
        plan, run = select.size_auto_plan(plan, self.table.train, run)
        key = (plan.k, seed)
        if key not in self.models:
            self.models[key] = select.sampler_for(plan).fit(self.table.train)
        model = self.models[key]
        choice, _ = select.choose_strategy(self.spark, plan, run, model)
        model.set(model.strategy, choice.strategy)
        return model.sample(m, seed=seed), choice

    def release(self) -> None:
        for model in self.models.values():
            model.summary.release()
        self.models.clear()


@dataclass
class BudgetResult:
    """One budget over the seeds: per seed the classifiers' test accuracies and the strategy used."""

    sample_size: int
    choices: list[strategies.AutoChoice]
    strategy: dict[str, list[float]]
    uniform: list[float]

    def summaries(self) -> list[dict]:
        used = Counter(f"{c.strategy} (k = {c.k})" for c in self.choices)
        reasons = sorted({c.reason for c in self.choices if c.reason})
        return [
            {
                "sample_size": self.sample_size,
                "training": training,
                "seeds": len(self.uniform),
                "strategy_used": dict(used),
                "auto_reasons": reasons,
                **compare(self.strategy[training], self.uniform),
                "strategy_accuracy": self.strategy[training],
                "uniform_accuracy": self.uniform,
            }
            for training in (UNWEIGHTED, WEIGHTED)
        ]


def compare(chosen: Sequence[float], uniform: Sequence[float]) -> dict:
    """Mean and median of both arms, and the paired difference: mean, standard error, wins, losses."""
    a, b = np.asarray(chosen), np.asarray(uniform)
    diff = a - b
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else None
    return {
        "strategy_mean": float(a.mean()),
        "strategy_median": float(np.median(a)),
        "uniform_mean": float(b.mean()),
        "uniform_median": float(np.median(b)),
        "difference_mean": float(diff.mean()),
        "difference_se": se,
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
    }


def seed_classifiers(
    subsets: StrategySubsets, table: LabelledTable, seed: int, config: EvaluateConfig
) -> tuple[list[LinearClassifier], list[strategies.AutoChoice]]:
    """For every budget under ``seed``: the strategy's subset trained unweighted and weighted, and
    the uniform subset's classifier (three per budget, in that order), and the strategies used."""
    n_classes = len(table.classes)
    classifiers, choices = [], []
    for m in config.sample_sizes:
        picked, choice = subsets.draw(m, seed)
        rows = driver_subset(picked, table, config)
        picked.unpersist()
        uniform = driver_subset(reference.uniform(table.train, config.id_col, m, seed), table, config)
        choices.append(choice)
        classifiers += [
            train(rows, n_classes, False, config),
            train(rows, n_classes, True, config),
            train(uniform, n_classes, False, config),
        ]
    return classifiers, choices


def evaluate_labels(spark: SparkSession, config: EvaluateConfig) -> dict:
    """The report of ``config``: every budget's comparison of the strategy with uniform."""
    check_label_config(config)
    config = config.resolved()
    table = split_table(read_input(spark, config.input, config.format, {}), config)
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    classifiers, choices = [], []
    try:
        too_large = [m for m in config.sample_sizes if m > table.n_train]
        if too_large:
            raise ValueError(f"sample size {too_large[0]} is larger than the {table.n_train} training rows")
        for seed in seeds:
            subsets = StrategySubsets(spark, table, config)
            try:
                found = seed_classifiers(subsets, table, seed, config)
            finally:
                subsets.release()  # one seed's fits at a time
            classifiers += found[0]
            choices.append(found[1])
        accuracy, scored = heldout_accuracies(table, classifiers, config)
    finally:
        table.release()
    # (seed, budget, arm): the arms are strategy unweighted, strategy weighted, uniform.
    accuracy = accuracy.reshape(len(seeds), len(config.sample_sizes), 3)
    rows = []
    for b, m in enumerate(config.sample_sizes):
        arms = accuracy[:, b, :]
        strategy = {UNWEIGHTED: arms[:, 0].tolist(), WEIGHTED: arms[:, 1].tolist()}
        used = [per_seed[b] for per_seed in choices]
        rows += BudgetResult(m, used, strategy, arms[:, 2].tolist()).summaries()
    return {
        "parameters": {**recorded(config, PARAMETERS), "l2": DEFAULT_L2, "iterations": DEFAULT_ITERATIONS},
        "n_train": table.n_train,
        "n_test": table.n_test,
        "test_rows_scored": scored,
        "classes": len(table.classes),
        "results": rows,
    }


def run_evaluate_labels(spark: SparkSession, config: EvaluateConfig) -> dict:
    """Evaluates; writes ``evaluation.json`` under ``config.output`` when given."""
    check_label_config(config)
    if config.output is None:
        return evaluate_labels(spark, config)
    inputs = {"--input": None if config.format == "table" else config.input}
    with publishing(spark, config.output, config.overwrite, inputs, manifest_name="evaluation.json") as job:
        job.manifest = evaluate_labels(spark, config)
    return job.manifest


def format_label_report(report: dict) -> str:
    """The comparison as an aligned text table, accuracies in percent, then what the strategy used."""
    lines = [
        f"{report['n_train']} training rows, {report['n_test']} held-out test rows, {report['classes']} classes",
        f"{'B':>7}  {'training':<10} {'strategy mean/median':>20} {'uniform mean/median':>20} "
        f"{'difference ± se':>18} {'wins/losses':>11}  strategy used",
    ]
    for r in report["results"]:
        chosen = f"{100 * r['strategy_mean']:.1f} / {100 * r['strategy_median']:.1f} %"
        uniform = f"{100 * r['uniform_mean']:.1f} / {100 * r['uniform_median']:.1f} %"
        se = "" if r["difference_se"] is None else f" ± {100 * r['difference_se']:.1f}"
        difference = f"{100 * r['difference_mean']:+.1f}{se} pts"
        wins = f"{r['wins']}/{r['losses']}"
        used = ", ".join(f"{name} x{n}" if len(r["strategy_used"]) > 1 else name
                         for name, n in r["strategy_used"].items())  # fmt: skip
        lines.append(
            f"{r['sample_size']:>7}  {r['training']:<10} {chosen:>20} {uniform:>20} {difference:>18} {wins:>11}  {used}"
        )
    reasons = {(r["sample_size"], reason) for r in report["results"] for reason in r["auto_reasons"]}
    lines += [f"B = {m}: {reason}" for m, reason in sorted(reasons)]
    return "\n".join(lines)
