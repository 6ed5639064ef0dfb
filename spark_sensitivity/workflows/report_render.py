"""The selection report from plain numbers: PNG figures (matplotlib) and one self-contained HTML page.

Nothing here touches Spark: :mod:`spark_sensitivity.workflows.report` gathers bounded numbers from the outputs
and hands them over as :class:`ReportData`, so the page can be rendered and checked on its own.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spark_sensitivity.core.forecasting.forecast import describe

FIGURE_SIZE = (8.0, 5.0)
FIGURE_DPI = 100
POPULATION_COLOR = "#9a9a9a"
SELECTED_COLOR = "#d62728"
WEIGHTED_COLOR = "#1f77b4"
# A page with thousands of table rows helps nobody; the figures still show every cluster.
MAX_TABLE_CLUSTERS = 200


@dataclass(frozen=True)
class LossComparison:
    """The mean of a loss column over all valid rows, and its two estimates from the weighted subset."""

    column: str
    true_mean: float
    estimate: float  # sum_S w * loss / n: unbiased
    ratio_estimate: float  # sum_S w * loss / sum_S w: self-normalised

    @property
    def relative_error(self) -> float:
        return _relative(self.estimate, self.true_mean)

    @property
    def ratio_relative_error(self) -> float:
        return _relative(self.ratio_estimate, self.true_mean)


def _relative(estimate: float, truth: float) -> float:
    if truth == 0:
        return 0.0 if estimate == 0 else float("inf")
    return abs(estimate - truth) / abs(truth)


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows; arrays are indexed by cluster id or by shown point.

    ``population_*`` describe a bounded uniform sample of all valid rows, ``selected_*`` a bounded
    sample of the subset's rows; ``*_xy`` are their coordinates in the same 2-D projection.
    """

    n: int
    n_valid: int
    k: int
    m: int
    subset_rows: int
    kmeans_cost: float
    sum_of_weights: float
    cluster_sizes: np.ndarray
    cluster_costs: np.ndarray
    cluster_draws: np.ndarray
    cluster_weights: np.ndarray
    population_xy: np.ndarray
    population_sensitivity: np.ndarray
    selected_xy: np.ndarray
    selected_sensitivity: np.ndarray
    selected_count: np.ndarray
    selected_weight: np.ndarray
    centers_xy: np.ndarray
    explained_variance: tuple[float, float]
    loss: LossComparison | None = None
    forecast: dict | None = None  # the manifest's forecast section
    run_facts: list[tuple[str, str]] = field(default_factory=list)
    examples: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # cluster: (id, shown)
    target_rows: np.ndarray | None = None  # --target: its rows per cluster
    target_uncovered: np.ndarray | None = None
    example_col: str | None = None


def render(data: ReportData) -> dict[str, bytes]:
    """The report's files by name: ``index.html`` and the PNG figures it references."""
    figures = {
        "cluster_sizes.png": _cluster_sizes,
        "cluster_shares.png": _cluster_shares,
        "sensitivity.png": _sensitivity,
        "weights.png": _weights,
        "projection.png": _projection,
    }
    files = {name: _png(draw, data) for name, draw in figures.items()}
    files["index.html"] = _page(data).encode("utf-8")
    return files


def _png(draw: Callable[[Axes, ReportData], None], data: ReportData) -> bytes:
    # A bare Figure renders with Agg and keeps no global pyplot state (no display on a driver).
    fig = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    draw(fig.subplots(), data)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})  # same numbers, same bytes
    return buffer.getvalue()


def _log_bins(values: np.ndarray, count: int = 50) -> np.ndarray:
    """Log-spaced bins over the values, all positive (weights and sensitivities span decades)."""
    low, high = values.min(), values.max()
    if high <= low * 1.0001:
        low, high = low / 1.5, high * 1.5
    return np.geomspace(low, high, count + 1)


def _cluster_sizes(ax: Axes, data: ReportData) -> None:
    order = np.argsort(-data.cluster_sizes, kind="stable")
    ranks = np.arange(1, data.k + 1)
    sizes = data.cluster_sizes[order]
    ax.bar(ranks, sizes, width=1.0, color=POPULATION_COLOR, label="rows (n_j)")
    ax.plot(ranks, data.cluster_weights[order], "o", color=WEIGHTED_COLOR, ms=3, label="sum of weights")
    positive = sizes[sizes > 0]
    if positive.size and positive.max() > 10 * positive.min():  # sizes spanning decades
        ax.set_yscale("log")
    ax.set_xlabel("cluster, largest first")
    ax.set_ylabel("rows")
    ax.set_title(f"Cluster sizes ({data.k} clusters, {positive.size} non-empty)")
    ax.legend()


def _cluster_shares(ax: Axes, data: ReportData) -> None:
    data_share = data.cluster_sizes / max(data.n_valid, 1)
    draw_share = data.cluster_draws / max(data.m, 1)
    weight_share = data.cluster_weights / data.sum_of_weights  # > 0: every draw has a positive weight
    drawn = draw_share > 0  # log axes: clusters without a draw are counted in the title instead
    ax.scatter(data_share[drawn], draw_share[drawn], s=18, color=SELECTED_COLOR, label="share of the draws")
    ax.scatter(
        data_share[drawn],
        weight_share[drawn],
        s=18,
        marker="x",
        color=WEIGHTED_COLOR,
        label="share of the weight",
    )
    shown = np.concatenate([data_share[drawn], draw_share[drawn], weight_share[drawn]])
    low, high = shown.min() / 1.5, min(1.0, shown.max() * 1.5)
    ax.plot([low, high], [low, high], color="black", lw=0.8, label="equal shares")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("share of the data (n_j / n)")
    ax.set_ylabel("share of the sample")
    undrawn = int(((data.cluster_sizes > 0) & ~drawn).sum())
    ax.set_title(
        "Each cluster's share of the data vs of the sample"
        + (f"\n({undrawn} non-empty clusters got no draw)" if undrawn else "")
    )
    ax.legend()


def _sensitivity(ax: Axes, data: ReportData) -> None:
    bins = _log_bins(np.concatenate([data.population_sensitivity, data.selected_sensitivity]))
    ax.hist(
        data.population_sensitivity,
        bins=bins,
        density=True,
        color=POPULATION_COLOR,
        alpha=0.8,
        label=f"all rows (uniform sample of {len(data.population_sensitivity):,})",
    )
    ax.hist(
        data.selected_sensitivity,
        bins=bins,
        weights=data.selected_count,
        density=True,
        histtype="step",
        lw=2,
        color=SELECTED_COLOR,
        label="draws",
    )
    ax.set_xscale("log")
    ax.set_xlabel("sensitivity s_i = v_i / Phi + 1 / n_a(i)")
    ax.set_ylabel("density")
    ax.set_title("Sensitivity: all rows vs the draws")
    ax.legend()


def _weights(ax: Axes, data: ReportData) -> None:
    ax.hist(data.selected_weight, bins=_log_bins(data.selected_weight), color=WEIGHTED_COLOR)
    ax.axvline(data.n_valid / max(data.m, 1), color="black", lw=1, ls="--", label="n / m (uniform sampling)")
    ax.set_xscale("log")
    ax.set_xlabel("weight = count / (m q_i)")
    ax.set_ylabel("selected rows")
    ax.set_title(f"Weights of the selected rows (sum {data.sum_of_weights:,.1f}, n = {data.n_valid:,})")
    ax.legend()


def _projection(ax: Axes, data: ReportData) -> None:
    ax.scatter(
        data.population_xy[:, 0],
        data.population_xy[:, 1],
        s=2,
        color=POPULATION_COLOR,
        alpha=0.5,
        lw=0,
        label=f"rows ({len(data.population_xy):,} sampled uniformly)",
    )
    weights = data.selected_weight
    sizes = 8 + 72 * np.sqrt(weights / weights.max()) if weights.size else weights
    ax.scatter(
        data.selected_xy[:, 0],
        data.selected_xy[:, 1],
        s=sizes,
        facecolors="none",
        edgecolors=SELECTED_COLOR,
        lw=0.8,
        label=f"selected ({len(data.selected_xy):,}), size by weight",
    )
    ax.scatter(data.centers_xy[:, 0], data.centers_xy[:, 1], s=30, marker="x", color="black", label="centers")
    first, second = data.explained_variance
    ax.set_xlabel(f"PC 1 ({first:.0%} of the variance)")
    ax.set_ylabel(f"PC 2 ({second:.0%} of the variance)")
    ax.set_title("2-D PCA of the embeddings")
    ax.legend(loc="best", markerscale=1.5)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, (int, np.integer)) else f"{value:,.6g}"


def _table(rows: list[tuple[str, str, str]]) -> str:
    """A two-column table; each row is (element id, label, value)."""
    body = "".join(
        f'<tr><th scope="row">{html.escape(label)}</th><td id="{ident}">{html.escape(value)}</td></tr>'
        for ident, label, value in rows
    )
    return f"<table>{body}</table>"


def _summary(data: ReportData) -> str:
    rows = [
        ("n", "rows in the input (n)", _number(data.n)),
        ("n-valid", "rows with a valid embedding", _number(data.n_valid)),
        ("k", "clusters (k)", _number(data.k)),
        ("nonempty", "non-empty clusters", _number(int((data.cluster_sizes > 0).sum()))),
        ("m", "draws (m)", _number(data.m)),
        ("subset-rows", "distinct selected rows", _number(data.subset_rows)),
        ("kmeans-cost", "k-means cost (Phi_k)", _number(data.kmeans_cost)),
        ("sum-of-weights", "sum of weights (estimates n)", _number(data.sum_of_weights)),
    ]
    rows += [(f"fact-{i}", label, value) for i, (label, value) in enumerate(data.run_facts)]
    return _table(rows)


def _loss(loss: LossComparison | None) -> str:
    if loss is None:
        return "<p>No loss column was given, so there is no comparison of mean losses.</p>"
    return (
        f"<p>Mean of the column <code>{html.escape(loss.column)}</code> over all valid rows (one "
        "distributed pass), and its estimates from the weighted subset alone.</p>"
        + _table(
            [
                ("loss-true", "true mean loss", _number(loss.true_mean)),
                ("loss-estimate", "estimate sum(w * loss) / n (unbiased)", _number(loss.estimate)),
                ("loss-error", "relative error", f"{loss.relative_error:.3%}"),
                ("loss-ratio", "ratio estimate sum(w * loss) / sum(w)", _number(loss.ratio_estimate)),
                (
                    "loss-ratio-error",
                    "relative error of the ratio estimate",
                    f"{loss.ratio_relative_error:.3%}",
                ),
            ]
        )
    )


def _forecast(facts: dict | None) -> list[str]:
    """The forecast's table (docs/FORECAST.md explains it), or nothing when the run made none."""
    if not facts:
        return []
    rows = []
    for line in describe(facts):
        label, _, text = line.partition(": ")
        rows.append((f"forecast-{label.split(' ')[0]}", label, text))
    return [
        "<h2>Forecast: error of the mean loss estimate</h2>",
        f"<p>Predicted RMSE of each scheme's estimate of the mean loss at m = {facts['m']:,}, relative to "
        f"the mean, with a 95 % bootstrap interval, from {facts['basis_rows']:,} {html.escape(facts['source'])} "
        f"rows. The subset written is {html.escape(str(facts.get('strategy', 'sensitivity')))} (marked "
        "'written'); a deterministic subset's error is its bias, modelled from the pilot (docs/FORECAST.md).</p>",
        _table(rows),
    ]


def _clusters_table(data: ReportData) -> str:
    order = np.argsort(-data.cluster_sizes, kind="stable")[:MAX_TABLE_CLUSTERS]
    n, m, total_weight = max(data.n_valid, 1), max(data.m, 1), data.sum_of_weights or 1.0
    header = (
        "<tr><th>cluster</th><th>rows n_j</th><th>share of data</th><th>cost Phi_j</th>"
        "<th>draws</th><th>share of draws</th><th>sum of weights</th><th>share of weight</th></tr>"
    )
    body = "".join(
        f"<tr><td>{j}</td><td>{data.cluster_sizes[j]:,}</td><td>{data.cluster_sizes[j] / n:.2%}</td>"
        f"<td>{data.cluster_costs[j]:,.6g}</td><td>{data.cluster_draws[j]:,}</td>"
        f"<td>{data.cluster_draws[j] / m:.2%}</td><td>{data.cluster_weights[j]:,.1f}</td>"
        f"<td>{data.cluster_weights[j] / total_weight:.2%}</td></tr>"
        for j in order
    )
    note = ""
    if data.k > MAX_TABLE_CLUSTERS:
        note = f"<p>The {MAX_TABLE_CLUSTERS} largest of {data.k} clusters; clusters/ holds all of them.</p>"
    return f'<table id="clusters">{header}{body}</table>{note}'


def _target_table(data: ReportData) -> list[str]:
    """--target: the input's, the target's and the draws' shares of the clusters the target uses most."""
    if data.target_rows is None:
        return []
    order = [
        j
        for j in np.argsort(-data.target_rows, kind="stable")[:MAX_TABLE_CLUSTERS]
        if data.target_rows[j] > 0
    ]
    n, t, m = max(data.n_valid, 1), max(int(data.target_rows.sum()), 1), max(data.m, 1)
    uncovered = (
        data.target_uncovered if data.target_uncovered is not None else np.zeros_like(data.target_rows)
    )
    header = (
        "<tr><th>cluster</th><th>rows n_j</th><th>share of the input</th><th>target rows</th>"
        "<th>share of the target</th><th>uncovered target rows</th><th>draws</th><th>share of the draws</th></tr>"
    )
    body = "".join(
        f"<tr><td>{j}</td><td>{data.cluster_sizes[j]:,}</td><td>{data.cluster_sizes[j] / n:.2%}</td>"
        f"<td>{data.target_rows[j]:,}</td><td>{data.target_rows[j] / t:.2%}</td><td>{uncovered[j]:,}</td>"
        f"<td>{data.cluster_draws[j]:,}</td><td>{data.cluster_draws[j] / m:.2%}</td></tr>"
        for j in order
    )
    return [
        "<h2>Target: cluster shares</h2>",
        f"<p>The {len(order)} clusters the target reaches, most of the target first: each one's share of the "
        "input, of the target and of the draws (which follow the target). Uncovered target rows lie farther "
        "from their center than 99 % of the input's rows of that cluster.</p>",
        f'<table id="target">{header}{body}</table>',
    ]


def _examples_table(data: ReportData) -> list[str]:
    """A few selected rows of each of the largest clusters, nearest the center first."""
    if not data.examples:
        return []
    column = f" and its <code>{html.escape(data.example_col)}</code>" if data.example_col else ""
    rows = "".join(
        f'<tr><td>{j}</td><td>{data.cluster_sizes[j]:,}</td><td class="examples">'
        + "<br>".join(
            html.escape(f"{ident}: {shown}" if data.example_col else ident) for ident, shown in shown_rows
        )
        + "</td></tr>"
        for j, shown_rows in data.examples.items()
    )
    return [
        "<h2>Example rows per cluster</h2>",
        f"<p>The selected rows nearest each center in the {len(data.examples)} largest clusters: the id{column}"
        " (--report-col names the column shown).</p>",
        f'<table id="examples"><tr><th>cluster</th><th>rows n_j</th><th>selected rows</th></tr>{rows}</table>',
    ]


def _figure(name: str, alt: str, caption: str) -> str:
    width, height = (int(FIGURE_SIZE[0] * FIGURE_DPI), int(FIGURE_SIZE[1] * FIGURE_DPI))
    return (
        f'<figure><img src="{name}" alt="{html.escape(alt)}" width="{width}" height="{height}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th[scope=row] { text-align: left; font-weight: normal; }
td.examples { text-align: left; }
figure { margin: 1em 0 2em; }
figcaption { color: #555; max-width: 50em; }
img { max-width: 100%; height: auto; }
"""


def _shares_caption(data: ReportData) -> str:
    """What the shares figure shows; only per-cluster weights summing to n_j put the crosses on the line."""
    nonempty = max(int((data.cluster_sizes > 0).sum()), 1)
    exact = np.allclose(data.cluster_weights, data.cluster_sizes, rtol=1e-9)
    weights = (
        "the weights bring each cluster back to its share exactly (crosses on the line: each "
        "cluster's weights sum to its size)"
        if exact
        else f"the weights bring each cluster back to its share on average; with random draws the crosses "
        f"scatter around the line, the more so the fewer draws a cluster gets (here {data.m / nonempty:.1f} "
        "per non-empty cluster on average)"
    )
    return (
        "Each cluster's share of the data against its share of the draws (dots) and of the weights "
        "(crosses). Sensitivity sampling draws small and costly clusters more often than their share "
        f"(dots above the line); {weights}."
    )


def _page(data: ReportData) -> str:
    shown = (
        f"{len(data.population_xy):,} of {data.n_valid:,} rows (a uniform sample by a hash of the id) "
        f"and {len(data.selected_xy):,} of the {data.subset_rows:,} selected rows"
    )
    sections = [
        "<h1>Sensitivity sampling report</h1>",
        "<h2>Summary</h2>",
        _summary(data),
        "<h2>Mean loss: estimated vs true</h2>",
        _loss(data.loss),
        *_forecast(data.forecast),
        "<h2>Figures</h2>",
        _figure(
            "projection.png",
            "2-D projection of the rows with the selected rows marked",
            f"The embeddings projected on their first two principal components: {shown}. "
            "Selected rows are circled, larger for larger weight; crosses are the k-means centers.",
        ),
        _figure(
            "cluster_sizes.png",
            "cluster sizes",
            "Rows per cluster, largest first, with the subset's sum of weights per cluster (its estimate "
            "of the cluster's size).",
        ),
        _figure(
            "cluster_shares.png",
            "each cluster's share of the data vs of the sample",
            _shares_caption(data),
        ),
        _figure(
            "sensitivity.png",
            "distribution of sensitivity",
            "Sensitivity of all rows (from the uniform sample) and of the draws (each selected row counted "
            "as often as it was drawn). Draws lean to high sensitivity: that is the sampling at work.",
        ),
        _figure(
            "weights.png",
            "distribution of weights",
            "Weight of each selected row; a row with weight w stands for about w rows of the data.",
        ),
        "<h2>Clusters</h2>",
        _clusters_table(data),
        *_target_table(data),
        *_examples_table(data),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Sensitivity sampling report</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
