"""Experiment (c): Fashion-MNIST test accuracy of a classifier trained on the selected subset.

Budgets of about 0.5 % to 10 % of the 60,000 training images. The classifier is a logistic
regression on 50 PCA components of the pixels (standardized), trained with and without the
selection's weights; test accuracy on the 10,000 test images; mean and standard deviation over seeds.
Every selection runs through the project's Spark code:

- uniform: B distinct images.
- sensitivity, model-free: B draws with the model-free sensitivity (k = 100 clusters of the PCA
  pixels); rows drawn twice are labelled once, so it uses at most B labels.
- representatives + model-free draws: the image nearest each of k = min(B, 1,200) k-means centers
  (the loss-aware method's representatives), and B - k model-free draws for the rest of the budget
  (the paper's training set "k representatives + m samples" with k as large as the budget allows).
- k-center greedy on the PCA pixels (farthest-first on a uniform pool of 10,000 images).
- margin and entropy: a warm-up model on B/5 uniform images scores every image; the B - B/5 least
  sure are added (inference on all n images).
- sensitivity, loss-aware: the same warm-up model supplies the loss on k = B/5 representatives;
  then B - 2B/5 draws with the loss-aware sensitivity; the training set is warm-up + representatives
  + samples.

In the weighted variants a drawn row carries its sampling weight (count / (m q_i)); rows chosen
deterministically (warm-up, representatives) carry n/B, except in "representatives + model-free
draws", where each representative carries its cluster's size. Selectors without weights train unweighted.
The k-means fits use seed 0 for all seeds (the seeds vary the draws, pools and warm-up sets).

    python benchmarks/experiment_classification.py --quick   # a few minutes on 2 cores
    python benchmarks/experiment_classification.py           # full: 5 budgets x 5 seeds, updates docs/RESULTS.md
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
    write_table,
)
from sklearn.linear_model import LogisticRegression

from spark_sensitivity import SensitivitySampler, baselines, lossaware

WARMUP_SHARE = 5  # warm-up and representatives each take B / 5 of the budget
MAX_REPRESENTATIVES = 1_200  # k-means with k = B beyond this is too slow for local[2] here


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

    def fit(self, k: int):
        if k not in self.models:
            init = "k-means||" if k <= 300 else "random"
            self.models[k] = SensitivitySampler(
                idCol="id", featuresCol="pixels", k=k, seed=0, pointsPerCenter=50, initMode=init
            ).fit(self.frame)
        return self.models[k]

    def ids(self, frame, column: str = "id") -> np.ndarray:
        return np.array([r[column] for r in frame.select(column).collect()], dtype=np.int64)

    def warm_model(self, warm: np.ndarray) -> LogisticRegression:
        return LogisticRegression(max_iter=1000).fit(self.x[warm], self.y[warm])

    def probabilities_frame(self, model: LogisticRegression, tag: str):
        path = write_table(
            self.workdir / f"probs-{tag}", {"id": np.arange(self.n), "probs": model.predict_proba(self.x)}
        )
        return self.spark.read.parquet(path)


def select_and_score(h: Harness, budget: int, seed: int) -> dict[str, float]:
    out: dict[str, float] = {}
    uniform = h.ids(baselines.uniform(h.frame, "id", budget, seed))
    out["uniform"] = h.accuracy(uniform)

    model = h.fit(100)
    drawn = model.sample(budget, seed=seed).select("id", "weight").toPandas()
    out["sensitivity, model-free"] = h.accuracy(drawn.id.to_numpy())
    out["sensitivity, model-free (weighted)"] = h.accuracy(drawn.id.to_numpy(), drawn.weight.to_numpy())

    k = min(budget, MAX_REPRESENTATIVES)
    reps_model = h.fit(k)
    reps = lossaware.model_representatives(reps_model).toPandas()
    ids = reps.id.to_numpy()
    weights = reps_model.clusterStats.sizes[reps.cluster_id.to_numpy()].astype(np.float64)
    if budget > k:  # the rest of the budget: model-free draws, labelled once each
        extra = model.sample(budget - k, seed=seed).select("id", "weight").toPandas()
        keep = ~np.isin(extra.id.to_numpy(), ids)
        ids = np.concatenate([ids, extra.id.to_numpy()[keep]])
        weights = np.concatenate([weights, extra.weight.to_numpy()[keep]])
    out["representatives + model-free draws"] = h.accuracy(ids)
    out["representatives + model-free draws (weighted)"] = h.accuracy(ids, weights)

    out["k-center greedy"] = h.accuracy(
        h.ids(baselines.k_center_greedy(h.frame, "id", "pixels", budget, seed, pool_size=10_000))
    )

    w = budget // WARMUP_SHARE
    warm_frame = baselines.uniform(h.frame, "id", w, seed + 1000)
    warm = h.ids(warm_frame)
    warm_model = h.warm_model(warm)
    probs = h.probabilities_frame(warm_model, f"{budget}-{seed}")
    for name, select in (("margin", baselines.margin), ("entropy", baselines.entropy)):
        picked = h.ids(select(probs, "id", "probs", budget - w, exclude=warm_frame))
        out[name] = h.accuracy(np.concatenate([warm, picked]))

    k = budget // WARMUP_SHARE
    la_model = h.fit(k)
    reps = lossaware.model_representatives(la_model).select("id").toPandas().id.to_numpy()
    log_p = warm_model.predict_log_proba(h.x[reps])
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
    out["sensitivity, loss-aware"] = h.accuracy(unique)
    out["sensitivity, loss-aware (weighted)"] = h.accuracy(unique, weights[first])
    return out


def plot(report: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for method, points in report["results"].items():
        budgets = sorted(int(b) for b in points)
        means = [points[str(b)]["mean"] * 100 for b in budgets]
        stds = [points[str(b)]["std"] * 100 for b in budgets]
        style = "k--" if method == "uniform" else "-"
        ax.errorbar(budgets, means, yerr=stds, fmt=style, marker="o", capsize=3, label=method)
    ax.set(xscale="log", xlabel="labelled training images (budget B)", ylabel="test accuracy (%)")
    ax.set_title(f"Fashion-MNIST, logistic regression on 50 PCA components, {report['seeds']} seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def section(report: dict) -> str:
    budgets = sorted({int(b) for points in report["results"].values() for b in points})
    uniform = report["results"]["uniform"]
    header = ["method", *[f"B={b}" for b in budgets]]
    body = []
    for method, points in report["results"].items():
        cells = []
        for b in budgets:
            p = points.get(str(b))
            if p is None:
                cells.append("")
                continue
            delta = (p["mean"] - uniform[str(b)]["mean"]) * 100
            extra = "" if method == "uniform" else f" ({delta:+.1f})"
            cells.append(f"{p['mean'] * 100:.1f} ± {p['std'] * 100:.1f}{extra}")
        body.append([method, *cells])
    return (
        f"Test accuracy (%), mean ± standard deviation over {report['seeds']} seeds; in brackets the "
        f"difference to uniform in points.\n\n![classification](figures/experiment_classification.png)\n\n"
        f"{markdown_table(header, body)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 budgets, 2 seeds; leaves docs/ alone")
    parser.add_argument(
        "--workdir", default="runs/experiments", help="tables and raw results (default: runs/experiments)"
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    budgets = [300, 1200] if args.quick else [300, 600, 1200, 3000, 6000]
    seeds = list(range(2 if args.quick else 5))
    started = time.perf_counter()
    spark = spark_session()
    harness = Harness(spark, workdir)
    scores: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for budget in budgets:
        for seed in seeds:
            tick = time.perf_counter()
            for method, accuracy in select_and_score(harness, budget, seed).items():
                scores[method][budget].append(accuracy)
            print(f"B={budget} seed={seed}: {time.perf_counter() - tick:.0f} s", flush=True)
        for method, points in scores.items():
            if budget in points:
                print(
                    f"  {method:52s} {np.mean(points[budget]) * 100:.2f} ± {np.std(points[budget]) * 100:.2f}",
                    flush=True,
                )
    for model in harness.models.values():
        model.summary.release()
    spark.stop()
    results = {
        method: {
            str(b): {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v} for b, v in points.items()
        }
        for method, points in scores.items()
    }
    report = {"seeds": len(seeds), "results": results, "seconds": round(time.perf_counter() - started)}
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
