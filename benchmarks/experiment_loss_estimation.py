"""Experiment (a): estimating a classifier's average loss on Fashion-MNIST from a weighted sample.

The classifier is a logistic regression on 50 PCA components of the pixels, trained on a uniform
warm-up of 1,000 training images; the loss is its per-example cross-entropy on all 60,000 training
images. For each sample size and each of many seeds every scheme selects rows through the project's
Spark code (``spark_sensitivity.evaluate``) and estimates the mean loss; we report the RMSE of the
relative error next to uniform sampling given the same number of loss evaluations (the loss-aware
scheme also evaluates the loss on its k representatives).

Embeddings: the PCA pixels (model-free), and the classifier's centred log-probabilities (uses the
model's outputs on every row: inference on all n rows, no labels).

    python benchmarks/experiment_loss_estimation.py --quick   # about 5 minutes on 2 cores
    python benchmarks/experiment_loss_estimation.py           # full: 100 seeds, updates docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import time
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

from spark_sensitivity import SensitivitySampler, evaluate

WARMUP = 1_000


def classifier_losses(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-example cross-entropy on the training set, and centred log-probabilities."""
    rng = np.random.default_rng(0)
    warm = rng.choice(len(data["y"]), size=WARMUP, replace=False)
    scale = standardizer(data["x"][warm])
    model = LogisticRegression(max_iter=2000).fit(scale(data["x"][warm]), data["y"][warm])
    log_p = model.predict_log_proba(scale(data["x"]))
    losses = -log_p[np.arange(len(data["y"])), data["y"]]
    return losses, log_p - log_p.mean(axis=1, keepdims=True)


def cluster_analysis(model, losses: np.ndarray, m: int) -> dict[str, float]:
    """How much of the loss the clusters explain (R^2), and the best any cluster allocation could do:
    Neyman allocation with the true within-cluster spreads, relative to uniform, at m draws."""
    assigned = model.summary.assignments.select("id", "cluster_id").toPandas()
    cluster = np.empty(len(losses), dtype=np.int64)
    cluster[assigned.id.to_numpy()] = assigned.cluster_id.to_numpy()
    sizes = np.bincount(cluster)
    means = np.bincount(cluster, weights=losses) / np.maximum(sizes, 1)
    within = np.bincount(cluster, weights=(losses - means[cluster]) ** 2) / np.maximum(sizes, 1)
    r2 = 1 - (sizes * within).sum() / len(losses) / losses.var()
    neyman = (sizes * np.sqrt(within)).sum() / len(losses) / np.sqrt(m)
    return {"r2": float(r2), "neyman_vs_uniform": float(neyman / (losses.std() / np.sqrt(m)))}


def run(quick: bool, workdir: Path, seeds: int) -> dict:
    spark = spark_session()
    data = fashion_pca()
    losses, logits = classifier_losses(data)
    n = len(losses)
    path = write_table(
        workdir / "fashion-losses",
        {"id": np.arange(n), "pixels": data["x"], "outputs": logits, "loss": losses},
    )
    frame = spark.read.parquet(path)
    sizes = [200, 1000] if quick else [100, 200, 500, 1000, 2000]
    seed_list = list(range(seeds))
    k = 100
    rows, analysis = [], {}
    for embedding in ("pixels", "outputs"):
        table = evaluate.LossTable(frame, "id", embedding, "loss")
        cache: dict[int, float] = {}
        started = time.perf_counter()
        model = SensitivitySampler(idCol="id", featuresCol=embedding, k=k, seed=0, pointsPerCenter=100).fit(
            table.frame
        )
        analysis[f"{embedding}, k={k}"] = cluster_analysis(model, losses, 1000)
        runs = [("model-free", evaluate.SchemeSettings(k=k), "model-free")]
        runs += [("loss-aware", evaluate.SchemeSettings(k=k), "loss-aware")]
        runs += [
            ("loss-aware", evaluate.SchemeSettings(k=k, uniform_share=0.0), "loss-aware, plain (no floor)")
        ]
        if embedding == "pixels":
            runs += [("stratified", evaluate.SchemeSettings(k=k), "stratified by cluster")]
            runs += [("uniform", evaluate.SchemeSettings(k=k), "uniform")]
        for scheme, settings, label in runs:
            for result in evaluate.evaluate(table, scheme, sizes, seed_list, settings, model, cache):
                summary = result.summary()
                name = label if result.estimator == "weighted" else f"{label} + difference estimator"
                if "plain" in label and result.estimator == "difference":
                    continue
                rows.append({"method": name, "embedding": embedding, **summary})
                print(f"{embedding:8s} {name:48s} m={result.sample_size:5d} evals={result.loss_evaluations:5d} "
                      f"rmse={result.rmse:.4f} uniform={result.uniform_rmse:.4f} ratio={summary['rmse_vs_uniform']:.2f}",
                      flush=True)  # fmt: skip
        model.summary.release()
        if embedding == "pixels":  # the choice of k: finer strata (needs m >= k)
            fine = SensitivitySampler(
                idCol="id", featuresCol=embedding, k=500, seed=0, pointsPerCenter=100
            ).fit(table.frame)
            analysis["pixels, k=500"] = cluster_analysis(fine, losses, 1000)
            settings = evaluate.SchemeSettings(k=500)
            large = [m for m in sizes if m >= 500]
            for result in evaluate.evaluate(table, "stratified", large, seed_list, settings, fine, cache):
                rows.append(
                    {"method": "stratified by cluster, k=500", "embedding": embedding, **result.summary()}
                )
                print(f"pixels stratified k=500 m={result.sample_size} rmse={result.rmse:.4f}", flush=True)
            fine.summary.release()
        table.frame.unpersist()
        print(f"{embedding}: {time.perf_counter() - started:.0f} s", flush=True)
    spark.stop()
    return {
        "n": n,
        "true_mean": float(losses.mean()),
        "loss_cv": float(losses.std() / losses.mean()),
        "k": k,
        "seeds": seeds,
        "rows": rows,
        "analysis": analysis,
        "uniform_exact": {
            m: uniform_rmse_formula(losses, m) for m in sorted({r["loss_evaluations"] for r in rows})
        },
    }


def uniform_rmse_formula(losses: np.ndarray, m: int) -> float:
    """The exact RMSE of the relative error of uniform sampling of m of n rows without replacement."""
    n = len(losses)
    return float(np.sqrt((1 - m / n) * losses.var(ddof=1) / m) / losses.mean())


def plot(report: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, embedding in zip(axes, ("pixels", "outputs"), strict=True):
        rows = [r for r in report["rows"] if r["embedding"] == embedding]
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            ax.plot(
                [r["loss_evaluations"] for r in mine], [r["rmse"] for r in mine], marker="o", label=method
            )
        uniform = sorted({(r["loss_evaluations"], r["uniform_rmse"]) for r in rows})
        ax.plot(*zip(*uniform, strict=True), "k--", label="uniform (same loss evaluations)")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="loss evaluations (m, + k for loss-aware)",
            title=f"embedding: {embedding}",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("RMSE of the relative error of the mean loss")
    fig.suptitle(f"Fashion-MNIST, mean cross-entropy estimation, {report['seeds']} seeds, k={report['k']}")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def section(report: dict) -> str:
    header = [
        "embedding",
        "method",
        "m",
        "loss evaluations",
        "RMSE",
        "uniform RMSE",
        "ratio",
        "mean rel. error",
    ]
    body = [
        [r["embedding"], r["method"], r["sample_size"], r["loss_evaluations"], f"{r['rmse']:.4f}",
         f"{r['uniform_rmse']:.4f}", f"{r['rmse_vs_uniform']:.2f}", f"{r['mean_relative_error']:+.4f}"]
        for r in report["rows"]
    ]  # fmt: skip
    notes = "\n".join(
        f"- clusters on {e}: R^2 of the loss explained by the cluster = {a['r2']:.3f}; "
        f"best possible cluster allocation (Neyman, true spreads) = {a['neyman_vs_uniform']:.2f}x uniform's RMSE"
        for e, a in report["analysis"].items()
    )
    exact = ", ".join(f"m={m}: {v:.4f}" for m, v in report["uniform_exact"].items())
    return (
        f"n = {report['n']}, true mean loss = {report['true_mean']:.4f}, coefficient of variation of the "
        f"loss = {report['loss_cv']:.2f}, {report['seeds']} seeds per point.\n\n"
        f"![loss estimation](figures/experiment_loss_estimation.png)\n\n{markdown_table(header, body)}\n\n"
        f"Uniform's RMSE from the exact formula sqrt((1 - m/n) var / m) / mean (no seed noise): {exact}.\n\n"
        f"How far clustering can go on this loss (k=100 unless said; at m=1000):\n\n{notes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 sample sizes, 20 seeds; leaves docs/ alone")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per point (default: 100, quick 20)")
    parser.add_argument(
        "--workdir", default="runs/experiments", help="tables and raw results (default: runs/experiments)"
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    seeds = args.seeds or (20 if args.quick else 100)
    started = time.perf_counter()
    report = run(args.quick, workdir, seeds)
    report["seconds"] = round(time.perf_counter() - started)
    (workdir / "loss_estimation.json").write_text(json.dumps(report, indent=1))
    figure = (
        workdir / "experiment_loss_estimation.png"
        if args.quick
        else FIGURES / "experiment_loss_estimation.png"
    )
    plot(report, figure)
    if not args.quick:
        replace_section("experiment-a", section(report))
    print(f"done in {report['seconds']} s; figure {figure}")


if __name__ == "__main__":
    main()
