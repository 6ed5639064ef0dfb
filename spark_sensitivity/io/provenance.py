"""What every manifest records about the software that wrote it and when."""

from __future__ import annotations

import datetime as dt
import platform

import numpy as np
import pyspark
from pyspark.sql import SparkSession

from spark_sensitivity.version import __version__


def versions(spark: SparkSession) -> dict[str, str | bool]:
    """The software versions, and whether the run went through Spark Connect (a client session)."""
    return {
        "spark_sensitivity": __version__,
        "spark": spark.version,
        "pyspark": pyspark.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "spark_connect": type(spark).__module__.startswith("pyspark.sql.connect"),
    }


def utc_timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
