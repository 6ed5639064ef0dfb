"""Experiment (c): Fashion-MNIST test accuracy of a classifier trained on the selected subset.

Regenerates docs/RESULTS.md, sections "(c) Classification accuracy vs budget" (markers
``experiment-c``), "(c) with CNN features" (``experiment-c-cnn``) and "(c) after deduplication"
(``experiment-c-dedup``), with their figures docs/figures/experiment_classification*.png; docs/DEDUP.md
("Evidence") quotes the dedup runs. From the repository root:

    python -m benchmarks.experiments.classification --quick   # 2 budgets x 2 seeds, leaves docs/ alone
    python -m benchmarks.experiments.classification           # 4 budgets x 10 seeds, updates docs/RESULTS.md
    python -m benchmarks.experiments.classification --representation cnn --workdir runs/experiments-cnn
    python -m benchmarks.experiments.classification --dedup-eps 0.01 --budgets 100 1000 \
        --methods strategies margin --workdir runs/experiments-dedup

(docs/RESULTS.md lists the exact commands of its numbers.) This module holds the loop over seeds and
budgets and the command line; the selection methods are in ``classification_methods``, the report
(tables, figure) in ``classification_report``.

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
(``image_features.fashion_cnn``; run ``python -m benchmarks.experiments.image_features extract``
first); its results go to their own section of docs/RESULTS.md (markers ``experiment-c-cnn``) and
figure.

``--dedup-eps E`` (issue 14) runs every seed twice on the same seeds: on the whole training set, and
after deduplicating it with the project's dedup step (``workflows.dedup.deduplicate``, as
``select --dedup-eps E`` does: k = 100 clusters of the unit vectors, the seed's k-means fit, one row
kept per group of near-duplicates, farthest from its center first), every method then selecting from
the kept rows only. The classifier and the test set are the same in both arms. Its section has the
markers ``experiment-c-dedup``. ``--methods`` restricts the methods (uniform always runs).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import FIGURES, replace_section, spark_session, summarize
from benchmarks.experiments.classification_methods import (
    DEDUP,
    METHOD_GROUPS,
    REPRESENTATIONS,
    Harness,
    select_and_score,
)
from benchmarks.experiments.classification_report import dedup_section, names, plot, section, with_auto


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


def _parser() -> argparse.ArgumentParser:
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
    return parser


def main() -> None:
    parser = _parser()
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
