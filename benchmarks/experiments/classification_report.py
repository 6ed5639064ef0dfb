"""Experiment (c), the report: the auto rows, the Markdown sections and the figure.

Writes what ``python -m benchmarks.experiments.classification`` puts into docs/RESULTS.md, sections
"(c) Classification accuracy vs budget" (markers ``experiment-c``), "(c) with CNN features"
(``experiment-c-cnn``) and "(c) after deduplication" (``experiment-c-dedup``), and
docs/figures/experiment_classification*.png; not run on its own (run that command, or
``python -m benchmarks.experiments.classification --from-runs`` to rewrite the report from saved runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import markdown_table
from benchmarks.experiments.classification_methods import CLUSTERS, DEDUP, REPRESENTATION_TEXT, WEIGHTED
from spark_sensitivity.core.sampling import strategies


def with_auto(results: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, list[float]]]:
    """Adds auto: at each budget, the runs of the strategy ``strategies.resolve`` picks (k = 100 for
    stratified, as in those runs); in each arm of a dedup run, where the strategies ran."""
    out = dict(results)
    for arm in ("", DEDUP):
        if "uniform" + arm not in results:
            continue
        for suffix in ("", WEIGHTED):
            auto: dict[str, list[float]] = {}
            for budget in results["uniform" + arm]:
                strategy, _ = strategies.resolve(strategies.AUTO, None, int(budget))
                if strategy + suffix + arm in results:
                    auto[budget] = results[strategy + suffix + arm][budget]
            if auto:
                out["auto" + suffix + arm] = auto
    return out


def names(config: dict) -> tuple[str, str]:
    """The section's markers and the figure's file name for this run's settings."""
    tag = ("" if config["representation"] == "pixels" else f"-{config['representation']}") + (
        "-dedup" if config.get("dedup_eps") else ""
    )
    if config.get("dedup_keep", "farthest") != "farthest":
        tag += f"-{config['dedup_keep']}"
    return f"experiment-c{tag}", f"experiment_classification{tag.replace('-', '_')}.png"


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
    representation = report["config"]["representation"]
    what = "50 PCA components" if representation == "pixels" else "PCA-50 of CNN features"
    fig.suptitle(f"Fashion-MNIST, logistic regression on {what}, {seeds_text(report)}")
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
    representation = report["config"]["representation"]
    intro = (
        ""
        if representation == "pixels"
        else f"Representation: {REPRESENTATION_TEXT[representation]} (`--representation "
        f"{representation}`), for the selection (k-means, k-center, warm-up models) and for the "
        "classifier trained on the selected images. "
    )
    return (
        f"{intro}Test accuracy (%) over {seeds_text(report)} (each seed re-fits k-means): mean ± standard "
        "error; in brackets the mean paired difference to uniform (same seed) ± its standard error, "
        "marked `~` where it is within two standard errors of zero (inside the noise). "
        f"auto picks {auto}. Run time {report['seconds'] / 60:.0f} min.\n\n"
        f"![classification](figures/{names(report['config'])[1]})\n\n"
        f"{markdown_table(header, means)}\n\nMedians (%):\n\n{markdown_table(header, medians)}"
    )


def paired(values: list[float], base: list[float]) -> tuple[float, float, str]:
    """Mean paired difference, its standard error, and "~" when within two standard errors of 0."""
    diffs = np.asarray(values) - np.asarray(base[: len(values)])
    se = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return float(diffs.mean()), se, "~" if not se > 0 or abs(diffs.mean()) < 2 * se else ""


def dedup_section(report: dict) -> str:
    """Per method and budget: accuracy without and with dedup, and the paired difference."""
    results, config, info = report["results"], report["config"], report["dedup"]
    budgets = sorted({int(b) for b in results["uniform"]})
    removed = [i["removed_rows"] for i in info]
    n = info[0]["removed_rows"] + info[0]["kept_rows"]
    keep = config.get("dedup_keep", "farthest")
    same = [i["removed_same_label"] for i in info]
    rows = []
    for method in (m for m in results if not m.endswith(DEDUP) and m + DEDUP in results):
        for b in budgets:
            plain, deduped = results[method][str(b)], results[method + DEDUP][str(b)]
            runs = min(len(plain), len(deduped))
            plain, deduped = plain[:runs], deduped[:runs]
            diff, diff_se, flag = paired(deduped, plain)
            vs_uniform = paired(deduped, results["uniform"][str(b)])
            se = lambda v: np.std(v, ddof=1) / np.sqrt(len(v)) * 100 if len(v) > 1 else float("nan")  # noqa: E731
            rows.append([
                method, b, runs, f"{np.mean(plain) * 100:.1f} ± {se(plain):.1f}",
                f"{np.mean(deduped) * 100:.1f} ± {se(deduped):.1f}",
                f"{diff * 100:+.1f} ± {diff_se * 100:.1f}{flag}",
                f"{vs_uniform[0] * 100:+.1f} ± {vs_uniform[1] * 100:.1f}{vs_uniform[2]}",
            ])  # fmt: skip
    header = ["method", "B", "seeds", "without dedup", "after dedup", "dedup - without (paired)",
              "after dedup - uniform without dedup"]  # fmt: skip
    return (
        f"Representation: {REPRESENTATION_TEXT[config['representation']]}. Deduplication at "
        f"eps = {config['dedup_eps']} (cosine similarity >= {1 - config['dedup_eps']:g}; k = {CLUSTERS} "
        f"clusters, each seed's own k-means fit; `--dedup-keep {keep}`: of each group of near-duplicates "
        f"the row {'farthest from' if keep == 'farthest' else 'nearest to'} its center is kept) removed {min(removed)}-{max(removed)} of "
        f"{n} training images (mean {np.mean(removed):.0f}, {np.mean(removed) / n * 100:.1f} %) over "
        f"the {len(info)} seeds; "
        f"{np.mean(same) * 100:.1f} % of the removed images have the label of the image they "
        "duplicate. Test accuracy (%) over seeds 0, 1, ...: mean ± standard error, both arms on the "
        "same seeds; the paired difference (same seed) ± its standard error is marked `~` where it is "
        f"within two standard errors of zero (inside the noise). Run time {report['seconds'] / 60:.0f} min."
        f"\n\n{markdown_table(header, rows)}"
    )
