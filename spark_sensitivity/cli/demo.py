"""``spark-sensitivity demo``: the selection on Fashion-MNIST, and how representative it is."""

from __future__ import annotations

import argparse
from pathlib import Path

from spark_sensitivity.cli.flags import add_key_values
from spark_sensitivity.io.session import spark_session


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        default="runs/demo",
        help="where the embedded data set and the output go (default: runs/demo)",
    )
    parser.add_argument("--k", type=int, default=50, help="clusters (default: 50)")
    parser.add_argument("--sample-size", type=int, default=1000, help="draws (default: 1000)")
    parser.add_argument("--seed", type=int, default=7, help="seed (default: 7)")
    add_key_values(parser, "--spark-conf", "a Spark setting for the session this command starts, repeatable")


def run_demo_command(args: argparse.Namespace) -> int:
    from spark_sensitivity.workflows import demo  # the data set loader is needed by this command only

    spark = spark_session("spark-sensitivity demo", args.spark_conf)
    demo.run(spark, Path(args.workdir), k=args.k, sample_size=args.sample_size, seed=args.seed)
    return 0
