"""The Spark session a command runs in: classic (a JVM in this process) or Spark Connect."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession, is_remote


def spark_session(
    app_name: str,
    conf: Sequence[tuple[str, str]],
    quiet: bool = False,
    verbose: bool = False,
    remote: str | None = None,
) -> SparkSession:
    """The session a command runs in.

    Spark Connect when ``remote`` (``--remote``) or the SPARK_REMOTE variable names a server
    (``sc://host:15002``, or ``local[2]`` to start one here); otherwise the active classic session
    (under spark-submit) or a new one, local[*] unless a master is set.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    remote = remote or os.environ.get("SPARK_REMOTE")
    if not remote and is_remote():
        # A Connect environment set up by the platform (Databricks serverless, shared clusters).
        return SparkSession.builder.appName(app_name).getOrCreate()
    if remote:
        _quiet_jvm_logs(quiet and remote.startswith("local"))
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in conf:
            builder = builder.config(key, value)
        return builder.getOrCreate()

    from pyspark import SparkConf, SparkContext

    # Under spark-submit, --master and --conf values are JVM system properties; SparkConf sees them
    # only once the gateway is up. Defaults never override them.
    quiet_jvm = quiet and SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ
    _quiet_jvm_logs(quiet_jvm)
    SparkContext._ensure_initialized()
    submitted = SparkConf()
    defaults = {
        "spark.log.level": "INFO" if verbose else "ERROR" if quiet else "WARN",
        "spark.ui.showConsoleProgress": str(not quiet).lower(),
        "spark.master": os.environ.get("SPARK_MASTER", "local[*]"),
    }
    builder = SparkSession.builder
    # spark-submit's --name wins; without one it names the application after the script: ours instead.
    if submitted.get("spark.app.name", os.path.basename(sys.argv[0])) == os.path.basename(sys.argv[0]):
        builder = builder.appName(app_name)
    if quiet_jvm:
        del defaults["spark.log.level"]  # the quiet configuration has set it, without a message
    for key, value in defaults.items():
        if not submitted.contains(key):
            builder = builder.config(key, value)
    for key, value in conf:
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _quiet_jvm_logs(quiet: bool) -> None:
    """No start-up banner either: the JVM this process starts reads a quiet log4j2 configuration."""
    if not quiet:
        return
    quiet_logs = Path(__file__).with_name("log4j2-quiet.properties")
    opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
    if "log4j2.configurationFile" not in opts:
        os.environ["SPARK_SUBMIT_OPTS"] = f"{opts} -Dlog4j2.configurationFile={quiet_logs}".strip()
