"""Experiment (c), the selection methods: the data and its representation, and what each method
picks and what a classifier trained on it scores.

Part of docs/RESULTS.md's experiment (c) (sections "(c) Classification accuracy vs budget", "(c) with
CNN features", "(c) after deduplication"); not run on its own: run
``python -m benchmarks.experiments.classification`` (its docstring describes every method).
:class:`Harness` holds Fashion-MNIST in one representation (PCA-50 of the pixels, or of the CNN
features of ``image_features.fashion_cnn``) as a persisted Spark frame, the pool selection draws from
(all rows, or the rows the dedup step kept), the k-means fits of the current seed and the classifier;
:func:`select_and_score` runs every method of ``--methods`` at one budget and seed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.common import fashion_pca, standardizer, write_table
from benchmarks.experiments.image_features import fashion_cnn
from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core.baselines import selectors
from spark_sensitivity.core.sampling import lossaware, strategies
from spark_sensitivity.core.sampling import uniform as reference
from spark_sensitivity.settings import DedupConfig
from spark_sensitivity.workflows.dedup import deduplicate

WARMUP_SHARE = 5  # warm-up and loss-aware representatives each take B / 5 of the budget
CLUSTERS = strategies.DEFAULT_K
WEIGHTED = " (weighted)"
REPRESENTATIONS = {"pixels": fashion_pca, "cnn": fashion_cnn}  # what selection and classifier see
REPRESENTATION_TEXT = {
    "pixels": "50 PCA components of the pixels",
    "cnn": "50 PCA components of the standardized EfficientNet-Lite0 features",
}
# --methods: groups of methods besides uniform (which always runs)
METHOD_GROUPS = ("strategies", "hardest", "k-center", "margin", "loss-aware")
DEDUP = " | dedup"  # suffix of a method's name in the dedup arm


class Harness:
    def __init__(self, spark, workdir: Path, representation: str = "pixels"):
        self.spark = spark
        self.data = REPRESENTATIONS[representation]()
        self.col = representation
        self.scale = standardizer(self.data["x"])
        self.x, self.y = self.scale(self.data["x"]), self.data["y"]
        self.x_test, self.y_test = self.scale(self.data["x_test"]), self.data["y_test"]
        self.n = len(self.y)
        path = write_table(
            workdir / f"fashion-{representation}", {"id": np.arange(self.n), self.col: self.data["x"]}
        )
        self.everything = self.frame = spark.read.parquet(path).persist()
        self.frame.count()
        self.pool: np.ndarray | None = None  # the ids selection draws from (None: every row)
        self.workdir = workdir
        self.models: dict[int, object] = {}

    def use_pool(self, ids: np.ndarray | None) -> None:
        """Selection draws from these rows only from now on (None: all rows again)."""
        self.release()
        if self.frame is not self.everything:
            self.frame.unpersist()
        self.pool = None if ids is None else np.sort(ids)
        if ids is None:
            self.frame, self.n = self.everything, len(self.y)
            return
        keep = self.spark.createDataFrame([(int(i),) for i in self.pool], "id long")
        self.frame = self.everything.join(keep, on="id", how="inner").persist()
        self.n = self.frame.count()

    def dedup(self, eps: float, seed: int, keep: str = "farthest") -> tuple[np.ndarray, dict]:
        """The ids kept by the project's dedup step (k = 100, this seed) and its facts."""
        target = self.workdir / f"duplicates-{seed}"
        shutil.rmtree(target, ignore_errors=True)
        config = DedupConfig(
            input="fashion", output=str(target), dedup_eps=eps, k=CLUSTERS, id_col="id",
            vector_col=self.col, seed=seed, dedup_keep=keep,
        )  # fmt: skip
        kept, info = deduplicate(self.everything, config, str(target))
        ids = self.ids(kept)
        info = {key: info[key] for key in ("removed_rows", "kept_rows", "largest_cluster", "dedup_seconds")}
        removed = self.spark.read.parquet(str(target)).select("id", "duplicate_of").toPandas()
        info["removed_same_label"] = float(
            (self.y[removed.id.to_numpy()] == self.y[removed.duplicate_of.to_numpy()]).mean()
        )
        return ids, info

    def accuracy(self, ids: np.ndarray, weights: np.ndarray | None = None) -> float:
        sample_weight = None if weights is None else weights / weights.mean()
        model = LogisticRegression(max_iter=1000).fit(self.x[ids], self.y[ids], sample_weight=sample_weight)
        return float((model.predict(self.x_test) == self.y_test).mean())

    def fit(self, k: int, seed: int):
        """k-means with this seed (fit sample, init); cached for the seed, released by :meth:`release`."""
        if k not in self.models:
            self.models[k] = SensitivitySampler(
                idCol="id", featuresCol=self.col, k=k, seed=seed, pointsPerCenter=50, initMode="random"
            ).fit(self.frame)
        return self.models[k]

    def release(self) -> None:
        for model in self.models.values():
            model.summary.release()
        self.models = {}

    def ids(self, frame, column: str = "id") -> np.ndarray:
        return np.array([r[column] for r in frame.select(column).collect()], dtype=np.int64)

    def warm_model(self, warm: np.ndarray) -> LogisticRegression:
        return LogisticRegression(max_iter=1000).fit(self.x[warm], self.y[warm])

    def probabilities_frame(self, model: LogisticRegression, tag: str):
        ids = np.arange(len(self.y)) if self.pool is None else self.pool
        path = write_table(
            self.workdir / f"probs-{tag}", {"id": ids, "probs": model.predict_proba(self.x[ids])}
        )
        return self.spark.read.parquet(path)


def picked(model, strategy: str, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids and weights the model's ``strategy`` picks (a row drawn twice is labelled once)."""
    model.set(model.strategy, strategy)
    rows = model.sample(budget, seed=seed).select("id", "weight").toPandas()
    return rows.id.to_numpy(), rows.weight.to_numpy()


def both(out: dict[str, float], h: Harness, name: str, ids: np.ndarray, weights: np.ndarray) -> None:
    out[name] = h.accuracy(ids)
    out[name + WEIGHTED] = h.accuracy(ids, weights)


def select_and_score(
    h: Harness, budget: int, seed: int, methods: tuple[str, ...] = METHOD_GROUPS
) -> dict[str, float]:
    out: dict[str, float] = {}
    out["uniform"] = h.accuracy(h.ids(reference.uniform(h.frame, "id", budget, seed)))

    if "strategies" in methods or "hardest" in methods:
        model = h.fit(CLUSTERS, seed)
    if "strategies" in methods:
        for strategy in (strategies.SENSITIVITY, strategies.STRATIFIED, strategies.PROTOTYPES):
            both(out, h, strategy, *picked(model, strategy, budget, seed))
    if "hardest" in methods:
        hardest = strategies.prototypes(
            model.summary.assignments, model.clusterStats, budget, seed, "id", hardest=True
        ).frame.toPandas()
        both(out, h, "prototypes, hardest (diagnostic)", hardest.id.to_numpy(), hardest.weight.to_numpy())
    if "strategies" in methods:
        reps_model = h.fit(budget, seed) if budget != CLUSTERS else model
        picks = picked(reps_model, strategies.REPRESENTATIVES, budget, seed)
        both(out, h, strategies.REPRESENTATIVES, *picks)

    if "k-center" in methods:
        out["k-center greedy"] = h.accuracy(
            h.ids(selectors.k_center_greedy(h.frame, "id", h.col, budget, seed, pool_size=10_000))
        )

    if "margin" not in methods and "loss-aware" not in methods:
        return out
    w = budget // WARMUP_SHARE
    warm_frame = reference.uniform(h.frame, "id", w, seed + 1000)
    warm = h.ids(warm_frame)
    warm_model = h.warm_model(warm)
    if "margin" in methods:
        probs = h.probabilities_frame(warm_model, f"{budget}-{seed}")
        for name, select in (("margin", selectors.margin), ("entropy", selectors.entropy)):
            chosen = h.ids(select(probs, "id", "probs", budget - w, exclude=warm_frame))
            out[name] = h.accuracy(np.concatenate([warm, chosen]))
    if "loss-aware" not in methods:
        return out

    la_model = h.fit(w, seed)
    reps = lossaware.model_representatives(la_model).select("id").toPandas().id.to_numpy()
    log_p = np.full((len(reps), 10), np.log(1e-12))  # a class the small warm-up set lacks: probability ~0
    log_p[:, warm_model.classes_] = warm_model.predict_log_proba(h.x[reps])
    rep_losses = h.spark.createDataFrame(
        [(int(i), float(-log_p[j, h.y[i]])) for j, i in enumerate(reps)], "id long, loss double"
    )
    selection = lossaware.prepare(la_model, rep_losses)
    chosen = (
        selection.sample(budget - w - len(reps), seed=seed).select("id", "count", "weight", "role").toPandas()
    )
    selection.release()
    rows = np.concatenate([warm, chosen.id.to_numpy()])
    weights = np.concatenate(
        [np.full(len(warm), h.n / budget), np.where(chosen["count"] > 0, chosen.weight, h.n / budget)]
    )
    unique, first = np.unique(rows, return_index=True)
    both(out, h, strategies.LOSS_AWARE, unique, weights[first])
    return out
