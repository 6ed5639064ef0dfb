"""Command line: ``spark-sensitivity select|dedup|embed|refresh|evaluate|demo``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from spark_sensitivity.cli.config_file import config_defaults, load_config_file
from spark_sensitivity.cli.dedup import REQUIRED_DEDUP_FLAGS, add_dedup_command_arguments, run_dedup_command
from spark_sensitivity.cli.demo import add_demo_arguments, run_demo_command
from spark_sensitivity.cli.embed import add_embed_job_arguments, run_embed_command
from spark_sensitivity.cli.evaluate import add_evaluate_arguments, run_evaluate_command
from spark_sensitivity.cli.refresh import REQUIRED_REFRESH_FLAGS, add_refresh_arguments, run_refresh_command
from spark_sensitivity.cli.select import REQUIRED_SELECT_FLAGS, add_select_arguments, run_select_command
from spark_sensitivity.io.redaction import redact_text

Command = tuple[str, str, str | None, Callable, Callable, tuple[str, ...]]
# name, help, description, the function adding its flags, the function running it, required flags
COMMANDS: tuple[Command, ...] = (
    (
        "select",
        "select a weighted subset of a table of embeddings",
        "Cluster the embeddings (k-means on a sample: on the driver, or iterated on the executors when "
        "the sample is large; MLlib with --fit-engine mllib), pick --sample-size rows with --strategy "
        "(auto by default, which says what it chose and why), and publish subset/, clusters/ and "
        "manifest.json.",
        add_select_arguments,
        run_select_command,
        REQUIRED_SELECT_FLAGS,
    ),
    (
        "dedup",
        "remove near-duplicate rows (cosine >= 1 - eps inside each k-means cluster)",
        "Cluster the unit embeddings with k-means, compare rows inside each cluster on the executors, "
        "and publish duplicates/, kept/ and manifest.json.",
        add_dedup_command_arguments,
        run_dedup_command,
        REQUIRED_DEDUP_FLAGS,
    ),
    (
        "embed",
        "embed every row (text, images) and write a table of id + embedding",
        None,
        add_embed_job_arguments,
        run_embed_command,
        (),
    ),
    (
        "refresh",
        "add newly appended rows to a subset without reading the old rows",
        "Score only the new rows under a saved model, draw from them, and publish the previous subset "
        "plus the new draws, weighted to stay unbiased for the whole table.",
        add_refresh_arguments,
        run_refresh_command,
        REQUIRED_REFRESH_FLAGS,
    ),
    (
        "evaluate",
        "how well a scheme estimates the mean of a per-row loss, over many seeds, next to uniform",
        "Given a table with an id, an embedding and a loss for every row, select with each scheme for "
        "every sample size and seed, and report the true mean loss, the weighted estimates, and the "
        "RMSE of the relative error next to uniform sampling with the same loss evaluations.",
        add_evaluate_arguments,
        run_evaluate_command,
        (),
    ),
    (
        "demo",
        "run the selection on Fashion-MNIST and show how representative it is",
        None,
        add_demo_arguments,
        run_demo_command,
        (),
    ),
)


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's parser, by name."""
    parser = argparse.ArgumentParser(
        prog="spark-sensitivity",
        description="Pick a small weighted subset that represents a large table "
        "(clustering-based sensitivity sampling on Spark).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    subparsers = {}
    for name, help, description, add_arguments, run, required in COMMANDS:
        command = commands.add_parser(name, allow_abbrev=False, help=help, description=description)
        add_arguments(command)
        command.set_defaults(run=run, required_flags=required)
        subparsers[name] = command
    return parser, subparsers


def build_parser() -> argparse.ArgumentParser:
    return build_parsers()[0]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line, with defaults from --config when given; exits 2 on bad flags."""
    parser, subparsers = build_parsers()
    args = parser.parse_args(argv)
    subparser = subparsers[args.command]
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
