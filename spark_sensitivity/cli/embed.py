"""``spark-sensitivity embed`` and ``jobs/embed.py``: the flags, the summary line and the entry point of
the embed job (:mod:`spark_sensitivity.workflows.embed`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.errors import AnalysisException

from spark_sensitivity import settings
from spark_sensitivity.cli.flags import add_running, add_settings, config_from_args, required_flags
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.settings import EmbedConfig, SettingError, setting_flags
from spark_sensitivity.workflows.embed import MANIFEST, run_embed_job

GROUPS = (settings.INPUT, settings.EMBEDDING, settings.OUTPUT)
REQUIRED_EMBED_FLAGS = required_flags(EmbedConfig)


def add_embed_job_arguments(parser: argparse.ArgumentParser) -> None:
    """All flags of the embed job: input, embedding, output (declared in ``settings.EmbedConfig``)."""
    add_settings(parser, EmbedConfig, GROUPS)
    add_running(parser, verbose=False)


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
    manifest = run_embed_job(spark, config_from_args(EmbedConfig, args))
    if not args.quiet:
        print(_summary(manifest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = ["--" + name.replace("_", "-") for name in REQUIRED_EMBED_FLAGS if getattr(args, name) is None]
    if missing:
        parser.error("the following arguments are required: " + ", ".join(missing))
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run_embed_command(args)
    except (ValueError, FileExistsError, FileNotFoundError, AnalysisException) as error:
        message = error.naming(setting_flags()) if isinstance(error, SettingError) else str(error)
        print(f"error: {message.splitlines()[0]}", file=sys.stderr)
        return 2
