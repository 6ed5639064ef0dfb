"""Experiment (c): Fashion-MNIST test accuracy of a classifier trained on the selected subset.

Budgets B from 100 to 3,000 of the 60,000 training images. The classifier is a logistic regression on
50 PCA components of the pixels (standardized), trained on the subset twice: with the selection's
weights normalised to mean 1 (``w / mean(w)``) and unweighted; test accuracy on the 10,000 test
images. Every seed re-seeds everything: the k-means fits, the draws, the pools and the warm-up sets.
Every selection runs through the project's Spark code:

- uniform: B distinct images.
- the strategies of ``select --strategy`` on k-means of the PCA pixels (driver engine, the default):
  sensitivity (k = 100, B draws; rows drawn twice are labelled once), stratified (k = 100),
  prototypes (k = 100; the nearest rows at these budgets), representatives (k = B), and auto (the
  strategy and k that ``strategies.resolve('auto', None, B)`` picks; the same runs as that strategy).
- prototypes, hardest (diagnostic): the farthest rows of each cluster instead, to check the rule
  that keeps the nearest at small budgets.
- loss-aware: a warm-up model on B/5 uniform images supplies the loss on k = B/5 representatives;
  then B - 2B/5 draws with the loss-aware sensitivity; the training set is warm-up + representatives
  + samples (warm-up and undrawn representatives carry n/B in the weighted variant).
- k-center greedy on the PCA pixels (farthest-first on a uniform pool of 10,000 images).
- margin and entropy: the warm-up model scores every image; the B - B/5 least sure are added
  (inference on all n images). These three have no weights.

    python benchmarks/experiment_classification.py --quick   # 2 budgets x 2 seeds, leaves docs/ alone
    python benchmarks/experiment_classification.py           # 4 budgets x 10 seeds, updates docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from experiment_common import (
    FIGURES,
    fashion_pca,
    markdown_table,
    replace_section,
    spark_session,
    standardizer,
    summarize,
    write_table,
)
from sklearn.linear_model import LogisticRegression

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core import baselines, lossaware, strategies

WARMUP_SHARE = 5  # warm-up and loss-aware representatives each take B / 5 of the budget
CLUSTERS = strategies.DEFAULT_K
WEIGHTED = " (weighted)"


class Harness:
    def __init__(self, spark, workdir: Path):
        self.spark = spark
        self.data = fashion_pca()
        self.scale = standardizer(self.data["x"])
        self.x, self.y = self.scale(self.data["x"]), self.data["y"]
        self.x_test, self.y_test = self.scale(self.data["x_test"]), self.data["y_test"]
        self.n = len(self.y)
        path = write_table(workdir / "fashion-pixels", {"id": np.arange(self.n), "pixels": self.data["x"]})
        self.frame = spark.read.parquet(path).persist()
        self.frame.count()
        self.workdir = workdir
        self.models: dict[int, object] = {}

    def accuracy(self, ids: np.ndarray, weights: np.ndarray | None = None) -> float:
        sample_weight = None if weights is None else weights / weights.mean()
        model = LogisticRegression(max_iter=1000).fit(self.x[ids], self.y[ids], sample_weight=sample_weight)
        return float((model.predict(self.x_test) == self.y_test).mean())

    def fit(self, k: int, seed: int):
        """k-means with this seed (fit sample, init); cached for the seed, released by :meth:`release`."""
        if k not in self.models:
            self.models[k] = SensitivitySampler(
                idCol="id", featuresCol="pixels", k=k, seed=seed, pointsPerCenter=50, initMode="random"
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
        path = write_table(
            self.workdir / f"probs-{tag}", {"id": np.arange(self.n), "probs": model.predict_proba(self.x)}
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


def select_and_score(h: Harness, budget: int, seed: int) -> dict[str, float]:
    out: dict[str, float] = {}
    out["uniform"] = h.accuracy(h.ids(baselines.uniform(h.frame, "id", budget, seed)))

    model = h.fit(CLUSTERS, seed)
    for strategy in (strategies.SENSITIVITY, strategies.STRATIFIED, strategies.PROTOTYPES):
        both(out, h, strategy, *picked(model, strategy, budget, seed))
    hardest = strategies.prototypes(
        model.summary.assignments, model.clusterStats, budget, seed, "id", hardest=True
    ).frame.toPandas()
    both(out, h, "prototypes, hardest (diagnostic)", hardest.id.to_numpy(), hardest.weight.to_numpy())

    reps_model = h.fit(budget, seed) if budget != CLUSTERS else model
    both(out, h, strategies.REPRESENTATIVES, *picked(reps_model, strategies.REPRESENTATIVES, budget, seed))

    out["k-center greedy"] = h.accuracy(
        h.ids(baselines.k_center_greedy(h.frame, "id", "pixels", budget, seed, pool_size=10_000))
    )

    w = budget // WARMUP_SHARE
    warm_frame = baselines.uniform(h.frame, "id", w, seed + 1000)
    warm = h.ids(warm_frame)
    warm_model = h.warm_model(warm)
    probs = h.probabilities_frame(warm_model, f"{budget}-{seed}")
    for name, select in (("margin", baselines.margin), ("entropy", baselines.entropy)):
        chosen = h.ids(select(probs, "id", "probs", budget - w, exclude=warm_frame))
        out[name] = h.accuracy(np.concatenate([warm, chosen]))

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


def with_auto(results: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, list[float]]]:
    """Adds auto: at each budget, the runs of the strategy ``strategies.resolve`` picks (k = 100 for
    stratified, as in those runs)."""
    out = dict(results)
    for suffix in ("", WEIGHTED):
        auto: dict[str, list[float]] = {}
        for budget in results["uniform"]:
            strategy, _ = strategies.resolve(strategies.AUTO, None, int(budget))
            auto[budget] = results[strategy + suffix][budget]
        out["auto" + suffix] = auto
    return out


def plot(report: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), sharey=True)
    stats = report["summary"]
    weighted_names = {m for m in stats if m.endswith(WEIGHTED)}
    has_weighted = {m[: -len(WEIGHTED)] for m in weighted_names}
    for ax, weighted in zip(axes, (False, True), strict=True):
        for method, points in stats.items():
            shown = (
                method in weighted_names or method not in has_weighted
                if weighted
                else method not in weighted_names
            )
            if not shown:
                continue
            budgets = sorted(int(b) for b in points)
            means = [points[str(b)]["mean"] * 100 for b in budgets]
            errors = [points[str(b)]["se"] * 100 for b in budgets]
            style = "k--" if method == "uniform" else "-"
            ax.errorbar(budgets, means, yerr=errors, fmt=style, marker="o", capsize=3, label=method)
        ax.set(xscale="log", xlabel="labelled training images (budget B)", ylabel="test accuracy (%)")
        ax.set_title("weighted (w / mean(w))" if weighted else "unweighted")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Fashion-MNIST, logistic regression on 50 PCA components, {seeds_text(report)}")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def seeds_text(report: dict) -> str:
    """'10 seeds', or the seeds of each budget when they differ."""
    runs = {int(b): len(v) for b, v in report["results"]["uniform"].items()}
    if len(set(runs.values())) == 1:
        return f"{report['seeds']} seeds"
    return "seeds 0, 1, ... (" + ", ".join(f"B={b}: {r}" for b, r in sorted(runs.items())) + ")"


def section(report: dict) -> str:
    stats = report["summary"]
    budgets = sorted({int(b) for points in stats.values() for b in points})
    header = ["method", *[f"B={b}" for b in budgets]]
    means, medians = [], []
    for method, points in stats.items():
        cells, middle = [], []
        for b in budgets:
            p = points[str(b)]
            diff = (
                ""
                if method == "uniform"
                else f" ({p['diff'] * 100:+.1f} ± {p['diff_se'] * 100:.1f}{p['flag']})"
            )
            cells.append(f"{p['mean'] * 100:.1f} ± {p['se'] * 100:.1f}{diff}")
            middle.append(f"{p['median'] * 100:.1f}")
        means.append([method, *cells])
        medians.append([method, *middle])
    auto = ", ".join(f"B={b}: {strategies.resolve(strategies.AUTO, None, b)[0]}" for b in budgets)
    return (
        f"Test accuracy (%) over {seeds_text(report)} (each seed re-fits k-means): mean ± standard "
        "error; in brackets the mean paired difference to uniform (same seed) ± its standard error, "
        "marked `~` where it is within two standard errors of zero (inside the noise). "
        f"auto picks {auto}. Run time {report['seconds'] / 60:.0f} min.\n\n"
        "![classification](figures/experiment_classification.png)\n\n"
        f"{markdown_table(header, means)}\n\nMedians (%):\n\n{markdown_table(header, medians)}"
    )


def run(
    workdir: Path, budgets: list[int], seeds: int, max_minutes: float | None, resume: bool
) -> tuple[dict, float]:
    """Every budget for seeds 0, 1, ...; saves the scores after each seed (all budgets done). With
    ``resume``, starts after the seeds saved in WORKDIR/classification-runs.json."""
    started = time.perf_counter()
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    earlier, first = 0.0, 0
    runs_file = workdir / "classification-runs.json"
    if resume and runs_file.exists():
        saved = json.loads(runs_file.read_text())
        for method, points in saved["scores"].items():
            for budget, values in points.items():
                scores[method][budget] = values
        earlier, first = saved["seconds"], len(next(iter(saved["scores"]["uniform"].values())))
    spark = spark_session()
    harness = Harness(spark, workdir)
    for seed in range(first, seeds):
        if max_minutes is not None and time.perf_counter() - started > 60 * max_minutes:
            print(f"stopping after {seed} seeds (--max-minutes {max_minutes})", flush=True)
            break
        for budget in budgets:
            tick = time.perf_counter()
            for method, accuracy in select_and_score(harness, budget, seed).items():
                scores[method][str(budget)].append(accuracy)
            print(f"seed={seed} B={budget}: {time.perf_counter() - tick:.0f} s", flush=True)
        harness.release()
        saved = {"scores": scores, "seconds": earlier + time.perf_counter() - started}
        runs_file.write_text(json.dumps(saved, indent=1))
    spark.stop()
    return {
        method: dict(points) for method, points in scores.items()
    }, earlier + time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 budgets, 2 seeds; leaves docs/ alone")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default: 10, or 2 with --quick)")
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=None, help="budgets (default: 100 300 1000 3000)"
    )
    parser.add_argument(
        "--workdir", default="runs/experiments", help="tables and raw results (default: runs/experiments)"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new seed after this long; report the seeds done",
    )
    parser.add_argument(
        "--from-runs",
        action="store_true",
        help="run nothing: summarize the seeds saved in WORKDIR/classification-runs.json",
    )
    parser.add_argument(
        "--merge-runs",
        nargs="*",
        default=[],
        help="with --from-runs: also the classification-runs.json of runs of other budgets",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue after the seeds saved in WORKDIR/classification-runs.json",
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    runs_file = workdir / "classification-runs.json"
    if args.from_runs:
        scores, seconds = {}, 0.0
        for path in [runs_file, *args.merge_runs]:  # other budgets, run apart
            saved = json.loads(Path(path).read_text())
            for method, points in saved["scores"].items():
                scores.setdefault(method, {}).update(points)
            seconds += saved["seconds"]
    else:
        budgets = args.budgets or ([300, 1000] if args.quick else [100, 300, 1000, 3000])
        scores, seconds = run(
            workdir, budgets, args.seeds or (2 if args.quick else 10), args.max_minutes, args.resume
        )
    seeds = min(len(v) for v in scores["uniform"].values())
    results = with_auto(scores)
    summary = {method: summarize(points, results["uniform"]) for method, points in results.items()}
    for method, points in summary.items():
        print(method, {b: f"{p['mean'] * 100:.2f}{p['flag']}" for b, p in points.items()}, flush=True)
    report = {"seeds": seeds, "results": results, "summary": summary, "seconds": round(seconds)}
    (workdir / "classification.json").write_text(json.dumps(report, indent=1))
    figure = (
        workdir / "experiment_classification.png" if args.quick else FIGURES / "experiment_classification.png"
    )
    plot(report, figure)
    if not args.quick:
        replace_section("experiment-c", section(report))
    print(f"done in {report['seconds']} s; figure {figure}")


if __name__ == "__main__":
    main()
