"""``spark-sensitivity refresh``: add newly appended rows to a subset without reading the old rows."""

from __future__ import annotations

import argparse

from spark_sensitivity import settings
from spark_sensitivity.cli.flags import add_running, add_settings, config_from_args, required_flags
from spark_sensitivity.io.files import LocalFiles, is_local_path
from spark_sensitivity.io.redaction import redact_text
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.ml.persistence import check_saved_model
from spark_sensitivity.settings import RefreshConfig
from spark_sensitivity.workflows.refresh import run_refresh

REQUIRED_REFRESH_FLAGS = required_flags(RefreshConfig)
GROUPS = (settings.INPUT, settings.SAMPLING, settings.OUTPUT)


def add_refresh_arguments(parser: argparse.ArgumentParser) -> None:
    """The refresh flags (declared in ``settings.RefreshConfig``): a saved model, the previous subset,
    and the newly appended rows only."""
    add_settings(parser, RefreshConfig, GROUPS)
    add_running(parser)


def _refresh_summary(manifest: dict) -> str:
    drift = manifest["cost_drift"]
    lines = [
        f"added {manifest['m_new']} draws from {manifest['n_new']} new rows to {manifest['m_old']} "
        f"previous draws ({manifest['n']} rows in all); cost drift "
        f"{'n/a' if drift is None else f'{drift:.2f}'}; sum of weights {manifest['sum_of_weights']:.1f}",
        f"subset: {manifest['subset']}",
    ]
    if manifest["earlier_inputs_unchecked"]:
        lines.append("earlier inputs not checked: " + "; ".join(manifest["earlier_inputs_unchecked"]))
    if manifest["refit_advised"]:
        lines.append("a full re-fit is advised: " + "; ".join(manifest["refit_reasons"]))
    return "\n".join(lines)


def run_refresh_command(args: argparse.Namespace) -> int:
    if is_local_path(args.model):  # a local model is checked before Spark starts
        check_saved_model(LocalFiles(), args.model.removeprefix("file:"))
    spark = spark_session("spark-sensitivity refresh", args.spark_conf, args.quiet, args.verbose, args.remote)
    manifest = run_refresh(spark, config_from_args(RefreshConfig, args))
    if not args.quiet:
        print(redact_text(_refresh_summary(manifest)))
    return 0
