"""Command line: ``spark-sensitivity select ...`` (the job) and ``spark-sensitivity demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from spark_sensitivity.pipeline import SelectConfig, run_select
from spark_sensitivity.storage import INPUT_FORMATS

log = logging.getLogger("spark_sensitivity")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_select_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection flags, shared by the console script and jobs/select_subset.py."""
    data = parser.add_argument_group("input")
    data.add_argument(
        "--input", required=True, help="input path, or a catalog table name with --format table"
    )
    data.add_argument(
        "--format",
        default="parquet",
        choices=INPUT_FORMATS,
        help="input format (default: parquet; json means JSON lines)",
    )
    data.add_argument(
        "--input-option",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a reader option, repeatable (e.g. sep=;)",
    )
    data.add_argument("--id-col", default="id", help="unique, non-null row id column (default: id)")
    data.add_argument(
        "--vector-col",
        default="embedding",
        help="embedding column: array<float>, array<double>, an ML Vector, or text like [0.1, 0.2] (default: embedding)",
    )
    data.add_argument(
        "--on-invalid",
        default="fail",
        choices=("fail", "skip"),
        help="rows with a null, wrong-length or non-finite embedding: fail the run (default) or skip them; the manifest counts skipped rows",
    )

    method = parser.add_argument_group("clustering and sampling")
    method.add_argument("--k", type=int, default=100, help="number of k-means clusters (default: 100)")
    method.add_argument(
        "--sample-size",
        type=int,
        required=True,
        help="m: the exact number of draws, with replacement; a row drawn c times appears once with count c",
    )
    method.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for the fit sample, k-means init and the draws; same input and seed give the same subset (default: 0)",
    )
    method.add_argument(
        "--z",
        type=int,
        default=2,
        choices=(1, 2),
        help="cost power: 2 = k-means cost ||x-c||^2 (default), 1 = k-median cost ||x-c||",
    )
    method.add_argument("--max-iter", type=int, default=20, help="k-means iterations at most (default: 20)")
    method.add_argument(
        "--tol", type=float, default=1e-4, help="k-means convergence tolerance (default: 1e-4)"
    )
    method.add_argument(
        "--init-mode",
        default="k-means||",
        choices=("k-means||", "random"),
        help="k-means initialisation (default: k-means||; random is cheaper at large k)",
    )
    method.add_argument("--init-steps", type=int, default=2, help="k-means|| steps (default: 2)")
    method.add_argument(
        "--fit-fraction",
        type=float,
        default=None,
        help="fit k-means on this fraction of rows, in (0, 1]; overrides --points-per-center",
    )
    method.add_argument(
        "--points-per-center",
        type=int,
        default=256,
        help="fit k-means on about this many rows per center, then assign all rows; 0 = fit on all rows (default: 256)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output",
        required=True,
        help="output folder: subset/, clusters/ and manifest.json appear there together, or not at all",
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (it is kept until the new one is complete)",
    )
    output.add_argument(
        "--drop-vector", action="store_true", help="leave the embedding column out of subset/"
    )

    spark = parser.add_argument_group("spark")
    spark.add_argument(
        "--spark-conf",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for a session this command starts, repeatable",
    )
    spark.add_argument("--quiet", action="store_true", help="print errors only")


def config_from_args(args: argparse.Namespace) -> SelectConfig:
    return SelectConfig(
        input=args.input,
        output=args.output,
        sample_size=args.sample_size,
        k=args.k,
        format=args.format,
        input_options=dict(args.input_option),
        id_col=args.id_col,
        vector_col=args.vector_col,
        z=args.z,
        seed=args.seed,
        max_iter=args.max_iter,
        tol=args.tol,
        init_mode=args.init_mode,
        init_steps=args.init_steps,
        fit_fraction=args.fit_fraction,
        points_per_center=args.points_per_center,
        on_invalid=args.on_invalid,
        drop_vector=args.drop_vector,
        overwrite=args.overwrite,
    )


def spark_session(app_name: str, conf: Sequence[tuple[str, str]]):
    """The active session (under spark-submit) or a new one, local[*] unless a master is set."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).config("spark.log.level", "WARN")
    if "spark.master" not in dict(conf) and not os.environ.get("MASTER"):
        builder = builder.config("spark.master", os.environ.get("SPARK_MASTER", "local[*]"))
    for key, value in conf:
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _summary(manifest: dict) -> str:
    return (
        f"selected {manifest['m']} draws ({manifest['subset_rows']} distinct rows) from "
        f"{manifest['n']} rows in {manifest['nonempty_clusters']} clusters; k-means cost "
        f"{manifest['kmeans_cost']:.6g}; sum of weights {manifest['sum_of_weights']:.1f} "
        f"(n = {manifest['n_valid']}); {manifest['timings']['total_seconds']:.1f} s\n"
        f"output: {manifest['output']} (subset/, clusters/, manifest.json)"
    )


def run_select_command(args: argparse.Namespace) -> int:
    spark = spark_session("spark-sensitivity select", args.spark_conf)
    manifest = run_select(spark, config_from_args(args))
    if not args.quiet:
        print(_summary(manifest))
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    from spark_sensitivity import demo

    spark = spark_session("spark-sensitivity demo", args.spark_conf)
    demo.run(spark, Path(args.workdir), k=args.k, sample_size=args.sample_size, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-sensitivity",
        description="Pick a small weighted subset that represents a large table (clustering-based sensitivity sampling on Spark).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    select = commands.add_parser("select", help="select a weighted subset of a table of embeddings")
    add_select_arguments(select)
    select.set_defaults(run=run_select_command)

    demo = commands.add_parser(
        "demo", help="run the selection on Fashion-MNIST and show how representative it is"
    )
    demo.add_argument(
        "--workdir",
        default="runs/demo",
        help="where the embedded data set and the output go (default: runs/demo)",
    )
    demo.add_argument("--k", type=int, default=50, help="clusters (default: 50)")
    demo.add_argument("--sample-size", type=int, default=1000, help="draws (default: 1000)")
    demo.add_argument("--seed", type=int, default=7, help="seed (default: 7)")
    demo.add_argument(
        "--spark-conf",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, repeatable",
    )
    demo.set_defaults(run=run_demo_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if getattr(args, "quiet", False) else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
