"""Validates the forecast (spark_sensitivity.core.forecasting.forecast) against the realised RMSE of each scheme.

Regenerates docs/FORECAST.md, section "Validation" (markers ``validation``). From the repository
root:

    python -m benchmarks.experiments.forecast_validation --quick   # synthetic only, 100 seeds, leaves docs/ alone
    python -m benchmarks.experiments.forecast_validation           # both, 500 seeds, updates docs/FORECAST.md

For each data set, sampling rule and m: the forecast from a uniform pilot of user losses and, for
the loss-aware rule, from the k representatives' losses alone; the realised RMSE of the relative
error of the mean-loss estimate over many seeded draws, drawn in numpy exactly as the library draws
(m i.i.d. draws from q with weight 1 / (m q); m_j rows of each cluster without replacement from
``uniform.allocate``; m distinct rows uniformly); and the exact RMSE from the true losses.

Data: (a) synthetic blobs where the loss is a smooth function of the embedding plus noise (two
noise levels); (b) Fashion-MNIST with the logistic-regression loss of
``loss_estimation`` (experiment (a)) on 50 PCA components of the pixels.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO
from spark_sensitivity.core.forecasting import forecast
from spark_sensitivity.core.kmeans import localkmeans
from spark_sensitivity.core.sampling.lossaware import LossAwareSensitivity
from spark_sensitivity.core.sampling.score import ClusterStats
from spark_sensitivity.core.sampling.uniform import allocate

DOC = REPO / "docs" / "FORECAST.md"
PILOT = 500
K = 100


def synthetic(noise: float, seed: int = 0, n: int = 50_000, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Blobs of different spreads; loss = softplus of a random direction + noise * Exp(1)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(60, dim))
    component = rng.integers(0, 60, size=n)
    x = means[component] + rng.normal(size=(n, dim)) * rng.uniform(0.5, 1.5, size=60)[component, None]
    loss = np.log1p(np.exp(0.4 * x @ rng.normal(size=dim) / np.sqrt(dim) * 3)) + noise * rng.exponential(
        size=n
    )
    return x, loss


def fashion() -> tuple[np.ndarray, np.ndarray]:
    from benchmarks.common import fashion_pca
    from benchmarks.experiments.loss_estimation import classifier_losses

    data = fashion_pca()
    losses, _ = classifier_losses(data)
    return data["x"], losses


class Clustering:
    """k-means on all rows (the driver engine's numpy code), and the per-cluster facts."""

    def __init__(self, x: np.ndarray, k: int, seed: int = 0):
        order = np.random.default_rng(seed).permutation(len(x))
        centers, _, _ = localkmeans.fit(x[order].astype(np.float32), k, 20, 1e-4, "k-means||", 2, seed)
        self.x = x
        self.centers = centers.astype(np.float64)
        self.cluster = localkmeans.nearest(x.astype(np.float32), centers.astype(np.float32))
        self.cost = ((x - self.centers[self.cluster]) ** 2).sum(axis=1)
        self.sizes = np.bincount(self.cluster, minlength=k)
        present = np.flatnonzero(self.sizes)
        self.reps = np.full(k, -1)
        for j in present:
            rows = np.flatnonzero(self.cluster == j)
            self.reps[j] = rows[np.argmin(self.cost[rows])]

    def model_free_q(self) -> np.ndarray:
        stats = ClusterStats(
            self.sizes, np.bincount(self.cluster, weights=self.cost, minlength=len(self.sizes))
        )
        s = stats.sensitivity(self.cluster, self.cost)
        return s / s.sum()

    def loss_aware_q(self, loss: np.ndarray) -> np.ndarray:
        """q_i of the loss-aware rule (balanced lambda, 10 % uniform share), rows to their center's rep."""
        rep_vectors = self.x[np.maximum(self.reps, 0)]
        distance = ((self.x - rep_vectors[self.cluster]) ** 2).sum(axis=1)
        proxy = np.where(self.reps >= 0, loss[np.maximum(self.reps, 0)], 0.0)
        k = len(self.sizes)
        scorer = LossAwareSensitivity.balanced(
            self.sizes, np.bincount(self.cluster, weights=distance, minlength=k), proxy
        )
        s = scorer.sensitivity(self.cluster, distance)
        return s / s.sum()


def realised(c: Clustering, loss: np.ndarray, q: np.ndarray, m: int, seeds: int) -> dict[str, float]:
    """RMSE of the relative error over ``seeds`` seeded draws of each scheme, drawn as the library does."""
    rng = np.random.default_rng(1234 + m)
    n, mean = len(loss), loss.mean()
    out = {}
    estimates = np.array([(rng.multinomial(m, q) * loss / (m * q)).sum() / n for _ in range(seeds)])
    out["sensitivity"] = float(np.sqrt(np.mean((estimates / mean - 1) ** 2)))
    if m >= int((c.sizes > 0).sum()):
        quotas = allocate(c.sizes, m)
        totals = np.zeros(seeds)
        for j in np.flatnonzero(quotas):
            rows = np.flatnonzero(c.cluster == j)
            keys = rng.random((seeds, len(rows)))
            picked = np.argpartition(keys, quotas[j] - 1, axis=1)[:, : quotas[j]]
            totals += loss[rows][picked].sum(axis=1) * c.sizes[j] / quotas[j]
        out["stratified"] = float(np.sqrt(np.mean((totals / n / mean - 1) ** 2)))
    else:
        out["stratified"] = None
    uniform = np.array([loss[rng.choice(n, size=m, replace=False)].mean() for _ in range(seeds)])
    out["uniform"] = float(np.sqrt(np.mean((uniform / mean - 1) ** 2)))
    return out


def exact(c: Clustering, loss: np.ndarray, q: np.ndarray, m: int) -> dict[str, float | None]:
    within = np.array(
        [loss[c.cluster == j].var(ddof=1) if c.sizes[j] > 1 else 0.0 for j in range(len(c.sizes))]
    )
    return {
        "sensitivity": forecast.sensitivity_relative_rmse(float((loss**2 / q).sum()), float(loss.sum()), m),
        "stratified": forecast.stratified_relative_rmse(c.sizes, within, m, float(loss.mean())),
        "uniform": forecast.uniform_relative_rmse(float(loss.var(ddof=1)), len(loss), m, float(loss.mean())),
    }


def validate(name: str, x: np.ndarray, loss: np.ndarray, sizes_m: list[int], seeds: int) -> list[dict]:
    started = time.perf_counter()
    c = Clustering(x, K)
    pilot = np.random.default_rng(7).choice(len(loss), size=PILOT, replace=False)
    spread = np.bincount(c.cluster, weights=c.cost, minlength=K) / np.maximum(c.sizes, 1)
    rows = []
    for rule, q in (("model-free", c.model_free_q()), ("loss-aware", c.loss_aware_q(loss))):
        inverse_q = np.bincount(c.cluster, weights=1.0 / q, minlength=K)
        rep_losses = np.where(c.reps >= 0, loss[np.maximum(c.reps, 0)], 0.0)
        for m in sizes_m:
            forecasts = {"pilot": forecast.from_pilot(c.sizes, c.cluster[pilot], loss[pilot], q[pilot], m)}
            if rule == "loss-aware":
                forecasts["representatives"] = forecast.from_representatives(
                    c.sizes, rep_losses, x[np.maximum(c.reps, 0)], spread, inverse_q, m
                )
            truth = realised(c, loss, q, m, seeds)
            formula = exact(c, loss, q, m)
            for source, result in forecasts.items():
                for scheme in forecast.SCHEMES:
                    predicted = result.get(scheme)
                    if predicted.relative_rmse is None or truth[scheme] is None:
                        continue
                    rows.append({
                        "data": name, "rule": rule, "m": m, "source": source, "scheme": scheme,
                        "forecast": predicted.relative_rmse, "low": predicted.low, "high": predicted.high,
                        "realised": truth[scheme], "exact": formula[scheme],
                        "ratio": predicted.relative_rmse / truth[scheme],
                        "ratio_exact": predicted.relative_rmse / formula[scheme],
                        "covered": predicted.low <= truth[scheme] <= predicted.high,
                        "covered_exact": predicted.low <= formula[scheme] <= predicted.high,
                    })  # fmt: skip
                    print(f"{name:22s} {rule:10s} m={m:5d} {source:15s} {scheme:11s} forecast "
                          f"{predicted.relative_rmse:.4f} realised {truth[scheme]:.4f} ratio "
                          f"{rows[-1]['ratio']:.2f}", flush=True)  # fmt: skip
    print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def section(rows: list[dict], seeds: int) -> str:
    header = (
        "| data | rule | m | forecast from | scheme | forecast (95 % interval) | realised | exact "
        "| forecast / realised | forecast / exact |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['rule']} | {r['m']} | {r['source']} | {r['scheme']} | "
            f"{r['forecast']:.4f} ({r['low']:.4f}-{r['high']:.4f}) | {r['realised']:.4f} | {r['exact']:.4f} | "
            f"{r['ratio']:.2f} | {r['ratio_exact']:.2f}{'' if r['covered_exact'] else ' (outside)'} |"
        )
    summary = []
    for source in ("pilot", "representatives"):
        for data in dict.fromkeys(r["data"] for r in rows):
            mine = [r for r in rows if r["source"] == source and r["data"] == data]
            if not mine:
                continue
            ratios = np.array([r["ratio"] for r in mine])
            exact_ratios = np.array([r["ratio_exact"] for r in mine])
            covered = sum(r["covered_exact"] for r in mine)
            summary.append(
                f"- {data}, forecast from the {source}: {int((np.abs(ratios - 1) <= 0.15).sum())} of "
                f"{len(mine)} forecasts within 15 % of the realised RMSE (ratios {ratios.min():.2f}-"
                f"{ratios.max():.2f}), {int((np.abs(exact_ratios - 1) <= 0.15).sum())} within 15 % of the "
                f"exact one ({exact_ratios.min():.2f}-{exact_ratios.max():.2f}); the exact RMSE inside "
                f"the 95 % interval in {covered} of {len(mine)}."
            )
    return (
        f"Realised RMSE over {seeds} seeded draws per row (its own sampling error is about "
        f"{100 / np.sqrt(2 * seeds):.0f} % of it; 'exact' is the formula with every row's true loss, "
        f"what the realised RMSE tends to with more seeds); pilot of {PILOT} uniform rows; k = {K}.\n\n"
        + "\n".join(summary)
        + "\n\n"
        + "\n".join(lines)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic only, 100 seeds; leaves docs/ alone")
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeded draws per point (default 500, quick 100)"
    )
    parser.add_argument(
        "--workdir", default="runs/experiments", help="raw results (default: runs/experiments)"
    )
    args = parser.parse_args()
    seeds = args.seeds or (100 if args.quick else 500)
    started = time.perf_counter()
    sizes_m = [200, 1000, 5000]
    rows = []
    for noise in (0.2, 1.0):
        x, loss = synthetic(noise)
        rows += validate(f"synthetic, noise {noise}", x, loss, sizes_m, seeds)
    if not args.quick:
        x, loss = fashion()
        rows += validate("Fashion-MNIST pixels", x, loss, sizes_m, seeds)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "forecast_validation.json").write_text(json.dumps(rows, indent=1, default=bool))
    text = section(rows, seeds)
    print(text)
    if not args.quick:
        start, end = "<!-- validation:start -->", "<!-- validation:end -->"
        doc = DOC.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        DOC.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", doc), encoding="utf-8")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
