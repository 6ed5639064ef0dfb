"""Experiment (c): Fashion-MNIST test accuracy of a classifier trained on the selected subset.

Budgets B from 100 to 3,000 of the 60,000 training images. The classifier is a logistic regression on
50 PCA components of the pixels (standardized), trained on the subset twice: with the selection's
weights normalised to mean 1 (``w / mean(w)``) and unweighted; test accuracy on the 10,000 test
images. Every seed re-seeds everything: the k-means fits, the draws, the pools and the warm-up sets.
Every selection runs through the project's Spark code:

- uniform: B distinct images.
- the strategies of ``select --strategy`` on k-means of the PCA pixels (driver engine, the default):
  sensitivity (k = 100, B draws; rows drawn twice are labelled once), stratified (k = 100),
  prototypes (k = 100; the nearest rows at these budgets), representatives (k = B), and auto (the
  strategy and k that ``strategies.resolve('auto', None, B)`` picks; the same runs as that strategy).
- prototypes, hardest (diagnostic): the farthest rows of each cluster instead, to check the rule
  that keeps the nearest at small budgets.
- loss-aware: a warm-up model on B/5 uniform images supplies the loss on k = B/5 representatives;
  then B - 2B/5 draws with the loss-aware sensitivity; the training set is warm-up + representatives
  + samples (warm-up and undrawn representatives carry n/B in the weighted variant).
- k-center greedy on the PCA pixels (farthest-first on a uniform pool of 10,000 images).
- margin and entropy: the warm-up model scores every image; the B - B/5 least sure are added
  (inference on all n images). These three have no weights.

``--representation cnn`` replaces the PCA pixels everywhere (selection, k-center, warm-up models and
the classifier) by PCA-50 of the standardized EfficientNet-Lite0 features
(``image_features.fashion_cnn``; run ``image_features.py extract`` first); its results go to their
own section of docs/RESULTS.md (markers ``experiment-c-cnn``) and figure.

``--dedup-eps E`` (issue 14) runs every seed twice on the same seeds: on the whole training set, and
after deduplicating it with the project's dedup step (``dedup_job.deduplicate``, as
``select --dedup-eps E`` does: k = 100 clusters of the unit vectors, the seed's k-means fit, one row
kept per group of near-duplicates, farthest from its center first), every method then selecting from
the kept rows only. The classifier and the test set are the same in both arms. Its section has the
markers ``experiment-c-dedup``. ``--methods`` restricts the methods (uniform always runs).

    python benchmarks/experiment_classification.py --quick   # 2 budgets x 2 seeds, leaves docs/ alone
    python benchmarks/experiment_classification.py           # 4 budgets x 10 seeds, updates docs/RESULTS.md
    python benchmarks/experiment_classification.py --representation cnn --workdir runs/experiments-cnn
    python benchmarks/experiment_classification.py --dedup-eps 0.01 --budgets 100 1000 \
        --methods strategies margin --workdir runs/experiments-dedup
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from experiment_common import (
    FIGURES,
    fashion_pca,
    markdown_table,
    replace_section,
    spark_session,
    standardizer,
    summarize,
    write_table,
)
from image_features import fashion_cnn
from sklearn.linear_model import LogisticRegression

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.core import baselines, lossaware, strategies
from spark_sensitivity.settings import DedupConfig
from spark_sensitivity.workflows.dedup import deduplicate

WARMUP_SHARE = 5  # warm-up and loss-aware representatives each take B / 5 of the budget
CLUSTERS = strategies.DEFAULT_K
WEIGHTED = " (weighted)"
REPRESENTATIONS = {"pixels": fashion_pca, "cnn": fashion_cnn}  # what selection and classifier see
REPRESENTATION_TEXT = {
    "pixels": "50 PCA components of the pixels",
    "cnn": "50 PCA components of the standardized EfficientNet-Lite0 features",
}
# --methods: groups of methods besides uniform (which always runs)
METHOD_GROUPS = ("strategies", "hardest", "k-center", "margin", "loss-aware")
DEDUP = " | dedup"  # suffix of a method's name in the dedup arm


class Harness:
    def __init__(self, spark, workdir: Path, representation: str = "pixels"):
        self.spark = spark
        self.data = REPRESENTATIONS[representation]()
        self.col = representation
        self.scale = standardizer(self.data["x"])
        self.x, self.y = self.scale(self.data["x"]), self.data["y"]
        self.x_test, self.y_test = self.scale(self.data["x_test"]), self.data["y_test"]
        self.n = len(self.y)
        path = write_table(
            workdir / f"fashion-{representation}", {"id": np.arange(self.n), self.col: self.data["x"]}
        )
        self.everything = self.frame = spark.read.parquet(path).persist()
        self.frame.count()
        self.pool: np.ndarray | None = None  # the ids selection draws from (None: every row)
        self.workdir = workdir
        self.models: dict[int, object] = {}

    def use_pool(self, ids: np.ndarray | None) -> None:
        """Selection draws from these rows only from now on (None: all rows again)."""
        self.release()
        if self.frame is not self.everything:
            self.frame.unpersist()
        self.pool = None if ids is None else np.sort(ids)
        if ids is None:
            self.frame, self.n = self.everything, len(self.y)
            return
        keep = self.spark.createDataFrame([(int(i),) for i in self.pool], "id long")
        self.frame = self.everything.join(keep, on="id", how="inner").persist()
        self.n = self.frame.count()

    def dedup(self, eps: float, seed: int, keep: str = "farthest") -> tuple[np.ndarray, dict]:
        """The ids kept by the project's dedup step (k = 100, this seed) and its facts."""
        target = self.workdir / f"duplicates-{seed}"
        shutil.rmtree(target, ignore_errors=True)
        config = DedupConfig(
            input="fashion", output=str(target), dedup_eps=eps, k=CLUSTERS, id_col="id",
            vector_col=self.col, seed=seed, dedup_keep=keep,
        )  # fmt: skip
        kept, info = deduplicate(self.everything, config, str(target))
        ids = self.ids(kept)
        info = {key: info[key] for key in ("removed_rows", "kept_rows", "largest_cluster", "dedup_seconds")}
        removed = self.spark.read.parquet(str(target)).select("id", "duplicate_of").toPandas()
        info["removed_same_label"] = float(
            (self.y[removed.id.to_numpy()] == self.y[removed.duplicate_of.to_numpy()]).mean()
        )
        return ids, info

    def accuracy(self, ids: np.ndarray, weights: np.ndarray | None = None) -> float:
        sample_weight = None if weights is None else weights / weights.mean()
        model = LogisticRegression(max_iter=1000).fit(self.x[ids], self.y[ids], sample_weight=sample_weight)
        return float((model.predict(self.x_test) == self.y_test).mean())

    def fit(self, k: int, seed: int):
        """k-means with this seed (fit sample, init); cached for the seed, released by :meth:`release`."""
        if k not in self.models:
            self.models[k] = SensitivitySampler(
                idCol="id", featuresCol=self.col, k=k, seed=seed, pointsPerCenter=50, initMode="random"
            ).fit(self.frame)
        return self.models[k]

    def release(self) -> None:
        for model in self.models.values():
            model.summary.release()
        self.models = {}

    def ids(self, frame, column: str = "id") -> np.ndarray:
        return np.array([r[column] for r in frame.select(column).collect()], dtype=np.int64)

    def warm_model(self, warm: np.ndarray) -> LogisticRegression:
        return LogisticRegression(max_iter=1000).fit(self.x[warm], self.y[warm])

    def probabilities_frame(self, model: LogisticRegression, tag: str):
        ids = np.arange(len(self.y)) if self.pool is None else self.pool
        path = write_table(
            self.workdir / f"probs-{tag}", {"id": ids, "probs": model.predict_proba(self.x[ids])}
        )
        return self.spark.read.parquet(path)


def picked(model, strategy: str, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids and weights the model's ``strategy`` picks (a row drawn twice is labelled once)."""
    model.set(model.strategy, strategy)
    rows = model.sample(budget, seed=seed).select("id", "weight").toPandas()
    return rows.id.to_numpy(), rows.weight.to_numpy()


def both(out: dict[str, float], h: Harness, name: str, ids: np.ndarray, weights: np.ndarray) -> None:
    out[name] = h.accuracy(ids)
    out[name + WEIGHTED] = h.accuracy(ids, weights)


def select_and_score(
    h: Harness, budget: int, seed: int, methods: tuple[str, ...] = METHOD_GROUPS
) -> dict[str, float]:
    out: dict[str, float] = {}
    out["uniform"] = h.accuracy(h.ids(baselines.uniform(h.frame, "id", budget, seed)))

    if "strategies" in methods or "hardest" in methods:
        model = h.fit(CLUSTERS, seed)
    if "strategies" in methods:
        for strategy in (strategies.SENSITIVITY, strategies.STRATIFIED, strategies.PROTOTYPES):
            both(out, h, strategy, *picked(model, strategy, budget, seed))
    if "hardest" in methods:
        hardest = strategies.prototypes(
            model.summary.assignments, model.clusterStats, budget, seed, "id", hardest=True
        ).frame.toPandas()
        both(out, h, "prototypes, hardest (diagnostic)", hardest.id.to_numpy(), hardest.weight.to_numpy())
    if "strategies" in methods:
        reps_model = h.fit(budget, seed) if budget != CLUSTERS else model
        picks = picked(reps_model, strategies.REPRESENTATIVES, budget, seed)
        both(out, h, strategies.REPRESENTATIVES, *picks)

    if "k-center" in methods:
        out["k-center greedy"] = h.accuracy(
            h.ids(baselines.k_center_greedy(h.frame, "id", h.col, budget, seed, pool_size=10_000))
        )

    if "margin" not in methods and "loss-aware" not in methods:
        return out
    w = budget // WARMUP_SHARE
    warm_frame = baselines.uniform(h.frame, "id", w, seed + 1000)
    warm = h.ids(warm_frame)
    warm_model = h.warm_model(warm)
    if "margin" in methods:
        probs = h.probabilities_frame(warm_model, f"{budget}-{seed}")
        for name, select in (("margin", baselines.margin), ("entropy", baselines.entropy)):
            chosen = h.ids(select(probs, "id", "probs", budget - w, exclude=warm_frame))
            out[name] = h.accuracy(np.concatenate([warm, chosen]))
    if "loss-aware" not in methods:
        return out

    la_model = h.fit(w, seed)
    reps = lossaware.model_representatives(la_model).select("id").toPandas().id.to_numpy()
    log_p = np.full((len(reps), 10), np.log(1e-12))  # a class the small warm-up set lacks: probability ~0
    log_p[:, warm_model.classes_] = warm_model.predict_log_proba(h.x[reps])
    rep_losses = h.spark.createDataFrame(
        [(int(i), float(-log_p[j, h.y[i]])) for j, i in enumerate(reps)], "id long, loss double"
    )
    selection = lossaware.prepare(la_model, rep_losses)
    chosen = (
        selection.sample(budget - w - len(reps), seed=seed).select("id", "count", "weight", "role").toPandas()
    )
    selection.release()
    rows = np.concatenate([warm, chosen.id.to_numpy()])
    weights = np.concatenate(
        [np.full(len(warm), h.n / budget), np.where(chosen["count"] > 0, chosen.weight, h.n / budget)]
    )
    unique, first = np.unique(rows, return_index=True)
    both(out, h, strategies.LOSS_AWARE, unique, weights[first])
    return out


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


def run(
    workdir: Path,
    budgets: list[int],
    seeds: int,
    max_minutes: float | None,
    resume: bool,
    config: dict,
) -> tuple[dict, float, list[dict]]:
    """Every budget for seeds 0, 1, ...; saves the scores after each seed (all budgets done). With
    ``resume``, starts after the seeds saved in WORKDIR/classification-runs.json. With
    ``config['dedup_eps']``, every seed also runs every budget on the deduplicated rows."""
    started = time.perf_counter()
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    earlier, first, dedup_info = 0.0, 0, []
    runs_file = workdir / "classification-runs.json"
    if resume and runs_file.exists():
        saved = json.loads(runs_file.read_text())
        if saved.get("config", DEFAULT_CONFIG) != config:
            raise SystemExit(f"--resume: {runs_file} was made with other settings: {saved.get('config')}")
        for method, points in saved["scores"].items():
            for budget, values in points.items():
                scores[method][budget] = values
        earlier, first = saved["seconds"], len(next(iter(saved["scores"]["uniform"].values())))
        dedup_info = saved.get("dedup", [])
    spark = spark_session()
    harness = Harness(spark, workdir, config["representation"])
    methods = tuple(config["methods"])
    for seed in range(first, seeds):
        if max_minutes is not None and time.perf_counter() - started > 60 * max_minutes:
            print(f"stopping after {seed} seeds (--max-minutes {max_minutes})", flush=True)
            break
        arms = [("", None)]
        if config.get("dedup_eps"):
            kept, info = harness.dedup(config["dedup_eps"], seed, config.get("dedup_keep", "farthest"))
            print(f"seed={seed} dedup: {info}", flush=True)
            arms.append((DEDUP, kept))
        for arm, pool in arms:
            harness.use_pool(pool)
            for budget in budgets:
                tick = time.perf_counter()
                for method, accuracy in select_and_score(harness, budget, seed, methods).items():
                    scores[method + arm][str(budget)].append(accuracy)
                print(f"seed={seed} B={budget}{arm}: {time.perf_counter() - tick:.0f} s", flush=True)
            harness.release()
        harness.use_pool(None)
        if config.get("dedup_eps"):
            dedup_info.append(info)
        saved = {"scores": scores, "seconds": earlier + time.perf_counter() - started}
        if config != DEFAULT_CONFIG:  # pixel runs files keep their earlier form
            saved.update({"config": config, "dedup": dedup_info})
        runs_file.write_text(json.dumps(saved, indent=1))
    spark.stop()
    return (
        {method: dict(points) for method, points in scores.items()},
        earlier + time.perf_counter() - started,
        dedup_info,
    )


DEFAULT_CONFIG = {"representation": "pixels", "methods": list(METHOD_GROUPS), "dedup_eps": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 budgets, 2 seeds; leaves docs/ alone")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default: 10, or 2 with --quick)")
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=None, help="budgets (default: 100 300 1000 3000)"
    )
    parser.add_argument(
        "--workdir", default="runs/experiments", help="tables and raw results (default: runs/experiments)"
    )
    parser.add_argument(
        "--representation",
        choices=tuple(REPRESENTATIONS),
        default="pixels",
        help="pixels: PCA-50 of the pixels (default); cnn: PCA-50 of the standardized EfficientNet-Lite0 "
        "features, for the selection and the classifier (own section of docs/)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHOD_GROUPS,
        default=list(METHOD_GROUPS),
        help="methods besides uniform: strategies (sensitivity, stratified, prototypes, "
        "representatives, auto), hardest (the diagnostic), k-center, margin (and entropy), loss-aware "
        "(default: all)",
    )
    parser.add_argument(
        "--dedup-eps",
        type=float,
        default=None,
        help="also run every seed after deduplicating the training images at this eps (issue 14; "
        "own section of docs/)",
    )
    parser.add_argument(
        "--dedup-keep",
        choices=("farthest", "nearest"),
        default="farthest",
        help="with --dedup-eps: which row of a group of near-duplicates is kept (the dedup job's "
        "--dedup-keep; default: farthest from its center)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new seed after this long; report the seeds done",
    )
    parser.add_argument(
        "--from-runs",
        action="store_true",
        help="run nothing: summarize the seeds saved in WORKDIR/classification-runs.json",
    )
    parser.add_argument(
        "--merge-runs",
        nargs="*",
        default=[],
        help="with --from-runs: also the classification-runs.json of runs of other budgets",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue after the seeds saved in WORKDIR/classification-runs.json",
    )
    args = parser.parse_args()
    if args.dedup_eps is not None and not 0 < args.dedup_eps < 1:
        parser.error("--dedup-eps must be in (0, 1)")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runs_file = workdir / "classification-runs.json"
    config = {
        "representation": args.representation,
        "methods": [m for m in METHOD_GROUPS if m in args.methods],
        "dedup_eps": args.dedup_eps,
    }
    if args.dedup_keep != "farthest":  # runs saved before the option keep their settings
        config["dedup_keep"] = args.dedup_keep
    if args.from_runs:
        scores, seconds, dedup_info = {}, 0.0, []
        for index, path in enumerate([runs_file, *args.merge_runs]):  # other budgets, run apart
            saved = json.loads(Path(path).read_text())
            if index == 0:
                config, dedup_info = saved.get("config", DEFAULT_CONFIG), saved.get("dedup", [])
            elif saved.get("config", DEFAULT_CONFIG) != config:
                raise SystemExit(f"--merge-runs: {path} was made with other settings")
            for method, points in saved["scores"].items():
                scores.setdefault(method, {}).update(points)
            seconds += saved["seconds"]
    else:
        budgets = args.budgets or ([300, 1000] if args.quick else [100, 300, 1000, 3000])
        seeds = args.seeds or (2 if args.quick else 10)
        scores, seconds, dedup_info = run(workdir, budgets, seeds, args.max_minutes, args.resume, config)
    seeds = min(len(v) for v in scores["uniform"].values())
    results = with_auto(scores)
    summary = {
        method: summarize(points, results["uniform" + (DEDUP if method.endswith(DEDUP) else "")])
        for method, points in results.items()
    }
    for method, points in summary.items():
        print(method, {b: f"{p['mean'] * 100:.2f}{p['flag']}" for b, p in points.items()}, flush=True)
    report = {
        "seeds": seeds,
        "config": config,
        "results": results,
        "summary": summary,
        "seconds": round(seconds),
    }
    if config.get("dedup_eps"):
        report["dedup"] = dedup_info
    (workdir / "classification.json").write_text(json.dumps(report, indent=1))
    markers, figure_name = names(config)
    if config.get("dedup_eps"):
        text = dedup_section(report)
        print(text)
        if not args.quick:
            replace_section(markers, text)
        print(f"done in {report['seconds']} s")
        return
    figure = workdir / figure_name if args.quick else FIGURES / figure_name
    plot(report, figure)
    if not args.quick:
        replace_section(markers, section(report))
    print(f"done in {report['seconds']} s; figure {figure}")


if __name__ == "__main__":
    main()
