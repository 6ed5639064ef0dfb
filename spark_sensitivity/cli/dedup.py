"""``spark-sensitivity dedup``: remove near-duplicate rows (cosine >= 1 - eps inside each k-means cluster)."""

from __future__ import annotations

import argparse
from typing import Any

from spark_sensitivity import settings
from spark_sensitivity.cli.flags import add_running, add_settings, config_from_args, required_flags
from spark_sensitivity.io.redaction import redact_text
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.settings import DedupConfig
from spark_sensitivity.workflows.dedup import run_dedup

GROUPS = (settings.INPUT, settings.CLUSTERING, settings.DEDUP, settings.OUTPUT)
REQUIRED_DEDUP_FLAGS = required_flags(DedupConfig)


def add_dedup_command_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``spark-sensitivity dedup`` (input and k-means flags as in ``select``)."""
    add_settings(
        parser,
        DedupConfig,
        GROUPS,
        helps={
            "output": "output folder: duplicates/, kept/ and manifest.json appear together or not at all",
            "k": "k-means clusters of the unit embeddings",
            "on_invalid": "rows with a null, wrong-length or non-finite embedding: fail or skip them "
            "(left out of kept/ and counted)",
        },
    )
    add_running(parser)


def summary_line(manifest: dict[str, Any]) -> str:
    info = manifest["dedup"]
    return (
        f"removed {info['removed_rows']} near-duplicates ({info['removed_cross_cluster']} across clusters) "
        f"of {info['input_rows']} rows at eps {info['eps']}; kept {info['kept_rows']}; "
        f"{manifest['timings']['total_seconds']:.1f} s\noutput: {manifest['output']} (duplicates/, kept/, manifest.json)"
    )


def run_dedup_command(args: argparse.Namespace) -> int:
    spark = spark_session("spark-sensitivity dedup", args.spark_conf, args.quiet, args.verbose, args.remote)
    manifest = run_dedup(spark, config_from_args(DedupConfig, args))
    if not args.quiet:
        print(redact_text(summary_line(manifest)))
    return 0
