"""``spark-sensitivity select``: its flags (from the declared settings) and the command."""

from __future__ import annotations

import argparse
import json
import os

from spark_sensitivity import settings
from spark_sensitivity.cli.flags import add_running, add_settings, config_from_args, required_flags
from spark_sensitivity.core.forecasting import forecast
from spark_sensitivity.io.files import is_local_path
from spark_sensitivity.io.publish import AtomicOutput
from spark_sensitivity.io.redaction import redact_text
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.workflows.select import input_paths, run_select

GROUPS = (
    settings.INPUT,
    settings.CLUSTERING,
    settings.OUTPUT,
    settings.LOSS_AWARE_GROUP,
    settings.FORECAST,
    settings.TARGET,
    settings.EMBEDDING,
    settings.DEDUP,
)
REQUIRED_SELECT_FLAGS = required_flags(SelectConfig)
STRATEGY_GOALS = (
    "Which strategy for which goal: to train or fine-tune a model on the subset, keep the default "
    "--strategy auto (representatives at small budgets, stratified above; the summary and the manifest "
    "name what it chose and why) and train with weight / mean(weight). To estimate a mean or a sum over "
    "the table (an average loss, label shares), use --strategy sensitivity (the paper's unbiased i.i.d. "
    "draws) or stratified, with the raw weights. See docs/TRAINING.md and docs/METHOD.md."
)


def add_select_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection flags, shared by the console script and jobs/select_subset.py."""
    add_settings(parser, SelectConfig, GROUPS)
    parser.epilog = STRATEGY_GOALS
    run = add_running(parser)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (stages, n, k, d, estimated work and memory, suggested k and fit "
        "fraction) and exit without running the heavy stages",
    )


def _summary(manifest: dict) -> str:
    if "next_step" in manifest:
        return (
            f"wrote the {manifest['representatives']} representatives of {manifest['n']} rows\n"
            f"output: {manifest['output']} (representatives/, clusters/, manifest.json)\n"
            f"next: {manifest['next_step']}"
        )
    if "subsets" in manifest:
        return _budgets_summary(manifest)
    return (
        _strategy_summary(manifest) + "\n"
        f"selected {_picked(manifest)} from "
        f"{manifest['n']} rows in {manifest['nonempty_clusters']} clusters; k-means cost "
        f"{manifest['kmeans_cost']:.6g}; sum of weights {manifest['sum_of_weights']:.1f} "
        f"(n = {manifest['n_valid']}); {manifest['timings']['total_seconds']:.1f} s\n"
        f"output: {manifest['output']} (subset/, clusters/, manifest.json"
        + (", report/index.html)" if "report" in manifest else ")")
        + _forecast_summary(manifest.get("forecast"))
    )


def _budgets_summary(manifest: dict) -> str:
    """A run of several sample sizes: one line per size (its strategy, k, rows, sum of weights)."""
    lines = [
        f"sample size {part['sample_size']}: {_strategy_summary(part)}; {_picked(part)}; "
        f"sum of weights {part['sum_of_weights']:.1f}"
        for part in manifest["subsets"]
    ]
    return (
        "\n".join(lines) + f"\nfrom one fit of {manifest['n']} rows in {manifest['nonempty_clusters']} "
        f"clusters (n = {manifest['n_valid']}); {manifest['timings']['total_seconds']:.1f} s\n"
        f"output: {manifest['output']} (subset/ with a sample_size column, clusters/, manifest.json"
        + (", report/index.html of the largest size)" if "report" in manifest else ")")
    )


def _strategy_summary(manifest: dict) -> str:
    """'strategy: representatives, k = 400 (auto chose ... because ...)'."""
    used = manifest.get("strategy_used", manifest.get("strategy"))
    line = f"strategy: {used}, k = {manifest.get('k_used', manifest.get('k'))}"
    reason = manifest.get("auto_reason")
    return f"{line} ({reason})" if reason else f"{line} (as requested)"


def _picked(manifest: dict) -> str:
    """'400 draws (391 distinct rows)' for i.i.d. draws, '400 rows' for the strategies without replacement."""
    if manifest.get("strategy_used", manifest.get("strategy")) in (settings.SENSITIVITY, settings.LOSS_AWARE):
        return f"{manifest.get('draws', manifest.get('m'))} draws ({manifest['subset_rows']} distinct rows)"
    return f"{manifest['subset_rows']} rows"


def _forecast_summary(facts: dict | None) -> str:
    if not facts:
        return ""
    lines = forecast.describe(facts)
    return (
        f"\nforecast RMSE of the mean loss estimate at m = {facts['m']}, relative to the mean (from "
        f"{facts['basis_rows']} {facts['source']} rows; 95 % interval); the subset written is "
        f"{facts.get('strategy', 'sensitivity')}:\n  " + "\n  ".join(lines)
    )


def _local_session_expected() -> bool:
    """True when this command will start its own local Spark, so a plain path is a local path."""
    master = os.environ.get("SPARK_MASTER", "local")
    hadoop = any(os.environ.get(v) for v in ("HADOOP_CONF_DIR", "YARN_CONF_DIR"))
    return "PYSPARK_GATEWAY_PORT" not in os.environ and master.startswith("local") and not hadoop


def run_select_command(args: argparse.Namespace) -> int:
    config = resolve_output(config_from_args(SelectConfig, args))
    if not args.dry_run and _local_session_expected() and is_local_path(config.output):
        # Refuse a bad output before paying for Spark's start.
        AtomicOutput(None, config.output, config.overwrite, inputs=input_paths(config)).check_destination()
    spark = spark_session("spark-sensitivity select", args.spark_conf, args.quiet, args.verbose, args.remote)
    if args.dry_run:
        from spark_sensitivity.workflows.dry_run import plan_select

        print(json.dumps(plan_select(spark, config), indent=2))
        return 0
    manifest = run_select(spark, config)
    if not args.quiet:
        print(redact_text(_summary(manifest)))
    return 0
