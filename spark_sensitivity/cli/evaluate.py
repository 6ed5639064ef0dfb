"""``spark-sensitivity evaluate``: how well each scheme estimates the mean of a per-row loss, or
(``--label-col``) whether a classifier trained on the selected subset beats one trained on a uniform
subset of the same size."""

from __future__ import annotations

import argparse

from spark_sensitivity import settings
from spark_sensitivity.cli.flags import add_running, add_settings, config_from_args, required_flags
from spark_sensitivity.io.session import spark_session
from spark_sensitivity.settings import EvaluateConfig
from spark_sensitivity.workflows.evaluate import format_report, run_evaluate
from spark_sensitivity.workflows.evaluate_labels import format_label_report, run_evaluate_labels

GROUPS = (settings.INPUT, settings.EVALUATION, settings.OUTPUT)
REQUIRED_EVALUATE_FLAGS = required_flags(EvaluateConfig)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` flags (declared in ``settings.EvaluateConfig``)."""
    add_settings(parser, EvaluateConfig, GROUPS)
    add_running(parser, verbose=False)


def run_evaluate_command(args: argparse.Namespace) -> int:
    spark = spark_session("spark-sensitivity evaluate", args.spark_conf, args.quiet, remote=args.remote)
    config = config_from_args(EvaluateConfig, args)
    if config.label_col is not None:
        text = format_label_report(run_evaluate_labels(spark, config))
    else:
        text = format_report(run_evaluate(spark, config))
    if not args.quiet:
        print(text)
    return 0
