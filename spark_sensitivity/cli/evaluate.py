"""``spark-sensitivity evaluate``: how well each scheme estimates the mean of a per-row loss, or
(``--label-col``) whether a classifier trained on the selected subset beats one trained on a uniform
subset of the same size."""

from __future__ import annotations

import argparse

from spark_sensitivity.cli.flags import add_running
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.settings import AUTO, DEFAULT_UNIFORM_SHARE, INPUT_FORMATS, SELECT_STRATEGIES
from spark_sensitivity.workflows.evaluate import SCHEMES, EvaluateConfig, format_report, run_evaluate
from spark_sensitivity.workflows.evaluate_labels import (
    LabelEvaluateConfig,
    format_label_report,
    run_evaluate_labels,
)

# Defaults that differ by mode: a label run fits k-means per seed and budget, a loss run once.
LOSS_SEEDS, LABEL_SEEDS, LOSS_K = 100, 10, 100


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sample sizes must be positive integers, got {text!r}")
    return sizes


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` flags."""
    parser.add_argument(
        "--input", required=True, help="table with an id, an embedding and a loss for every row"
    )
    parser.add_argument(
        "--format", default="parquet", choices=INPUT_FORMATS, help="input format (default: parquet)"
    )
    parser.add_argument("--id-col", default="id", help="unique row id column (default: id)")
    parser.add_argument("--vector-col", default="embedding", help="embedding column (default: embedding)")
    parser.add_argument("--loss-col", default="loss", help="per-row loss column (default: loss)")
    parser.add_argument(
        "--label-col",
        default=None,
        help="class label column (integers or strings): instead of loss estimation, train a logistic "
        "regression on each --strategy subset and on uniform subsets of the same size and compare "
        "their accuracy on held-out rows",
    )
    parser.add_argument(
        "--test-share",
        type=float,
        default=0.2,
        help="with --label-col: share of rows held out for testing, chosen by a hash of the id, the same "
        "for every seed (default: 0.2)",
    )
    parser.add_argument(
        "--strategy",
        default=AUTO,
        choices=[s for s in SELECT_STRATEGIES if s != "loss-aware"],
        help="with --label-col: the select strategy to evaluate (default: auto)",
    )
    parser.add_argument(
        "--scheme",
        action="append",
        choices=SCHEMES,
        help="selection scheme to evaluate, repeatable (default: model-free and loss-aware)",
    )
    parser.add_argument(
        "--sample-sizes",
        type=_sizes,
        default=[100, 1000],
        help="comma-separated m values (default: 100,1000)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"repetitions per sample size (default: {LOSS_SEEDS}; {LABEL_SEEDS} with --label-col)",
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds are first-seed, first-seed+1, ... (default: 0)"
    )
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        help=f"k-means clusters (default: {LOSS_K}; with --label-col, as select chooses for --strategy)",
    )
    parser.add_argument("--z", type=int, default=2, choices=(1, 2), help="cost power (default: 2)")
    parser.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=None,
        help="loss-aware: weight of the distance term (default: balanced, both terms carry half the mass)",
    )
    parser.add_argument(
        "--uniform-share",
        type=float,
        default=DEFAULT_UNIFORM_SHARE,
        help=f"loss-aware: share of the sampling mass spread uniformly (default: {DEFAULT_UNIFORM_SHARE}; 0 = the paper's rule)",
    )
    parser.add_argument("--max-iter", type=int, default=20, help="k-means iterations at most (default: 20)")
    parser.add_argument(
        "--points-per-center", type=int, default=256, help="k-means fit rows per center (default: 256)"
    )
    parser.add_argument("--output", default=None, help="folder for evaluation.json (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_running(parser, verbose=False)


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    return EvaluateConfig(
        input=args.input,
        schemes=args.scheme or ["model-free", "loss-aware"],
        sample_sizes=args.sample_sizes,
        seeds=LOSS_SEEDS if args.seeds is None else args.seeds,
        first_seed=args.first_seed,
        format=args.format,
        id_col=args.id_col,
        vector_col=args.vector_col,
        loss_col=args.loss_col,
        k=LOSS_K if args.k is None else args.k,
        z=args.z,
        lam=args.lam,
        uniform_share=args.uniform_share,
        max_iter=args.max_iter,
        points_per_center=args.points_per_center,
        output=args.output,
        overwrite=args.overwrite,
    )


def label_config_from_args(args: argparse.Namespace) -> LabelEvaluateConfig:
    return LabelEvaluateConfig(
        input=args.input,
        label_col=args.label_col,
        sample_sizes=args.sample_sizes,
        seeds=LABEL_SEEDS if args.seeds is None else args.seeds,
        first_seed=args.first_seed,
        format=args.format,
        id_col=args.id_col,
        vector_col=args.vector_col,
        strategy=args.strategy,
        k=args.k,
        test_share=args.test_share,
        output=args.output,
        overwrite=args.overwrite,
    )


def run_evaluate_command(args: argparse.Namespace) -> int:
    spark = spark_session("spark-sensitivity evaluate", args.spark_conf, args.quiet, remote=args.remote)
    if args.label_col is not None:
        report = run_evaluate_labels(spark, label_config_from_args(args))
        text = format_label_report(report)
    else:
        report = run_evaluate(spark, config_from_args(args))
        text = format_report(report)
    if not args.quiet:
        print(text)
    return 0
