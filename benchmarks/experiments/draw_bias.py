"""Is the i.i.d. draw (``sample.draw`` / ``evaluate.repeated_draws``) unbiased? Two checks, many seeds.

Feeds docs/RESULTS.md, section "(a) Estimating the average loss" (the check of the draw quoted
there; prints only). From the repository root:

    python -m benchmarks.experiments.draw_bias numpy --m 100 --seeds 20000
    python -m benchmarks.experiments.draw_bias spark --m 20 --seeds 2000

1. ``numpy``: the candidate mechanism itself (Poisson candidates per row, the m smallest keys, the
   retry when fewer than m candidates come up) with the project's ``rowrandom`` streams, on a
   heavy-tailed loss unrelated to the probabilities, next to numpy's multinomial on the same q.
2. ``spark``: the Spark path of ``evaluate.repeated_draws`` on a k-means model of blobs, with a loss
   close to proportional to the model-free sensitivity (so the estimator's variance is small and a
   bias of a fraction of a percent would show).

Prints the mean relative error of the weighted estimate of the mean loss, with its standard error.
"""

from __future__ import annotations

import argparse

import numpy as np

from spark_sensitivity.core.sampling import rowrandom, sample


def _hashes(ids: np.ndarray, seed: int) -> np.ndarray:
    """A 64-bit hash per (id, seed), standing in for Spark's xxhash64 in the numpy check."""
    seeded = rowrandom.uniforms(np.array([seed]), 0).view(np.uint64)[0]
    return rowrandom.uniforms(ids, 0).view(np.uint64) ^ seeded


def _numpy_draw(q: np.ndarray, hashes: np.ndarray, m: int) -> np.ndarray:
    """The rows drawn: as ``sample.candidates_frame`` plus the ordering ``sample.draw`` keeps."""
    for attempt in range(sample.MAX_ATTEMPTS):
        counts = rowrandom.poisson(
            sample.poisson_rate(m, attempt) * q, hashes, rowrandom.STREAM_DRAW_COUNT + (attempt << 8)
        )
        rows = np.flatnonzero(counts)
        repeated = np.repeat(rows, counts[rows])
        first = np.repeat(np.cumsum(counts[rows]) - counts[rows], counts[rows])
        index = np.arange(repeated.size) - first
        keys = rowrandom.uniforms(hashes[repeated], rowrandom.STREAM_DRAW_ORDER + (attempt << 8), index)
        if repeated.size >= m:
            return repeated[np.lexsort((index, hashes[repeated], keys))[:m]]
    raise RuntimeError("too few candidates")


def numpy_check(m: int, seeds: int, n: int = 3000) -> dict[str, float]:
    rng = np.random.default_rng(0)
    q = rng.lognormal(0, 1.0, n)
    q /= q.sum()
    loss = rng.lognormal(0, 1.5, n)
    ids = np.arange(n, dtype=np.int64)

    def relative(chosen: np.ndarray) -> float:
        return float((loss[chosen] / (m * q[chosen])).sum() / n / loss.mean() - 1)

    mine = np.array([relative(_numpy_draw(q, _hashes(ids, s), m)) for s in range(seeds)])
    theirs = np.array(
        [relative(np.random.default_rng(10**6 + s).choice(n, size=m, p=q)) for s in range(seeds)]
    )
    return {
        "project_mean": float(mine.mean()),
        "project_se": float(mine.std(ddof=1) / np.sqrt(seeds)),
        "multinomial_mean": float(theirs.mean()),
        "multinomial_se": float(theirs.std(ddof=1) / np.sqrt(seeds)),
    }


def spark_check(m: int, seeds: int, n: int = 3000) -> dict[str, float]:
    from benchmarks.common import spark_session
    from spark_sensitivity import SensitivitySampler
    from spark_sensitivity.workflows import evaluate

    spark = spark_session()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)) + rng.integers(0, 6, size=(n, 1)) * 3.0
    schema = "id long, embedding array<double>, loss double"
    frame = spark.createDataFrame([(i, x[i].tolist(), 1.0) for i in range(n)], schema)
    model = SensitivitySampler(k=10, seed=1).fit(frame)
    assigned = model.summary.assignments.toPandas().sort_values("id")
    stats = model.clusterStats
    clusters = assigned["cluster_id"].to_numpy()
    s = assigned["cost"].to_numpy() / stats.total_cost + 1.0 / np.asarray(stats.sizes)[clusters]
    loss = s * rng.lognormal(0, 0.3, n)
    table = evaluate.LossTable(
        spark.createDataFrame([(i, x[i].tolist(), float(loss[i])) for i in range(n)], schema),
        "id",
        "embedding",
        "loss",
    )
    draws = evaluate.repeated_draws(model.summary.assignments, stats, m, list(range(seeds)), "id")
    rel = (np.array(table.estimates(draws, list(range(seeds)))) - table.true_mean) / table.true_mean
    return {"spark_mean": float(rel.mean()), "spark_se": float(rel.std(ddof=1) / np.sqrt(seeds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=("numpy", "spark"))
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=2000)
    args = parser.parse_args()
    result = numpy_check(args.m, args.seeds) if args.check == "numpy" else spark_check(args.m, args.seeds)
    print(
        {"check": args.check, "m": args.m, "seeds": args.seeds, **{k: round(v, 5) for k, v in result.items()}}
    )


if __name__ == "__main__":
    main()
