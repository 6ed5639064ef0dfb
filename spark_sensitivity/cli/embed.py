"""``spark-sensitivity embed`` and ``jobs/embed.py``: the flags, the summary line and the entry point of
the embed job (:mod:`spark_sensitivity.workflows.embed`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.errors import AnalysisException

from spark_sensitivity.cli.flags import add_key_values, add_running
from spark_sensitivity.embedders.base import BUILTIN_EMBEDDERS
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.io.storage import INPUT_FORMATS
from spark_sensitivity.workflows.embed import MANIFEST, EmbedConfig, run_embed_job


def add_embed_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The embedding flags, shared by the embed job and by ``select`` (which embeds on the fly)."""
    group = parser.add_argument_group("embedding")
    group.add_argument(
        "--embedder",
        required=required,
        help=f"{', '.join(BUILTIN_EMBEDDERS)}, or a class of your own as package.module:ClassName",
    )
    source = group.add_mutually_exclusive_group()
    source.add_argument("--text-col", help="text column to embed (string)")
    source.add_argument(
        "--image-col",
        help="image column to embed: raw or encoded image bytes, a struct with a 'bytes' field, or pixel arrays",
    )
    group.add_argument(
        "--embed-batch-size",
        type=int,
        default=64,
        help="rows per embedder call, e.g. per model forward pass (default: 64)",
    )
    add_key_values(
        group, "--embed-option", "an embedder option, repeatable (e.g. model=PATH, dim=128, normalize=false)"
    )


def add_embed_job_arguments(parser: argparse.ArgumentParser) -> None:
    """All flags of the embed job: input, embedding, output."""
    data = parser.add_argument_group("input")
    data.add_argument(
        "--input", required=True, help="input path, or a catalog table name with --format table"
    )
    data.add_argument(
        "--format", default="parquet", choices=INPUT_FORMATS, help="input format (default: parquet)"
    )
    add_key_values(data, "--input-option", "a reader option, repeatable")
    data.add_argument("--id-col", default="id", help="unique, non-null row id column (default: id)")
    add_embed_arguments(parser, required=True)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--output", required=True, help="output folder: a Parquet table of id + embedding, complete or absent"
    )
    output.add_argument(
        "--vector-col", default="embedding", help="name of the embedding column written (default: embedding)"
    )
    output.add_argument(
        "--keep-col",
        action="append",
        default=[],
        metavar="COLUMN",
        help="an input column to copy into the output (e.g. a label), repeatable",
    )
    output.add_argument(
        "--on-invalid",
        default="fail",
        choices=("fail", "skip"),
        help="rows that cannot be embedded (null or blank text, undecodable or wrongly sized images): "
        "fail the run (default) or leave them out; the manifest counts them by reason",
    )
    output.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_running(parser, verbose=False)


def config_from_args(args: argparse.Namespace) -> EmbedConfig:
    return EmbedConfig(
        input=args.input,
        output=args.output,
        embedder=args.embedder,
        format=args.format,
        input_options=dict(args.input_option),
        id_col=args.id_col,
        text_col=args.text_col,
        image_col=args.image_col,
        vector_col=args.vector_col,
        keep_cols=list(args.keep_col),
        batch_size=args.embed_batch_size,
        options=dict(args.embed_option),
        on_invalid=args.on_invalid,
        overwrite=args.overwrite,
    )


def _summary(manifest: dict[str, Any]) -> str:
    seconds = manifest["timings"]["embed_seconds"]
    skipped = (
        f", {manifest['skipped']} skipped {manifest['invalid_by_reason']}" if manifest["skipped"] else ""
    )
    return (
        f"embedded {manifest['embedded']} of {manifest['rows']} rows{skipped} into {manifest['dim']}-d "
        f"vectors with {manifest['parameters']['embedder']} in {seconds:.1f} s "
        f"({manifest['rows'] / max(seconds, 1e-9):.0f} rows/s)\n"
        f"output: {manifest['output']} (id + {manifest['parameters']['vector_col']}{_kept(manifest)}, "
        f"{MANIFEST})"
    )


def _kept(manifest: dict[str, Any]) -> str:
    """The copied columns, or that none were (a later select cannot show labels or texts without one)."""
    kept = manifest["parameters"]["keep_cols"]
    if kept:
        return " + " + ", ".join(kept)
    return "; no other input column was copied: add --keep-col NAME for labels or texts"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embed", description="Embed every row of a table on Spark and write id + embedding."
    )
    add_embed_job_arguments(parser)
    return parser


def run_embed_command(args: argparse.Namespace) -> int:
    spark = spark_session("spark-sensitivity embed", args.spark_conf, args.quiet, remote=args.remote)
    manifest = run_embed_job(spark, config_from_args(args))
    if not args.quiet:
        print(_summary(manifest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run_embed_command(args)
    except (ValueError, FileExistsError, FileNotFoundError, AnalysisException) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
