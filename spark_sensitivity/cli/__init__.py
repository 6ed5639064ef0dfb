"""The command line, ``spark-sensitivity select|dedup|embed|refresh|evaluate|demo``: one module per
command and the flags they share."""

from spark_sensitivity.cli.app import main

__all__ = ["main"]
