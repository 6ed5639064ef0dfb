"""A forecast of each scheme's error before the user spends the budget: pure numpy, O(k) or O(pilot).

The target is the mean loss  mu = L / n,  L = sum_i l_i  over the n valid rows, estimated from m loss
evaluations. We forecast the RMSE of each scheme's estimate relative to mu (its standard error / mu:
all three estimates are unbiased).

Sensitivity sampling (m i.i.d. draws with probability q_i, weight 1 / (m q_i) per draw; the
Hansen-Hurwitz estimate mu_hat = (1/n) sum_draws l / (m q)). One draw contributes l_I / q_I, whose
mean is L and second moment sum_i l_i^2 / q_i, so

    Var(mu_hat) = (1 / (m n^2)) * ( sum_i l_i^2 / q_i  -  L^2 ).

Stratified by cluster (m_j rows of cluster j without replacement, weight n_j / m_j; m_j from
``uniform.allocate``, proportional to n_j with at least one row per non-empty cluster):

    Var(mu_hat) = sum_j (n_j^2 / m_j) (1 - m_j / n_j) S_j^2 / n^2,   S_j^2 = within-cluster variance
                                                                          (divisor n_j - 1).

Uniform (m rows without replacement, weight n / m):  Var(mu_hat) = (1 - m / n) S^2 / m.

A deterministic subset (``representatives``: the row nearest each center, weight n_j;
``prototypes``: the m_j rows nearest their center, weight n_j / m_j) has no sampling variance but a
bias: its rows sit nearer their centers than their clusters do. From a pilot that bias is modelled,
not measured: inside each cluster the loss is taken as linear in the row's cost v_i, l_i = mu_j +
beta (v_i - Phi_j / n_j) + e_i, with one slope beta and residual variance tau^2 fitted to the pilot
rows of the clusters holding at least two of them (both centred on their cluster's pilot mean).
Then the subset's estimate sum_S w_i l_i has

    bias = beta * (sum_S w_i v_i - Phi),        variance = tau^2 * sum_S w_i^2,

and its forecast is sqrt(bias^2 + variance) / L (the relative bias is reported too). Where the pilot
cannot fit beta (fewer than three within-cluster degrees of freedom, or no spread of v inside its
clusters) the forecast says so instead of giving a number.

The losses are unknown; two sources stand in for them:

- A pilot: losses of p rows drawn uniformly (the user scored them), with each row's cluster and q_i.
  Then sum_i l_i^2 / q_i and L are estimated without bias by (n / p) sum_pilot l^2 / q and
  (n / p) sum_pilot l; S^2 by the pilot's variance; S_j^2 by the pilot rows of cluster j when it has
  at least two, else by the pilot's pooled within-cluster variance. Nothing is modelled.
- The k representatives' losses (loss-aware round 1): a per-cluster model, mean mu_j = l(r_j) and
  within-cluster variance sigma_j^2 from a semivariogram of the loss over the embedding,
  gamma(h) = c0 + c1 * h for squared distance h, fitted by least squares to
  (l(r_j) - l(r_j'))^2 / 2 over each representative's nearest other representatives. Since
  sigma_j^2 = mean over pairs i, i' in j of gamma(||x_i - x_i'||^2) and the mean squared distance of
  two rows of a cluster is 2 Q_j (Q_j = mean ||x_i - c_j||^2, from one aggregate),
  sigma_j^2 = c0 + 2 c1 Q_j. With H_j = sum_{i in j} 1 / q_i (one more aggregate) and the
  assumption that l_i and q_i are uncorrelated inside a cluster,
  sum_i l_i^2 / q_i = sum_j (mu_j^2 + sigma_j^2) H_j,  L = sum_j n_j mu_j,
  S^2 = sum_j n_j (sigma_j^2 + (mu_j - mu)^2) / (n - 1).
  A representative is the cluster's most central row, not a random one: where the loss is skewed
  (a few hard rows), l(r_j) sits below the cluster's mean, and the nugget c0 added to l(r_j)^2 makes
  up for part of that. Treating l(r_j) as a random row instead (E[l(r_j)^2] = mu_j^2 + c0, so c0
  cancels in sum_i l_i^2 / q_i) forecast 0.37x the realised RMSE of loss-aware sampling on
  Fashion-MNIST; this form forecast 1.1x (docs/FORECAST.md): it errs on the cautious side.

Intervals: 95 % percentile bootstrap, rescaled so that the replicates' median is the point
forecast (a resampled pilot repeats rows, which biases per-cluster variances down) and widened on
the log scale by INTERVAL_WIDENING, over the pilot rows, or over the clusters (each replicate
draws k clusters with replacement, with their sizes, representatives' losses and semivariogram
pairs). See docs/FORECAST.md for the validation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from spark_sensitivity.core.sampling.uniform import allocate

SCHEMES = ("sensitivity", "stratified", "uniform")
# Strategies whose subset is a deterministic function of the fit: forecast by their bias (module doc).
FIXED_SCHEMES = ("representatives", "prototypes")
# The forecast key of each strategy the select job writes (loss-aware draws as sensitivity does).
SCHEME_OF = {
    "sensitivity": "sensitivity",
    "loss-aware": "sensitivity",
    "stratified": "stratified",
    "representatives": "representatives",
    "prototypes": "prototypes",
}
BOOTSTRAP_ROUNDS = 200
# Each end of a bootstrap interval, as a ratio to the point forecast, is raised to this power (the
# interval widened on the log scale). Over 100 pilots of 500 rows the plain percentile interval held
# the exact RMSE in 89 % of cases for sensitivity and uniform on Fashion-MNIST's heavy-tailed losses
# (93-95 % on synthetic ones): a pilot that misses the tail cannot show it. 1.5 is the smallest tried
# (1.25, 1.5, ...) that held >= 95 % on both; docs/FORECAST.md ("Coverage") has the check on a third
# data set that did not set it.
INTERVAL_WIDENING = 1.5
NEIGHBOURS = 5


def sensitivity_relative_rmse(second_moment: float, total: float, m: int) -> float:
    """sqrt((sum l^2/q - L^2) / m) / L: the relative RMSE of m i.i.d. draws (module doc)."""
    return float(np.sqrt(max(second_moment - total**2, 0.0) / m) / abs(total))


def stratified_relative_rmse(sizes: np.ndarray, within_var: np.ndarray, m: int, mean: float) -> float | None:
    """Relative RMSE of proportional stratified sampling; None when m is below the non-empty clusters."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if m < int((sizes > 0).sum()) or m > sizes.sum():
        return None
    quotas = allocate(sizes.astype(np.int64), m).astype(np.float64)
    taken = quotas > 0
    n_j, m_j = sizes[taken], quotas[taken]
    variance = float((n_j**2 / m_j * (1.0 - m_j / n_j) * within_var[taken]).sum()) / sizes.sum() ** 2
    return float(np.sqrt(variance) / abs(mean))


def uniform_relative_rmse(variance: float, n: int, m: int, mean: float) -> float:
    """sqrt((1 - m/n) S^2 / m) / mean, m distinct rows of n."""
    m = min(m, n)
    return float(np.sqrt(max(1.0 - m / n, 0.0) * variance / m) / abs(mean))


@dataclass(frozen=True)
class SchemeForecast:
    """One scheme's predicted RMSE relative to the mean loss, with a 95 % bootstrap interval; for a
    deterministic subset also its relative bias, or a note saying why it cannot be forecast."""

    scheme: str
    relative_rmse: float | None
    low: float | None
    high: float | None
    relative_bias: float | None = None
    note: str | None = None

    def as_dict(self) -> dict:
        facts: dict = {"relative_rmse": self.relative_rmse, "interval_95": [self.low, self.high]}
        if self.scheme in FIXED_SCHEMES:
            facts["relative_bias"] = self.relative_bias
        if self.note:
            facts["note"] = self.note
        return facts


@dataclass(frozen=True)
class FixedSubset:
    """What the bias model needs of a deterministic subset (module doc): its strategy, sum_S w v,
    sum_S w^2, and the table's cost Phi = sum_i v_i."""

    strategy: str
    weighted_cost: float
    weight_squares: float
    total_cost: float


@dataclass(frozen=True)
class Forecast:
    """The schemes' forecasts at m draws, what they were computed from, and the strategy of the
    subset the run writes (``strategy``; its forecast is the scheme ``SCHEME_OF[strategy]``)."""

    source: str
    m: int
    n: int
    mean_loss: float
    schemes: tuple[SchemeForecast, ...]
    basis: int  # pilot rows, or representatives
    strategy: str | None = None  # None: no subset written (the numpy API)

    def get(self, scheme: str) -> SchemeForecast:
        return next(s for s in self.schemes if s.scheme == scheme)

    def with_strategy(self, strategy: str) -> Forecast:
        return dataclasses.replace(self, strategy=strategy)

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "scheme": None if self.strategy is None else SCHEME_OF.get(self.strategy, self.strategy),
            "source": self.source,
            "basis_rows": self.basis,
            "m": self.m,
            "n": self.n,
            "mean_loss": self.mean_loss,
            **{s.scheme: s.as_dict() for s in self.schemes},
        }


def describe(facts: dict) -> list[str]:
    """One line per scheme of a forecast's ``as_dict()``: 'sensitivity: 3.10 % (2.70 - 3.60 %)'; the
    scheme of the subset the run writes is marked '(written)'."""
    out = []
    written = facts.get("scheme")
    for scheme in (*SCHEMES, *FIXED_SCHEMES):
        if scheme not in facts:
            continue
        entry = facts[scheme]
        value, (low, high) = entry["relative_rmse"], entry["interval_95"]
        name = f"{scheme} (written)" if scheme == written else scheme
        bias = entry.get("relative_bias")
        bias_text = "" if bias is None else f", bias {100 * bias:+.2f} %"
        if value is None:
            out.append(f"{name}: n/a ({entry.get('note', 'm is below the number of clusters')})")
        elif low is None:
            out.append(f"{name}: {100 * value:.2f} %{bias_text}")
        else:
            out.append(f"{name}: {100 * value:.2f} % ({100 * low:.2f} - {100 * high:.2f} %){bias_text}")
    return out


def _interval(point: list[float | None], replicates: np.ndarray) -> list[tuple[float | None, float | None]]:
    """Percentile intervals rescaled so the replicates' median falls on the point forecast: resampled
    pilots repeat rows, which shrinks within-cluster variances, so raw percentiles sit too low."""
    out = []
    for j, value in enumerate(point):
        column = replicates[:, j]
        column = column[np.isfinite(column)]
        median = float(np.median(column)) if column.size else 0.0
        if value is None or median <= 0:
            out.append((None, None))
        else:
            low, high = np.percentile(column, [2.5, 97.5]) / median
            out.append((float(value * low**INTERVAL_WIDENING), float(value * high**INTERVAL_WIDENING)))
    return out


def _assemble(source: str, m: int, sizes: np.ndarray, mean: float, point, replicates, basis: int) -> Forecast:
    intervals = _interval(point, np.array(replicates, dtype=np.float64))
    schemes = tuple(
        SchemeForecast(name, value, low, high)
        for name, value, (low, high) in zip(SCHEMES, point, intervals, strict=True)
    )
    return Forecast(source, m, int(np.sum(sizes)), float(mean), schemes, basis)


def within_slope(clusters: np.ndarray, losses: np.ndarray, costs: np.ndarray) -> tuple[float, float] | None:
    """(beta, tau^2): the slope of the loss on the cost inside clusters and the residual variance,
    from the pilot rows of clusters with at least two of them; None when they cannot be fitted."""
    counts = np.bincount(clusters)
    keep = counts[clusters] >= 2
    clusters, losses, costs = clusters[keep], losses[keep], costs[keep]
    dof = len(losses) - len(np.unique(clusters)) - 1
    if dof < 2:
        return None
    size = np.maximum(np.bincount(clusters), 1)
    centred_loss = losses - (np.bincount(clusters, weights=losses) / size)[clusters]
    centred_cost = costs - (np.bincount(clusters, weights=costs) / size)[clusters]
    spread = float((centred_cost**2).sum())
    if spread <= 0:
        return None
    slope = float((centred_loss * centred_cost).sum() / spread)
    residual = float(((centred_loss - slope * centred_cost) ** 2).sum()) / dof
    return slope, residual


def fixed_subset_error(
    clusters: np.ndarray, losses: np.ndarray, costs: np.ndarray, fixed: FixedSubset, n: float
) -> tuple[float, float] | None:
    """(relative RMSE, relative bias) of a deterministic subset's estimate of the mean loss (module
    doc), or None when the pilot cannot fit the within-cluster slope."""
    fitted = within_slope(clusters, losses, costs)
    total = n * float(losses.mean())
    if fitted is None or total == 0:
        return None
    slope, residual = fitted
    bias = slope * (fixed.weighted_cost - fixed.total_cost)
    rmse = float(np.sqrt(bias**2 + residual * fixed.weight_squares))
    return rmse / abs(total), bias / abs(total)


def _fixed_forecast(
    clusters: np.ndarray,
    losses: np.ndarray,
    costs: np.ndarray,
    fixed: FixedSubset,
    n: float,
    rng: np.random.Generator,
    rounds: int,
) -> SchemeForecast:
    """The deterministic subset's forecast, its interval a bootstrap over the pilot rows."""
    point = fixed_subset_error(clusters, losses, costs, fixed, n)
    if point is None:
        note = (
            "cannot be estimated: the pilot has too few rows sharing a cluster (or no spread of the "
            "cost inside them) to fit how the loss changes towards the center"
        )
        return SchemeForecast(fixed.strategy, None, None, None, None, note)
    replicates = []
    for _ in range(rounds):
        pick = rng.integers(0, len(losses), size=len(losses))
        value = fixed_subset_error(clusters[pick], losses[pick], costs[pick], fixed, n)
        replicates.append([np.nan if value is None else value[0]])
    ((low, high),) = _interval([point[0]], np.array(replicates, dtype=np.float64))
    return SchemeForecast(fixed.strategy, point[0], low, high, point[1])


def _pilot_point(
    sizes: np.ndarray, clusters: np.ndarray, losses: np.ndarray, probabilities: np.ndarray, m: int
) -> tuple[list[float | None], float]:
    n, p = float(sizes.sum()), len(losses)
    mean = float(losses.mean())
    if mean == 0:
        return [None, None, None], mean
    total = n * mean
    second = n / p * float((losses**2 / probabilities).sum())
    counts = np.bincount(clusters, minlength=len(sizes)).astype(np.float64)
    sums = np.bincount(clusters, weights=losses, minlength=len(sizes))
    cluster_mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    squares = np.bincount(clusters, weights=(losses - cluster_mean[clusters]) ** 2, minlength=len(sizes))
    dof = np.maximum(counts - 1.0, 0.0)
    pooled = squares.sum() / dof.sum() if dof.sum() > 0 else float(losses.var(ddof=1))
    within = np.where(counts >= 2, np.divide(squares, np.maximum(dof, 1.0)), pooled)
    return [
        sensitivity_relative_rmse(second, total, m),
        stratified_relative_rmse(sizes, within, m, mean),
        uniform_relative_rmse(float(losses.var(ddof=1)), int(n), m, mean),
    ], mean


def from_pilot(
    sizes: np.ndarray,
    clusters: np.ndarray,
    losses: np.ndarray,
    probabilities: np.ndarray,
    m: int,
    seed: int = 0,
    rounds: int = BOOTSTRAP_ROUNDS,
    *,
    costs: np.ndarray | None = None,
    fixed: FixedSubset | None = None,
) -> Forecast:
    """The forecast from a uniform pilot: each pilot row's cluster, loss and sampling probability q_i.

    ``sizes`` are the clusters' n_j. With ``fixed`` (a deterministic subset) and the pilot rows'
    ``costs`` v_i, the forecast also covers that subset (module doc). Raises ValueError for fewer
    than two pilot rows or a zero mean.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    clusters, losses = np.asarray(clusters, dtype=np.int64), np.asarray(losses, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(losses) < 2:
        raise ValueError(f"a pilot needs at least 2 rows with a loss, got {len(losses)}")
    point, mean = _pilot_point(sizes, clusters, losses, probabilities, m)
    if mean == 0:
        raise ValueError("the pilot's mean loss is 0: a relative error is undefined")
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(rounds):
        pick = rng.integers(0, len(losses), size=len(losses))
        values, _ = _pilot_point(sizes, clusters[pick], losses[pick], probabilities[pick], m)
        replicates.append([np.nan if v is None else v for v in values])
    result = _assemble("pilot", m, sizes, mean, point, replicates, len(losses))
    if fixed is None:
        return result
    if costs is None:
        raise ValueError("a forecast of a deterministic subset needs the pilot rows' costs")
    costs = np.asarray(costs, dtype=np.float64)
    extra = _fixed_forecast(clusters, losses, costs, fixed, float(sizes.sum()), rng, rounds)
    return dataclasses.replace(result, schemes=(*result.schemes, extra), strategy=fixed.strategy)


def neighbour_pairs(points: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """(pairs, 2) index pairs i < j linking each point to its ``neighbours`` nearest other points."""
    count = len(points)
    neighbours = min(neighbours, count - 1)
    if neighbours < 1:
        return np.zeros((0, 2), dtype=np.int64)
    squared = (points**2).sum(axis=1)
    pairs = []
    for start in range(0, count, 1024):  # blocks keep the distance matrix at 1024 x k
        block = points[start : start + 1024]
        d = squared[start : start + len(block), None] + squared[None, :] - 2.0 * block @ points.T
        d[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.argpartition(d, neighbours - 1, axis=1)[:, :neighbours]
        rows = np.repeat(np.arange(start, start + len(block)), neighbours)
        pairs.append(np.stack([rows, nearest.ravel()], axis=1))
    both = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(both, axis=0)


def fit_semivariogram(
    squared_distance: np.ndarray, semivariance: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """Weighted least squares gamma(h) = c0 + c1 h with c0, c1 >= 0 (a clipped fit refits the other)."""
    h, y = np.asarray(squared_distance, dtype=np.float64), np.asarray(semivariance, dtype=np.float64)
    w = np.ones_like(h) if weights is None else np.asarray(weights, dtype=np.float64)
    h, y, w = h[w > 0], y[w > 0], w[w > 0]
    if h.size == 0:
        return 0.0, 0.0
    mean_y = float((w * y).sum() / w.sum())
    if h.size >= 2 and np.ptp(h) > 0:
        c1, c0 = np.polyfit(h, y, 1, w=np.sqrt(w))
    else:
        c1, c0 = 0.0, mean_y
    if c1 < 0:
        return mean_y, 0.0
    if c0 < 0:
        return 0.0, float((w * h * y).sum() / (w * h * h).sum())
    return float(c0), float(c1)


def _model_point(
    sizes: np.ndarray,
    means: np.ndarray,
    spread: np.ndarray,
    inverse_q: np.ndarray,
    c0: float,
    c1: float,
    m: int,
) -> list[float | None]:
    within = c0 + 2.0 * c1 * spread  # population variance sigma_j^2 (module doc)
    n = float(sizes.sum())
    total = float((sizes * means).sum())
    if total == 0:
        return [None, None, None]
    mean = total / n
    second = float(((means**2 + within) * inverse_q).sum())
    sample_var = np.where(sizes > 1, within * sizes / np.maximum(sizes - 1.0, 1.0), 0.0)
    overall = float((sizes * (within + (means - mean) ** 2)).sum()) / max(n - 1.0, 1.0)
    return [
        sensitivity_relative_rmse(second, total, m),
        stratified_relative_rmse(sizes, sample_var, m, mean),
        uniform_relative_rmse(overall, int(n), m, mean),
    ]


def from_representatives(
    sizes: np.ndarray,
    rep_losses: np.ndarray,
    rep_vectors: np.ndarray,
    spread: np.ndarray,
    inverse_q: np.ndarray,
    m: int,
    seed: int = 0,
    rounds: int = BOOTSTRAP_ROUNDS,
) -> Forecast:
    """The forecast from the representatives' losses and per-cluster statistics only (module doc).

    Arrays are indexed by cluster id: ``rep_losses`` l(r_j) (any value for empty clusters),
    ``rep_vectors`` r_j, ``spread`` Q_j = mean ||x_i - c_j||^2, ``inverse_q`` H_j = sum_{i in j} 1/q_i.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    means = np.asarray(rep_losses, dtype=np.float64)
    present = np.flatnonzero(sizes > 0)
    pairs = present[neighbour_pairs(np.asarray(rep_vectors, dtype=np.float64)[present])]
    if len(pairs) == 0:
        raise ValueError("a forecast from representatives needs at least 2 non-empty clusters")
    diff = rep_vectors[pairs[:, 0]] - rep_vectors[pairs[:, 1]]
    h = np.einsum("ij,ij->i", diff, diff)
    y = 0.5 * (means[pairs[:, 0]] - means[pairs[:, 1]]) ** 2
    spread, inverse_q = np.asarray(spread, dtype=np.float64), np.asarray(inverse_q, dtype=np.float64)
    point = _model_point(sizes, means, spread, inverse_q, *fit_semivariogram(h, y), m)
    if point[0] is None:
        raise ValueError("the representatives' losses are all 0: a relative error is undefined")
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(rounds):  # resample whole clusters: their means, sizes and variogram pairs
        times = np.zeros(len(sizes))
        times[present] = rng.multinomial(len(present), np.full(len(present), 1.0 / len(present)))
        c0, c1 = fit_semivariogram(h, y, times[pairs[:, 0]] * times[pairs[:, 1]])
        values = _model_point(sizes * times, means, spread, inverse_q * times, c0, c1, m)
        replicates.append([np.nan if v is None else v for v in values])
    mean = float((sizes * means).sum() / sizes.sum())
    return _assemble("representatives", m, sizes, mean, point, replicates, len(present))
