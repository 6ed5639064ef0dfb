"""``spark-sensitivity refresh``: add newly appended rows to a subset without reading the old rows."""

from __future__ import annotations

import argparse

from spark_sensitivity.cli.flags import add_config, add_key_values, add_running, number, seed_type
from spark_sensitivity.core.sample import MAX_DRAWS
from spark_sensitivity.io.files import LocalFiles, is_local_path
from spark_sensitivity.io.lineage import SKIP_UNREADABLE_FLAG
from spark_sensitivity.io.redaction import redact_text
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.ml.persistence import check_saved_model
from spark_sensitivity.settings import INPUT_FORMATS, ON_INVALID
from spark_sensitivity.workflows.refresh import MAX_COST_DRIFT, SUBSET_FORMATS, run_refresh

REQUIRED_REFRESH_FLAGS = ("model", "new_input", "previous_subset", "output")


def add_refresh_arguments(parser: argparse.ArgumentParser) -> None:
    """The refresh flags: a saved model, the previous subset, and the newly appended rows only."""
    add_config(parser)
    data = parser.add_argument_group("input")
    data.add_argument("--model", help="model/ folder of the previous select or refresh output (required)")
    data.add_argument(
        "--new-input",
        help="the appended rows only: a path, or a catalog table name with --format table (required)",
    )
    data.add_argument(
        "--format",
        default="parquet",
        choices=INPUT_FORMATS,
        help="format of --new-input (default: parquet)",
    )
    add_key_values(
        data,
        "--input-option",
        "a reader option for --new-input, repeatable (versionAsOf=N for a Delta table)",
    )
    data.add_argument(
        "--previous-subset",
        help="subset/ of the previous select or refresh output, or the subset's Delta table (required)",
    )
    data.add_argument(
        "--subset-format",
        default="parquet",
        choices=SUBSET_FORMATS,
        help="format of OUTPUT/subset, the previous and the new draws: parquet (default) or delta (a new "
        "table in one commit); the previous output is never modified",
    )
    method = parser.add_argument_group("sampling")
    method.add_argument(
        "--sample-size",
        type=number(int, 1, MAX_DRAWS),
        help="draws from the new rows (default: the previous draws times the new rows' share of the "
        f"sensitivity mass, as one sample of the whole table would place them); at most {MAX_DRAWS:,}, "
        "as the draw holds about that many candidates in one task's memory",
    )
    method.add_argument("--seed", type=seed_type(), default=0, help="seed of the new draws (default: 0)")
    method.add_argument(
        "--on-invalid",
        choices=ON_INVALID,
        default=None,
        help="new rows with a null, wrong-length, NaN or infinite embedding: fail (naming the count and "
        "example ids) or skip them, left out of the new stratum (default: the select run's setting)",
    )
    method.add_argument(
        "--max-cost-drift",
        type=number(float, 0, above=True),
        default=MAX_COST_DRIFT,
        help="advise a full re-fit when the new rows' mean cost under the saved centers exceeds the "
        f"old rows' by this factor (default: {MAX_COST_DRIFT})",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--output",
        help="output folder (required): model/, subset/ and manifest.json appear together or not at all",
    )
    output.add_argument("--overwrite", action="store_true", help="replace an existing output")
    data.add_argument(
        "--skip-earlier-id-check",
        action="store_true",
        help="do not check the new ids against the inputs earlier runs read (recorded in the manifest "
        "next to --model); the check reads only their id column",
    )
    data.add_argument(
        SKIP_UNREADABLE_FLAG,
        action="store_true",
        help="refresh even when an earlier run's input cannot be read (moved, deleted, recorded as a "
        "relative path by an earlier version): its ids go unchecked, so new rows it already holds "
        "would be counted twice; the manifest lists it under earlier_inputs_unchecked",
    )
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
    manifest = run_refresh(
        spark,
        model_path=args.model,
        new_input=args.new_input,
        fmt=args.format,
        input_options=dict(args.input_option),
        previous_subset=args.previous_subset,
        subset_format=args.subset_format,
        output=args.output,
        sample_size=args.sample_size,
        seed=args.seed,
        overwrite=args.overwrite,
        max_cost_drift=args.max_cost_drift,
        check_earlier_ids=not args.skip_earlier_id_check,
        allow_unreadable_earlier_inputs=args.skip_unreadable_earlier_inputs,
        on_invalid=args.on_invalid,
    )
    if not args.quiet:
        print(redact_text(_refresh_summary(manifest)))
    return 0
