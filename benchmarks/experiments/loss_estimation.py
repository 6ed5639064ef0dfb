"""Experiment (a): estimating a classifier's average loss on Fashion-MNIST from a weighted sample.

Regenerates docs/RESULTS.md, sections "(a) Estimating the average loss" (markers ``experiment-a``)
and "(a) with CNN features" (``experiment-a-cnn``), with docs/figures/experiment_loss_estimation*.png;
its loss is also the one of docs/FORECAST.md's "Validation" (``forecast_validation``). From the
repository root:

    python -m benchmarks.experiments.loss_estimation --quick   # 2 fits x 10 draws, 2 sizes; leaves docs/ alone
    python -m benchmarks.experiments.loss_estimation           # full: 10 fits x 20 draws, updates docs/RESULTS.md
    python -m benchmarks.experiments.loss_estimation --representation cnn --workdir runs/experiments-cnn

The classifier is a logistic regression on 50 PCA components of the pixels, trained on a uniform
warm-up of 1,000 training images; the loss is its per-example cross-entropy on all 60,000 training
images. Every k-means fit has its own seed (fit sample and init, the default engine: the driver at
this size), and each fit is followed by its own draw seeds (fit f draws with seeds D*f, ...,
D*f + D - 1). For each sample size every scheme of ``spark_sensitivity.workflows.evaluate`` selects
rows through the project's Spark code and estimates the mean loss; we report the RMSE of the relative error next
to uniform sampling on the same draw seeds given the same number of loss evaluations (the loss-aware
scheme also evaluates the loss on its k representatives), with a bootstrap over fits, and the mean
relative error with its standard error over fits. The per-fit errors are saved after every fit
(``--max-minutes``, ``--resume``, ``--from-runs``).

Embeddings: the PCA pixels (model-free), and the classifier's centred log-probabilities (uses the
model's outputs on every row: inference on all n rows, no labels).

``--representation cnn`` replaces the PCA pixels everywhere by PCA-50 of the standardized
EfficientNet-Lite0 features (``image_features.fashion_cnn``; run
``python -m benchmarks.experiments.image_features extract`` first): the classifier whose loss is
estimated is trained on them and k-means clusters them. Its results go to their own section of
docs/RESULTS.md (markers ``experiment-a-cnn``) and figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.common import (
    FIGURES,
    fashion_pca,
    markdown_table,
    replace_section,
    spark_session,
    standardizer,
    write_table,
)
from benchmarks.experiments.image_features import fashion_cnn
from spark_sensitivity import SensitivitySampler
from spark_sensitivity.workflows import evaluate

WARMUP = 1_000
REPRESENTATIONS = {"pixels": fashion_pca, "cnn": fashion_cnn}  # what the classifier and k-means see
REPRESENTATION_TEXT = {
    "pixels": "50 PCA components of the pixels",
    "cnn": "50 PCA components of the standardized EfficientNet-Lite0 features",
}


def representation(config: dict) -> str:
    return config.get("representation", "pixels")


def outputs_name(config: dict) -> tuple[str, str]:
    """The section's markers and the figure's file name for this representation."""
    rep = representation(config)
    return ("experiment-a", "experiment_loss_estimation.png") if rep == "pixels" else (
        f"experiment-a-{rep}", f"experiment_loss_estimation_{rep}.png")  # fmt: skip


def classifier_losses(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-example cross-entropy on the training set, and centred log-probabilities."""
    rng = np.random.default_rng(0)
    warm = rng.choice(len(data["y"]), size=WARMUP, replace=False)
    scale = standardizer(data["x"][warm])
    model = LogisticRegression(max_iter=2000).fit(scale(data["x"][warm]), data["y"][warm])
    log_p = model.predict_log_proba(scale(data["x"]))
    losses = -log_p[np.arange(len(data["y"])), data["y"]]
    if not np.isfinite(losses).all():
        raise ValueError(f"{int((~np.isfinite(losses)).sum())} losses are not finite")
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


FIT_SETTINGS = {"pointsPerCenter": 100}  # the default engine ('auto': the driver at this size)


def draw_seeds(fit: int, draws: int) -> list[int]:
    """The draw seeds of fit ``fit``: fit * draws, ..., fit * draws + draws - 1 (fit seed = fit)."""
    return list(range(fit * draws, (fit + 1) * draws))


def schemes_for(embedding: str, k: int) -> list[tuple[str, evaluate.SchemeSettings, str]]:
    runs = [("model-free", evaluate.SchemeSettings(k=k), "model-free")]
    runs += [("loss-aware", evaluate.SchemeSettings(k=k), "loss-aware")]
    runs += [("loss-aware", evaluate.SchemeSettings(k=k, uniform_share=0.0), "loss-aware, plain (no floor)")]
    if embedding != "outputs":
        runs += [("stratified", evaluate.SchemeSettings(k=k), "stratified by cluster")]
    return runs


def one_fit(spark_tables: dict, losses: np.ndarray, fit: int, config: dict) -> dict:
    """Every scheme for one k-means fit (seed ``fit``) per embedding, with its draw seeds; uniform on
    the same draw seeds at every budget a scheme spends. Returns relative errors per (embedding,
    method, m) and the clusters' analysis."""
    seeds, k, sizes = draw_seeds(fit, config["draws"]), config["k"], config["sizes"]
    out: dict = {"fit": fit, "seeds": seeds, "rows": [], "analysis": {}, "uniform": {}, "engine": {}}
    first = next(iter(spark_tables.values()))
    budgets = sorted(set(sizes) | {m + k for m in sizes})
    uniform = evaluate.evaluate(first, "uniform", budgets, seeds)
    cache = {u.sample_size: u.rmse for u in uniform}  # no uniform re-runs inside the schemes
    out["uniform"] = {str(u.sample_size): u.relative_errors.tolist() for u in uniform}
    for embedding, table in spark_tables.items():
        model = SensitivitySampler(idCol="id", featuresCol=embedding, k=k, seed=fit, **FIT_SETTINGS).fit(
            table.frame
        )
        out["engine"][embedding] = model.fitInfo["kmeans_engine"]
        out["analysis"][f"{embedding}, k={k}"] = cluster_analysis(model, losses, 1000)
        for scheme, settings, label in schemes_for(embedding, k):
            for result in evaluate.evaluate(table, scheme, sizes, seeds, settings, model, cache):
                if "plain" in label and result.estimator == "difference":
                    continue
                name = label if result.estimator == "weighted" else f"{label} + difference estimator"
                out["rows"].append({"embedding": embedding, "method": name, "m": result.sample_size,
                                    "loss_evaluations": result.loss_evaluations,
                                    "errors": result.relative_errors.tolist()})  # fmt: skip
        model.summary.release()
        fine_k = config["fine_k"]
        large = [m for m in sizes if m >= fine_k]
        if embedding != "outputs" and fine_k and large:  # the choice of k: finer strata (needs m >= k)
            fine = SensitivitySampler(
                idCol="id", featuresCol=embedding, k=fine_k, seed=fit, **FIT_SETTINGS
            ).fit(table.frame)
            out["analysis"][f"{embedding}, k={fine_k}"] = cluster_analysis(fine, losses, 1000)
            settings = evaluate.SchemeSettings(k=fine_k)
            for result in evaluate.evaluate(table, "stratified", large, seeds, settings, fine, cache):
                out["rows"].append({"embedding": embedding, "method": f"stratified by cluster, k={fine_k}",
                                    "m": result.sample_size, "loss_evaluations": result.loss_evaluations,
                                    "errors": result.relative_errors.tolist()})  # fmt: skip
            fine.summary.release()
    for m in sizes:  # uniform itself, as a row of every embedding's table
        for embedding in spark_tables:
            out["rows"].append({"embedding": embedding, "method": "uniform", "m": m, "loss_evaluations": m,
                                "errors": out["uniform"][str(m)]})  # fmt: skip
    return out


def run(workdir: Path, config: dict, max_minutes: float | None, resume: bool) -> dict:
    """Fits 0, 1, ..., config['fits'] - 1, each with its own draw seeds; the results are saved after
    every fit in WORKDIR/loss-estimation-runs.json (``resume`` continues after the fits saved there)."""
    started = time.perf_counter()
    runs_file = workdir / "loss-estimation-runs.json"
    fits, earlier = [], 0.0
    if resume and runs_file.exists():
        saved = json.loads(runs_file.read_text())
        if saved["config"] != {**config, "fits": saved["config"]["fits"]}:
            raise SystemExit(f"--resume: {runs_file} was made with other settings: {saved['config']}")
        fits, earlier = saved["fits"], saved["seconds"]
    spark = spark_session()
    data = REPRESENTATIONS[representation(config)]()
    losses, logits = classifier_losses(data)
    n = len(losses)
    path = write_table(
        workdir / "fashion-losses",
        {"id": np.arange(n), representation(config): data["x"], "outputs": logits, "loss": losses},
    )
    frame = spark.read.parquet(path)
    tables = {e: evaluate.LossTable(frame, "id", e, "loss") for e in config["embeddings"]}
    for fit in range(len(fits), config["fits"]):
        if max_minutes is not None and time.perf_counter() - started > 60 * max_minutes:
            print(f"stopping after {fit} fits (--max-minutes {max_minutes})", flush=True)
            break
        tick = time.perf_counter()
        fits.append(one_fit(tables, losses, fit, config))
        print(f"fit {fit} (draw seeds {fits[-1]['seeds'][0]}-{fits[-1]['seeds'][-1]}): "
              f"{time.perf_counter() - tick:.0f} s", flush=True)  # fmt: skip
        saved = {"config": config, "fits": fits, "seconds": earlier + time.perf_counter() - started}
        runs_file.parent.mkdir(parents=True, exist_ok=True)
        runs_file.write_text(json.dumps(saved))
    for table in tables.values():
        table.frame.unpersist()
    spark.stop()
    return {
        "n": n,
        "true_mean": float(losses.mean()),
        "loss_cv": float(losses.std() / losses.mean()),
        "config": config,
        "fits": fits,
        "seconds": earlier + time.perf_counter() - started,
        "uniform_exact": {
            m: uniform_rmse_formula(losses, m)
            for m in sorted({r["loss_evaluations"] for r in fits[0]["rows"]})
        }
        if fits
        else {},  # fmt: skip
    }


def summarize_fits(report: dict, resamples: int = 2000) -> list[dict]:
    """Per (embedding, method, m), over all fits and draws: the RMSE of the relative error, the ratio
    to uniform's RMSE on the same draw seeds at the same loss evaluations, with its bootstrap standard
    error and 95 % interval over fits (whole fits resampled, their draws with them), and the mean
    relative error with its standard error over fits (the spread of the per-fit means / sqrt(fits)).
    ``flag`` is "~" when the ratio is within two standard errors of 1 (inside the noise)."""
    fits = report["fits"]
    rng = np.random.default_rng(12345)
    picks = rng.integers(0, len(fits), size=(resamples, len(fits)))
    keys = list(dict.fromkeys((r["embedding"], r["method"], r["m"]) for r in fits[0]["rows"]))
    out = []
    for embedding, method, m in keys:
        per_fit = [next(r for r in f["rows"] if (r["embedding"], r["method"], r["m"]) == (embedding, method, m))
                   for f in fits]  # fmt: skip
        evals = per_fit[0]["loss_evaluations"]
        errors = np.array([r["errors"] for r in per_fit])  # fits x draws
        base = np.array([f["uniform"][str(evals)] for f in fits])
        mine, theirs = (errors**2).mean(axis=1), (base**2).mean(axis=1)  # per-fit mean squares
        ratio = float(np.sqrt(mine.mean() / theirs.mean()))
        boot = np.sqrt(mine[picks].mean(axis=1) / theirs[picks].mean(axis=1))
        se = float(boot.std(ddof=1)) if len(fits) > 1 else float("nan")
        fit_means = errors.mean(axis=1)
        bias_se = float(fit_means.std(ddof=1) / np.sqrt(len(fits))) if len(fits) > 1 else float("nan")
        out.append({
            "embedding": embedding, "method": method, "m": m, "loss_evaluations": evals,
            "fits": len(fits), "draws": int(errors.size), "rmse": float(np.sqrt(mine.mean())),
            "uniform_rmse": float(np.sqrt(theirs.mean())), "ratio": ratio, "ratio_se": se,
            "ratio_low": float(np.percentile(boot, 2.5)), "ratio_high": float(np.percentile(boot, 97.5)),
            "exact_ratio": float(np.sqrt(mine.mean())) / report["uniform_exact"][evals]
            if evals in report["uniform_exact"] else None,
            "mean_relative_error": float(errors.mean()), "mean_relative_error_se": bias_se,
            "flag": "~" if not se > 0 or abs(ratio - 1) < 2 * se else "",
        })  # fmt: skip
    return out


def mean_analysis(report: dict) -> dict[str, dict[str, float]]:
    """The clusters' analysis averaged over fits, with its spread (min, max)."""
    names = report["fits"][0]["analysis"]
    out = {}
    for name in names:
        values = [f["analysis"][name] for f in report["fits"] if name in f["analysis"]]
        out[name] = {key: (float(np.mean([v[key] for v in values])), min(v[key] for v in values),
                           max(v[key] for v in values)) for key in values[0]}  # fmt: skip
    return out


def uniform_rmse_formula(losses: np.ndarray, m: int) -> float:
    """The exact RMSE of the relative error of uniform sampling of m of n rows without replacement."""
    n = len(losses)
    return float(np.sqrt((1 - m / n) * losses.var(ddof=1) / m) / losses.mean())


def plot(report: dict, rows: list[dict], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    embeddings = report["config"]["embeddings"]
    fig, axes = plt.subplots(1, len(embeddings), figsize=(6 * len(embeddings), 4.5), sharey=True)
    for ax, embedding in zip(np.atleast_1d(axes), embeddings, strict=True):
        mine = [r for r in rows if r["embedding"] == embedding and r["method"] != "uniform"]
        for method in dict.fromkeys(r["method"] for r in mine):
            points = [r for r in mine if r["method"] == method]
            ax.errorbar(
                [r["loss_evaluations"] for r in points],
                [r["ratio"] for r in points],
                yerr=[
                    [r["ratio"] - r["ratio_low"] for r in points],
                    [r["ratio_high"] - r["ratio"] for r in points],
                ],
                marker="o",
                capsize=3,
                label=method,
            )
        ax.axhline(1.0, color="k", linestyle="--", label="uniform (same loss evaluations)")
        ax.axhline(0.7, color="grey", linestyle=":", label="target 0.7x")
        ax.set(
            xscale="log", xlabel="loss evaluations (m, + k for loss-aware)", title=f"embedding: {embedding}"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("RMSE / uniform's RMSE (95 % bootstrap over fits)")
    config = report["config"]
    fig.suptitle(f"Fashion-MNIST ({representation(config)}), mean cross-entropy estimation: "
                 f"{len(report['fits'])} k-means fits x {config['draws']} draws, k={config['k']}")  # fmt: skip
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def bias_mark(row: dict) -> str:
    """'*' where the mean relative error is more than two standard errors from zero."""
    se = row["mean_relative_error_se"]
    return "*" if se > 0 and abs(row["mean_relative_error"]) > 2 * se else ""


def section(report: dict, rows: list[dict]) -> str:
    header = ["embedding", "method", "m", "loss evaluations", "RMSE", "uniform RMSE (same seeds)",
              "ratio ± s.e.", "95 % interval", "ratio to exact uniform", "mean rel. error ± s.e."]  # fmt: skip
    body = [
        [r["embedding"], r["method"], r["m"], r["loss_evaluations"], f"{r['rmse']:.4f}", f"{r['uniform_rmse']:.4f}",
         "1" if r["method"] == "uniform" else f"{r['ratio']:.2f} ± {r['ratio_se']:.2f}{r['flag']}",
         "" if r["method"] == "uniform" else f"{r['ratio_low']:.2f}-{r['ratio_high']:.2f}",
         f"{r['exact_ratio']:.2f}", f"{r['mean_relative_error']:+.4f} ± {r['mean_relative_error_se']:.4f}{bias_mark(r)}"]
        for r in rows
    ]  # fmt: skip
    notes = "\n".join(
        f"- clusters on {e}: R^2 of the loss explained by the cluster = {a['r2'][0]:.3f} "
        f"({a['r2'][1]:.3f}-{a['r2'][2]:.3f} over fits); best possible cluster allocation (Neyman, true "
        f"spreads) = {a['neyman_vs_uniform'][0]:.2f}x uniform's RMSE ({a['neyman_vs_uniform'][1]:.2f}-"
        f"{a['neyman_vs_uniform'][2]:.2f})"
        for e, a in mean_analysis(report).items()
    )
    exact = ", ".join(f"m={m}: {v:.4f}" for m, v in report["uniform_exact"].items())
    config = report["config"]
    engines = sorted({e for f in report["fits"] for e in f["engine"].values()})
    fits = len(report["fits"])
    rep = representation(config)
    intro = "" if rep == "pixels" else (
        f"Representation: {REPRESENTATION_TEXT[rep]} (`--representation {rep}`), for both the "
        f"classifier whose loss is estimated and the k-means clustering (embedding `{rep}`). ")  # fmt: skip
    return (
        f"{intro}n = {report['n']}, true mean loss = {report['true_mean']:.4f}, coefficient of variation of the "
        f"loss = {report['loss_cv']:.2f}. {fits} k-means fits (fit seeds 0-{fits - 1}, k-means engine: "
        f"{', '.join(engines)}), each with its own {config['draws']} draw seeds (fit f draws with seeds "
        f"{config['draws']}f, ..., {config['draws']}f + {config['draws'] - 1}): {fits * config['draws']} "
        "estimates per point; uniform draws with the same seeds. Ratio = the scheme's RMSE over uniform's "
        "on the same draw seeds at the same number of loss evaluations, ± its bootstrap standard error "
        "over fits (whole fits resampled with their draws), marked `~` where it is within two standard "
        "errors of 1 (inside the noise); the ratio to the exact uniform RMSE (formula below) has no "
        "noise in the denominator. Mean relative error ± its standard error over fits (spread of the "
        f"per-fit means / sqrt({fits})), marked `*` where it is more than two standard errors from zero. Run time {report['seconds'] / 60:.0f} min.\n\n"
        f"![loss estimation](figures/{outputs_name(config)[1]})\n\n{markdown_table(header, body)}\n\n"
        f"Uniform's RMSE from the exact formula sqrt((1 - m/n) var / m) / mean (no seed noise): {exact}.\n\n"
        f"How far clustering can go on this loss (k={config['k']} unless said; at m=1000; mean over the "
        f"fits):\n\n{notes}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 sample sizes, 2 fits x 10 draws; leaves docs/ alone"
    )
    parser.add_argument(
        "--fits", type=int, default=None, help="k-means fits, seeds 0, 1, ... (default: 10, quick 2)"
    )
    parser.add_argument("--draws", type=int, default=None, help="draw seeds per fit (default: 20, quick 10)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="sample sizes m (default: 100 200 500 1000 2000, quick 200 1000)",
    )
    parser.add_argument(
        "--representation",
        choices=tuple(REPRESENTATIONS),
        default="pixels",
        help="pixels: PCA-50 of the pixels (default); cnn: PCA-50 of the standardized "
        "EfficientNet-Lite0 features, for the classifier and the clustering (own section of docs/)",
    )
    parser.add_argument(
        "--embeddings",
        nargs="+",
        default=None,
        choices=("pixels", "cnn", "outputs"),
        help="what k-means clusters (default: the representation and outputs)",
    )
    parser.add_argument(
        "--fine-k", type=int, default=500, help="also stratify by k-means with this k (0: no)"
    )
    parser.add_argument(
        "--workdir", default="runs/experiments", help="tables and raw results (default: runs/experiments)"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new fit after this long; report the fits done",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue after the fits saved in WORKDIR/loss-estimation-runs.json",
    )
    parser.add_argument(
        "--from-runs",
        action="store_true",
        help="run nothing: summarize the fits saved in WORKDIR/loss-estimation-runs.json",
    )
    return parser


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    workdir = Path(args.workdir)
    embeddings = args.embeddings or [args.representation, "outputs"]
    if any(e not in (args.representation, "outputs") for e in embeddings):
        parser.error(f"--embeddings: {args.representation} (the representation) or outputs")
    config = {
        "fits": args.fits or (2 if args.quick else 10),
        "draws": args.draws or (10 if args.quick else 20),
        "sizes": args.sizes or ([200, 1000] if args.quick else [100, 200, 500, 1000, 2000]),
        "embeddings": embeddings,
        "k": 100,
        "fine_k": args.fine_k,
    }
    if args.representation != "pixels":  # pixel runs keep the settings they were saved with
        config["representation"] = args.representation
    if args.from_runs:
        saved = json.loads((workdir / "loss-estimation-runs.json").read_text())
        data = REPRESENTATIONS[representation(saved["config"])]()
        losses, _ = classifier_losses(data)
        report = {"n": len(losses), "true_mean": float(losses.mean()), "loss_cv": float(losses.std() / losses.mean()),
                  "config": saved["config"], "fits": saved["fits"], "seconds": saved["seconds"],
                  "uniform_exact": {m: uniform_rmse_formula(losses, m) for m in sorted(
                      {r["loss_evaluations"] for r in saved["fits"][0]["rows"]})}}  # fmt: skip
    else:
        report = run(workdir, config, args.max_minutes, args.resume)
    rows = summarize_fits(report)
    for r in rows:
        print(f"{r['embedding']:8s} {r['method']:48s} m={r['m']:5d} evals={r['loss_evaluations']:5d} "
              f"ratio={r['ratio']:.2f}±{r['ratio_se']:.2f}{r['flag']} exact={r['exact_ratio']:.2f} "
              f"bias={r['mean_relative_error']:+.4f}±{r['mean_relative_error_se']:.4f}", flush=True)  # fmt: skip
    summary = {k: v for k, v in report.items() if k != "fits"}
    (workdir / "loss_estimation.json").write_text(json.dumps({**summary, "rows": rows}, indent=1))
    markers, figure_name = outputs_name(report["config"])
    figure = workdir / figure_name if args.quick else FIGURES / figure_name
    plot(report, rows, figure)
    if not args.quick:
        replace_section(markers, section(report, rows))
    print(f"done in {report['seconds']:.0f} s; figure {figure}")


if __name__ == "__main__":
    main()
