"""Command line: ``spark-sensitivity select|dedup|embed|refresh|evaluate|demo``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from spark_sensitivity.cli.config_file import config_defaults, load_config_file
from spark_sensitivity.cli.embed import add_embed_arguments, add_embed_job_arguments, run_embed_command
from spark_sensitivity.cli.flags import (
    MAX_SAMPLE_SIZE,
    add_config,
    add_key_values,
    add_running,
    number,
    seed_type,
)
from spark_sensitivity.core import forecast, lossaware, strategies
from spark_sensitivity.io.files import is_local_path
from spark_sensitivity.io.publish import AtomicOutput
from spark_sensitivity.io.redaction import redact_text
from spark_sensitivity.io.runs import resolve_output
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.io.storage import INPUT_FORMATS, OUTPUT_FORMATS
from spark_sensitivity.workflows import evaluate
from spark_sensitivity.workflows.dedup import add_dedup_arguments
from spark_sensitivity.workflows.refresh import MAX_COST_DRIFT, SUBSET_FORMATS
from spark_sensitivity.workflows.select import SelectConfig, input_paths, run_select

log = logging.getLogger("spark_sensitivity")
REQUIRED_SELECT_FLAGS = ("input", "output", "sample_size")


def add_select_arguments(parser: argparse.ArgumentParser) -> None:
    """The selection flags, shared by the console script and jobs/select_subset.py."""
    add_config(parser, " (sample-size: 1000)")
    data = parser.add_argument_group("input")
    data.add_argument("--input", help="input path, or a catalog table name with --format table (required)")
    data.add_argument(
        "--format",
        default="parquet",
        choices=INPUT_FORMATS,
        help="input format (default: parquet; json means JSON lines)",
    )
    add_key_values(
        data,
        "--input-option",
        "a reader option, repeatable (e.g. sep=;, versionAsOf=N for Delta, snapshot-id=N or "
        "as-of-timestamp=MS for Iceberg)",
    )
    add_key_values(
        data,
        "--catalog-option",
        "a property of the pyiceberg catalog for --format iceberg and --output-format iceberg, "
        "repeatable (e.g. uri=sqlite:////data/catalog.db, warehouse=file:///data/warehouse)",
    )
    data.add_argument("--id-col", default="id", help="unique, non-null row id column (default: id)")
    data.add_argument(
        "--vector-col",
        default="embedding",
        help="embedding column: array<float>, array<double>, an ML Vector, or text like [0.1, 0.2] "
        "(default: embedding)",
    )
    data.add_argument(
        "--on-invalid",
        default="fail",
        choices=("fail", "skip"),
        help="rows with a null, wrong-length or non-finite embedding: fail the run (default) or skip "
        "them; the manifest counts skipped rows",
    )
    data.add_argument(
        "--skip-id-check",
        action="store_true",
        help="do not check that ids are unique before sampling (saves a shuffle of the ids at very "
        "large n; a duplicated id that gets drawn still fails the run)",
    )

    method = parser.add_argument_group("clustering and sampling")
    method.add_argument(
        "--k",
        type=number(int, 1),
        default=None,
        help="number of k-means clusters (default: 100; the sample size for --strategy representatives; "
        "chosen by --strategy auto)",
    )
    method.add_argument(
        "--strategy",
        default=strategies.SENSITIVITY,
        choices=strategies.SELECT_STRATEGIES,
        help="how rows are picked from the clusters: sensitivity (default, the paper's i.i.d. draws, "
        "unbiased), representatives (the row nearest each center, k = sample size), stratified "
        "(a uniform subset of each cluster, allocated by size), prototypes (per cluster the rows "
        "nearest the center, or the farthest when the sample is at least half the table), loss-aware "
        "(the same as --mode loss-aware), auto (representatives up to "
        f"{strategies.AUTO_REPRESENTATIVES_MAX_M} rows, stratified above); see docs/METHOD.md",
    )
    method.add_argument(
        "--sample-size",
        type=number(int, 1, MAX_SAMPLE_SIZE),
        help="m, the exact number of draws, with replacement (required); a row drawn c times appears "
        "once with count c",
    )
    method.add_argument(
        "--seed",
        type=seed_type(),
        default=0,
        help="seed of the fit sample, k-means init and the draws; the same input and seed give the "
        "same subset, however the input is partitioned (default: 0)",
    )
    method.add_argument(
        "--z",
        type=int,
        default=2,
        choices=(1, 2),
        help="cost power: 2 = k-means cost ||x-c||^2 (default), 1 = k-median cost ||x-c||",
    )
    method.add_argument(
        "--max-iter", type=number(int, 1), default=20, help="k-means iterations at most (default: 20)"
    )
    method.add_argument(
        "--tol", type=number(float, 0), default=1e-4, help="k-means convergence tolerance (default: 1e-4)"
    )
    method.add_argument(
        "--init-mode",
        default="k-means||",
        choices=("k-means||", "random"),
        help="k-means initialisation (default: k-means||; random is cheaper at large k)",
    )
    method.add_argument("--init-steps", type=number(int, 1), default=2, help="k-means|| steps (default: 2)")
    method.add_argument(
        "--fit-fraction",
        type=number(float, 0, 1, above=True),
        default=None,
        help="fit k-means on this fraction of the rows, in (0, 1]; overrides --points-per-center",
    )
    method.add_argument(
        "--points-per-center",
        type=number(int, 0),
        default=256,
        help="fit k-means on about this many rows per center, then assign all rows; 0 = fit on all "
        "rows (default: 256)",
    )
    method.add_argument(
        "--fit-engine",
        default="auto",
        choices=("auto", "driver", "mllib"),
        help="where k-means fits its sample: driver = collected and fitted in numpy (fast while the "
        "sample is small), mllib = MLlib's distributed KMeans, auto = the driver while the sample "
        "fits --driver-fit-max-mb and a quarter of the driver's heap (default: auto)",
    )
    method.add_argument(
        "--driver-fit-max-mb",
        type=number(int, 0),
        default=512,
        help="largest fit sample, in MiB of float32, that --fit-engine auto fits on the driver "
        "(default: 512)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--output",
        help="output folder (required): subset/, clusters/ and manifest.json appear there together or "
        "not at all; {run_id} and {date} in it are replaced by the run id and the UTC date",
    )
    output.add_argument(
        "--run-id", help="run id recorded in the manifest and used for {run_id} (default: a new one)"
    )
    output.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (the old one stays until the new one is complete)",
    )
    output.add_argument(
        "--drop-vector", action="store_true", help="leave the embedding column out of subset/"
    )
    output.add_argument(
        "--output-format",
        default="parquet",
        choices=OUTPUT_FORMATS,
        help="format of subset/: parquet (default), delta (one commit), iceberg (subset/ in Parquet, "
        "and one commit each to the Iceberg tables --output-table and its _clusters), json, csv "
        "(embeddings as JSON text) or orc",
    )
    output.add_argument(
        "--output-table",
        help="also register subset/ in the catalog under this name, after publishing (an external "
        "table over the published files; an existing table is replaced only with --overwrite); with "
        "--output-format iceberg, the Iceberg table namespace.table",
    )
    output.add_argument(
        "--report",
        action="store_true",
        help="also write report/index.html with PNG figures: cluster sizes and shares, sensitivity and "
        "weight distributions, a 2-D projection, the k-means cost (needs the 'report' extra)",
    )
    output.add_argument(
        "--loss-col",
        default=None,
        help="with --report: a numeric per-row loss column; the report compares its true mean (one more "
        "pass) with the subset's weighted estimates",
    )

    loss_aware = parser.add_argument_group("loss-aware mode (the paper's two rounds)")
    loss_aware.add_argument(
        "--mode",
        default="model-free",
        choices=("model-free", "loss-aware"),
        help="model-free (default): s_i = v_i / Phi + 1 / n_j. loss-aware: first run writes "
        "representatives/ (the row nearest each center); give the model's loss on them with "
        "--rep-losses in a second run with the same settings to draw with s_i = loss(r_a(i)) + "
        "lambda * ||x_i - r_a(i)||^z; subset/ then holds the representatives and the m draws (column role)",
    )
    loss_aware.add_argument(
        "--rep-losses", help="loss-aware: table of id and loss covering every row of representatives/"
    )
    loss_aware.add_argument(
        "--rep-losses-format",
        default="parquet",
        choices=INPUT_FORMATS,
        help="format of --rep-losses (default: parquet)",
    )
    loss_aware.add_argument(
        "--rep-loss-col", default="loss", help="loss column of --rep-losses (default: loss)"
    )
    loss_aware.add_argument(
        "--lambda",
        dest="loss_lambda",
        type=number(float, 0),
        default=None,
        help="loss-aware: weight of the distance term (default: balanced, lambda = sum of proxy losses / "
        "sum of distances, so each term carries half of the mass)",
    )
    loss_aware.add_argument(
        "--uniform-share",
        type=number(float, 0, 1),
        default=0.1,
        help="loss-aware: share of the mass spread uniformly over the rows, so every row can be drawn "
        "and weights stay bounded (default: 0.1; 0 = the paper's rule)",
    )
    loss_aware.add_argument(
        "--round1",
        help="loss-aware round 2: round 1's output folder; its manifest's settings must match this run's "
        "(default: a round-1 manifest.json in the folder holding --rep-losses, when there is one)",
    )
    loss_aware.add_argument(
        "--rep-weights",
        default="zero",
        choices=lossaware.REP_WEIGHTS,
        help="loss-aware round 2: weight of a representative that was not drawn: zero (default; the "
        "weighted sums stay unbiased) or cluster (its cluster's size, for training; biased estimates)",
    )
    ahead = parser.add_argument_group("forecast (manifest, report and summary)")
    ahead.add_argument(
        "--pilot-losses",
        help="table of id and loss for a uniform random pilot of rows you scored: forecast the RMSE of "
        "the mean loss estimate of sensitivity, stratified and uniform sampling at --sample-size "
        "(loss-aware round 2 forecasts from the representatives' losses without it)",
    )
    ahead.add_argument(
        "--pilot-losses-format",
        default="parquet",
        choices=INPUT_FORMATS,
        help="format of --pilot-losses (default: parquet)",
    )
    ahead.add_argument(
        "--pilot-loss-col", default="loss", help="loss column of --pilot-losses (default: loss)"
    )

    run = add_running(parser)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (stages, n, k, d, estimated work and memory, suggested k and fit "
        "fraction) and exit without running the heavy stages",
    )
    add_embed_arguments(parser)
    add_dedup_arguments(parser)


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
        choices=(*INPUT_FORMATS, "delta"),
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
        type=number(int, 1, MAX_SAMPLE_SIZE),
        help="draws from the new rows (default: the previous draws times the new rows' share of the "
        "sensitivity mass, as one sample of the whole table would place them)",
    )
    method.add_argument("--seed", type=seed_type(), default=0, help="seed of the new draws (default: 0)")
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
    add_running(parser)


def _refresh_summary(manifest: dict) -> str:
    drift = manifest["cost_drift"]
    lines = [
        f"added {manifest['m_new']} draws from {manifest['n_new']} new rows to {manifest['m_old']} "
        f"previous draws ({manifest['n']} rows in all); cost drift "
        f"{'n/a' if drift is None else f'{drift:.2f}'}; sum of weights {manifest['sum_of_weights']:.1f}",
        f"subset: {manifest['subset']}",
    ]
    if manifest["refit_advised"]:
        lines.append("a full re-fit is advised: " + "; ".join(manifest["refit_reasons"]))
    return "\n".join(lines)


def run_refresh_command(args: argparse.Namespace) -> int:
    from spark_sensitivity.workflows.refresh import run_refresh

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
    )
    if not args.quiet:
        print(redact_text(_refresh_summary(manifest)))
    return 0


def config_from_args(args: argparse.Namespace) -> SelectConfig:
    return SelectConfig(
        input=args.input,
        output=args.output,
        sample_size=args.sample_size,
        k=args.k,
        format=args.format,
        input_options=dict(args.input_option),
        catalog_options=dict(args.catalog_option),
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
        fit_engine=args.fit_engine,
        driver_fit_max_mb=args.driver_fit_max_mb,
        on_invalid=args.on_invalid,
        check_unique_ids=not args.skip_id_check,
        drop_vector=args.drop_vector,
        overwrite=args.overwrite,
        run_id=args.run_id,
        config_file=args.config,
        report=args.report,
        output_format=args.output_format,
        output_table=args.output_table,
        embedder=args.embedder,
        text_col=args.text_col,
        image_col=args.image_col,
        embed_batch_size=args.embed_batch_size,
        embed_options=dict(args.embed_option),
        loss_col=args.loss_col,
        mode=args.mode,
        strategy=args.strategy,
        rep_losses=args.rep_losses,
        rep_losses_format=args.rep_losses_format,
        rep_loss_col=args.rep_loss_col,
        loss_lambda=args.loss_lambda,
        uniform_share=args.uniform_share,
        round1=args.round1,
        rep_weights=args.rep_weights,
        pilot_losses=args.pilot_losses,
        pilot_losses_format=args.pilot_losses_format,
        pilot_loss_col=args.pilot_loss_col,
        dedup_eps=args.dedup_eps,
        dedup_keep=args.dedup_keep,
        dedup_neighbors=args.dedup_neighbors,
        dedup_block_rows=args.dedup_block_rows,
    )


def _summary(manifest: dict) -> str:
    if "next_step" in manifest:
        return (
            f"wrote the {manifest['representatives']} representatives of {manifest['n']} rows\n"
            f"output: {manifest['output']} (representatives/, clusters/, manifest.json)\n"
            f"next: {manifest['next_step']}"
        )
    return (
        f"selected {manifest['m']} draws ({manifest['subset_rows']} distinct rows) from "
        f"{manifest['n']} rows in {manifest['nonempty_clusters']} clusters; k-means cost "
        f"{manifest['kmeans_cost']:.6g}; sum of weights {manifest['sum_of_weights']:.1f} "
        f"(n = {manifest['n_valid']}); {manifest['timings']['total_seconds']:.1f} s\n"
        f"output: {manifest['output']} (subset/, clusters/, manifest.json"
        + (", report/index.html)" if "report" in manifest else ")")
        + _forecast_summary(manifest.get("forecast"))
    )


def _forecast_summary(facts: dict | None) -> str:
    if not facts:
        return ""
    lines = forecast.describe(facts)
    return (
        f"\nforecast RMSE of the mean loss estimate at m = {facts['m']}, relative to the mean (from "
        f"{facts['basis_rows']} {facts['source']} rows; 95 % interval):\n  " + "\n  ".join(lines)
    )


def _local_session_expected() -> bool:
    """True when this command will start its own local Spark, so a plain path is a local path."""
    master = os.environ.get("SPARK_MASTER", "local")
    hadoop = any(os.environ.get(v) for v in ("HADOOP_CONF_DIR", "YARN_CONF_DIR"))
    return "PYSPARK_GATEWAY_PORT" not in os.environ and master.startswith("local") and not hadoop


def run_select_command(args: argparse.Namespace) -> int:
    config = resolve_output(config_from_args(args))
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


def run_dedup_command(args: argparse.Namespace) -> int:
    from spark_sensitivity.workflows import dedup as dedup_job

    spark = spark_session("spark-sensitivity dedup", args.spark_conf, args.quiet, args.verbose, args.remote)
    manifest = dedup_job.run_dedup(spark, dedup_job.config_from_args(args))
    if not args.quiet:
        print(redact_text(dedup_job.summary_line(manifest)))
    return 0


def run_evaluate_command(args: argparse.Namespace) -> int:
    spark = spark_session("spark-sensitivity evaluate", args.spark_conf, args.quiet, remote=args.remote)
    report = evaluate.run_evaluate(spark, evaluate.config_from_args(args))
    if not args.quiet:
        print(evaluate.format_report(report))
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    from spark_sensitivity.workflows import demo

    spark = spark_session("spark-sensitivity demo", args.spark_conf)
    demo.run(spark, Path(args.workdir), k=args.k, sample_size=args.sample_size, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-sensitivity",
        description="Pick a small weighted subset that represents a large table "
        "(clustering-based sensitivity sampling on Spark).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    select = commands.add_parser(
        "select",
        allow_abbrev=False,
        help="select a weighted subset of a table of embeddings",
        description="Cluster the embeddings (k-means on a sample, on the driver or with MLlib), score "
        "each row's sensitivity, draw exactly "
        "--sample-size rows with replacement, and publish subset/, clusters/ and manifest.json.",
    )
    add_select_arguments(select)
    select.set_defaults(run=run_select_command, required_flags=REQUIRED_SELECT_FLAGS)

    dedup = commands.add_parser(
        "dedup",
        allow_abbrev=False,
        help="remove near-duplicate rows (cosine >= 1 - eps inside each k-means cluster)",
        description="Cluster the unit embeddings with k-means, compare rows inside each cluster on the "
        "executors, and publish duplicates/, kept/ and manifest.json.",
    )
    from spark_sensitivity.workflows.dedup import REQUIRED_DEDUP_FLAGS, add_dedup_command_arguments

    add_dedup_command_arguments(dedup)
    dedup.set_defaults(run=run_dedup_command, required_flags=REQUIRED_DEDUP_FLAGS)

    embed = commands.add_parser(
        "embed",
        allow_abbrev=False,
        help="embed every row (text, images) and write a table of id + embedding",
    )
    add_embed_job_arguments(embed)
    embed.set_defaults(run=run_embed_command, required_flags=())

    refresh = commands.add_parser(
        "refresh",
        allow_abbrev=False,
        help="add newly appended rows to a subset without reading the old rows",
        description="Score only the new rows under a saved model, draw from them, and publish the "
        "previous subset plus the new draws, weighted to stay unbiased for the whole table.",
    )
    add_refresh_arguments(refresh)
    refresh.set_defaults(run=run_refresh_command, required_flags=REQUIRED_REFRESH_FLAGS)

    evaluation = commands.add_parser(
        "evaluate",
        allow_abbrev=False,
        help="how well a scheme estimates the mean of a per-row loss, over many seeds, next to uniform",
        description="Given a table with an id, an embedding and a loss for every row, select with each "
        "scheme for every sample size and seed, and report the true mean loss, the weighted estimates, "
        "and the RMSE of the relative error next to uniform sampling with the same loss evaluations.",
    )
    evaluate.add_arguments(evaluation)
    add_running(evaluation, verbose=False)
    evaluation.set_defaults(run=run_evaluate_command, required_flags=())

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
    add_key_values(demo, "--spark-conf", "a Spark setting for the session this command starts, repeatable")
    demo.set_defaults(run=run_demo_command, required_flags=())
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line, with defaults from --config when given; exits 2 on bad flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    if getattr(args, "config", None):
        try:
            defaults = config_defaults(subparser, load_config_file(args.config), args.config)
        except ValueError as error:
            subparser.error(str(error))
        subparser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    missing = [name for name in args.required_flags if getattr(args, name) is None]
    if missing:
        subparser.error(
            "the following arguments are required: " + ", ".join("--" + m.replace("_", "-") for m in missing)
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {redact_text(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:  # publishing failed; the message says the old output is unchanged
        print(f"error: {redact_text(str(error))}", file=sys.stderr)
        return 1
    except Exception as error:
        message = _spark_error_line(error)
        if message is None or verbose:
            raise
        print(f"error: {redact_text(message)}", file=sys.stderr)
        return 1


def _spark_error_line(error: Exception) -> str | None:
    """One line for an error raised inside Spark (unreadable or corrupt input, missing table), else None.

    For a failed job that is the innermost Java cause, which names the file or row at fault.
    """
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    if isinstance(error, Py4JJavaError):
        cause = error.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.toString()).strip().splitlines()[0]
    if isinstance(error, PySparkException):
        text = str(error).strip()
        return text.splitlines()[0] if text else type(error).__name__
    return None


if __name__ == "__main__":
    sys.exit(main())
