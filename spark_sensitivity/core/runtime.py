"""What kind of Spark session the code runs in."""

from __future__ import annotations

from pyspark.sql import SparkSession


def has_jvm(spark: SparkSession) -> bool:
    """True for a classic session; False over Spark Connect, which has no sparkContext or JVM."""
    try:
        return spark.sparkContext._jvm is not None
    except Exception:  # PySparkAttributeError (JVM_ATTRIBUTE_NOT_SUPPORTED) over Connect
        return False
