"""Command line: ``spark-sensitivity select|dedup|embed|refresh|evaluate|demo``."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from spark_sensitivity.cli.config_file import config_defaults, load_config_file
from spark_sensitivity.cli.dedup import REQUIRED_DEDUP_FLAGS, add_dedup_command_arguments, run_dedup_command
from spark_sensitivity.cli.demo import add_demo_arguments, run_demo_command
from spark_sensitivity.cli.embed import REQUIRED_EMBED_FLAGS, add_embed_job_arguments, run_embed_command
from spark_sensitivity.cli.evaluate import (
    REQUIRED_EVALUATE_FLAGS,
    add_evaluate_arguments,
    run_evaluate_command,
)
from spark_sensitivity.cli.refresh import REQUIRED_REFRESH_FLAGS, add_refresh_arguments, run_refresh_command
from spark_sensitivity.cli.select import REQUIRED_SELECT_FLAGS, add_select_arguments, run_select_command
from spark_sensitivity.io.publish import PUBLISHED
from spark_sensitivity.io.redaction import redact_text
from spark_sensitivity.io.session import InterruptHandler, run_log, runs_whole
from spark_sensitivity.settings import SettingError, setting_flags

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
        REQUIRED_EMBED_FLAGS,
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
        REQUIRED_EVALUATE_FLAGS,
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
    if not verbose:  # py4j logs every connection it closes
        logging.getLogger("py4j").setLevel(logging.WARNING)
    with InterruptHandler() as interrupts:
        published_before = len(PUBLISHED)
        try:
            code = args.run(args)
        except BaseException as error:
            failed = _failure_code(args, error, interrupts, PUBLISHED[published_before:])
            if failed is None:
                raise
            return failed
        return _interrupted_code(args, interrupts, PUBLISHED[published_before:]) or code


@runs_whole
def _failure_code(
    args: argparse.Namespace, error: BaseException, interrupts: InterruptHandler, published: list[str]
) -> int | None:
    """The exit code of a failed command, its one line printed; None to let the error through."""
    interrupts.disarm()
    if isinstance(error, KeyboardInterrupt):  # raised by code other than ours: as a SIGINT
        interrupts.signum = interrupts.signum or signal.SIGINT
    if interrupts.signum is not None:  # whatever the error the interrupt caused (a cancelled job)
        return _interrupted_code(args, interrupts, published)
    stopped = jvm_stopped_line(error, run_log())
    if stopped is not None:
        print(f"error: {stopped} (the full log is in {_saved_trace(error)})", file=sys.stderr)
        return 1
    if isinstance(error, OSError | ValueError):
        run_log().unlink(missing_ok=True)  # kept only for a failure inside Spark
        # A library error names settings as library callers set them; here they are flags.
        message = error.naming(setting_flags()) if isinstance(error, SettingError) else str(error)
        print(f"error: {redact_text(message)}", file=sys.stderr)
        # An OSError other than these: publishing failed, and the message says the old output is unchanged.
        return 2 if isinstance(error, ValueError | FileExistsError | FileNotFoundError) else 1
    message = _spark_error_line(error) if isinstance(error, Exception) else None
    if message is None or getattr(args, "verbose", False):
        run_log().unlink(missing_ok=True)
        return None
    print(f"error: {redact_text(message)} (the full trace is in {_saved_trace(error)})", file=sys.stderr)
    return 1


def _saved_trace(error: BaseException) -> Path:
    """The run's log file (Spark's own logs, when this command started the JVM) with the trace added."""
    log = run_log()
    with open(log, "a", encoding="utf-8") as stream:
        stream.write(redact_text("".join(traceback.format_exception(error))))
    return log


@runs_whole
def _interrupted_code(args: argparse.Namespace, interrupts: InterruptHandler, published: list[str]) -> int:
    """For an interrupted command: its one line printed, and 128 + the signal's number; else 0."""
    interrupts.disarm()
    run_log().unlink(missing_ok=True)  # kept only for a failure inside Spark
    if interrupts.signum is None:
        return 0
    output = getattr(args, "output", None)
    if published:
        line = f"interrupted; {', '.join(published)} was published, whole, before the interrupt"
    elif output:
        line = f"interrupted; nothing was published; {output} is unchanged"
    else:
        line = "interrupted; nothing was published"
    print(redact_text(line), file=sys.stderr)
    return 128 + interrupts.signum


# A JVM's own report of running out of memory, in its log.
OUT_OF_MEMORY = re.compile(r"java\.lang\.OutOfMemoryError: [^\n]+")


def jvm_stopped_line(error: BaseException, log: Path) -> str | None:
    """One line when the command lost its Spark JVM (py4j can no longer connect: the JVM exited,
    most often out of heap), naming an OutOfMemoryError when ``log`` (the JVM's log) holds one;
    else None."""
    from py4j.protocol import Py4JNetworkError

    if not isinstance(error, ConnectionRefusedError | Py4JNetworkError):
        return None
    text = log.read_text(errors="replace") if log.exists() else ""
    found = OUT_OF_MEMORY.search(text)
    cause = f"out of memory ({found.group(0)})" if found else "most likely out of memory"
    return (
        f"the Spark JVM stopped, {cause}, in the stage logged as stopped above: give it more memory "
        "(--spark-conf spark.driver.memory=8g on one machine, the executors' memory on a cluster)"
    )


# What Spark says when a Python worker process dies under a task (the OOM killer, a segfault).
WORKER_CRASH = "Python worker exited unexpectedly"
# Spark's FAILED_READ_FILE error names the file a task could not read; its cause says why.
READ_FILE = re.compile(r"error while reading file (\S+?)\.?(?:\s|$)")


def _spark_error_line(error: Exception) -> str | None:
    """One line for an error raised inside Spark (unreadable or corrupt input, missing table), else None.

    For a failed job that is the innermost Java cause, which says what went wrong, after the file it
    happened in when Spark names one (a corrupt or truncated Parquet file).
    """
    chain = _error_chain(error)
    if chain is None:
        return None
    if any(WORKER_CRASH in line for line in chain):
        return (
            "a Python worker crashed, most likely out of memory, in the stage logged as stopped above: "
            "give the executors more memory (spark.executor.memory, spark.executor.pyspark.memory) or "
            "more, smaller partitions; for dedup, lower --dedup-max-cluster-rows"
        )
    for line in chain:
        read = READ_FILE.search(line)
        if read and line != chain[-1]:
            return f"cannot read the input file {read.group(1)}: {chain[-1]}"
    return chain[-1]


def _error_chain(error: Exception) -> list[str] | None:
    """The first line of the error and of each of its causes, outermost first; None when the error
    does not come from Spark."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    if isinstance(error, Py4JJavaError):
        chain, cause = [], error.java_exception
        while cause is not None:
            chain.append((str(cause.toString()).strip().splitlines() or [""])[0])
            cause = cause.getCause()
        return chain
    if isinstance(error, PySparkException):
        lines = str(error).strip().splitlines() or [type(error).__name__]
        # Over Spark Connect, the server's causes come as "Caused by:" lines of the message.
        return [lines[0], *(line.split(":", 1)[1].strip() for line in lines if line.startswith("Caused by:"))]
    return None


if __name__ == "__main__":
    sys.exit(main())
