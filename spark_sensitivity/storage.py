"""Reading inputs, and publishing outputs atomically through the Hadoop FileSystem API.

Outputs are built under a hidden staging folder next to the destination (same file system, so the
final move is a rename) and moved into place only when complete. A failed run leaves nothing at the
destination; an existing destination is replaced only when asked to. On object stores without an
atomic rename (S3) the final move is a copy: point --output at HDFS, a local or mounted file system,
or use a table format with atomic commits there.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructType, UserDefinedType

INPUT_FORMATS = ("parquet", "json", "csv", "orc", "delta", "table")


def read_input(spark: SparkSession, source: str, fmt: str, options: dict[str, str]) -> DataFrame:
    """The input as a DataFrame: a path in a file format, or a catalog table name (fmt='table')."""
    if fmt == "table":
        return spark.table(source)
    if fmt == "delta":
        from spark_sensitivity.delta import read_delta

        version = options.get("versionAsOf")
        return read_delta(spark, source, int(version) if version is not None else None)
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {', '.join(INPUT_FORMATS)}")
    reader = spark.read.options(**options)
    if fmt == "csv":
        reader = reader.option("header", options.get("header", "true")).option(
            "inferSchema", options.get("inferSchema", "true")
        )
    return reader.format(fmt).load(source)


OUTPUT_FORMATS = ("parquet", "delta", "json", "csv", "orc")


def write_table(df: DataFrame, path: str, fmt: str) -> None:
    """Writes a new table folder. CSV has no arrays or structs: those columns are written as JSON text."""
    if fmt == "delta":
        from spark_sensitivity.delta import write_delta

        write_delta(df, path)
        return
    if fmt == "csv":
        flat = (
            F.to_json(F.col(f.name)) if _is_nested(f.dataType) else F.col(f.name) for f in df.schema.fields
        )
        df.select(
            *(column.alias(f.name) for column, f in zip(flat, df.schema.fields, strict=True))
        ).write.option("header", "true").csv(path)
        return
    df.write.format(fmt).save(path)


def read_table(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """Reads a table folder written by :func:`write_table`."""
    if fmt == "delta":
        from spark_sensitivity.delta import read_delta

        return read_delta(spark, path)
    if fmt == "csv":
        return spark.read.option("header", "true").option("inferSchema", "true").csv(path)
    return spark.read.format(fmt).load(path)


def check_table_name(spark: SparkSession, name: str, fmt: str, overwrite: bool) -> None:
    """Fails before any work when a catalog table cannot be (re)registered for the output."""
    if fmt == "delta":
        raise ValueError(
            "--output-table needs a file format (parquet, json, csv, orc); register a Delta subset with your Delta catalog"
        )
    if spark.catalog.tableExists(name) and not overwrite:
        raise FileExistsError(f"table {name} already exists; pass --overwrite to replace it")


def register_table(spark: SparkSession, name: str, path: str, fmt: str) -> None:
    """Points a catalog table at a published folder (an external table: dropping it keeps the files)."""
    if spark.catalog.tableExists(name):
        spark.sql(f"DROP TABLE {name}")
    options = {"header": "true", "inferSchema": "true"} if fmt == "csv" else {}
    spark.catalog.createTable(name, path=path, source=fmt, **options)


def _is_nested(dtype: DataType) -> bool:
    return isinstance(dtype, (ArrayType, MapType, StructType, UserDefinedType))


class AtomicOutput:
    """A destination folder that appears complete or not at all."""

    def __init__(self, spark: SparkSession, destination: str, overwrite: bool):
        self._spark = spark
        jvm = spark.sparkContext._jvm
        self._Path = jvm.org.apache.hadoop.fs.Path
        self.destination = destination.rstrip("/")
        self._dest = self._Path(self.destination)
        self._fs = self._dest.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        run = uuid.uuid4().hex[:12]
        parent, name = self._dest.getParent(), self._dest.getName()
        self.staging = str(self._Path(parent, f".{name}.staging-{run}"))
        self._replaced = self._Path(parent, f".{name}.replaced-{run}")
        self.overwrite = overwrite

    @property
    def uri(self) -> str:
        """The destination as a fully qualified URI (what a catalog table must point at)."""
        return str(self._fs.makeQualified(self._dest).toString())

    def exists(self) -> bool:
        return bool(self._fs.exists(self._dest))

    def check_destination(self) -> None:
        """Fails before any work when the destination exists and overwriting was not asked for."""
        if self.exists() and not self.overwrite:
            raise FileExistsError(f"output {self.destination} already exists; pass --overwrite to replace it")

    def path(self, relative: str) -> str:
        return f"{self.staging}/{relative}"

    def write_bytes(self, relative: str, data: bytes) -> None:
        stream = self._fs.create(self._Path(self.path(relative)), True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def write_text(self, relative: str, text: str) -> None:
        self.write_bytes(relative, text.encode("utf-8"))

    def write_json(self, relative: str, value: Any) -> None:
        self.write_text(relative, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")

    def publish(self) -> None:
        """Moves the staging folder into place, replacing an old output only when allowed."""
        self.check_destination()
        moved_old = False
        if self._fs.exists(self._dest):
            if not self._fs.rename(self._dest, self._replaced):
                raise OSError(f"could not move the old output {self.destination} aside")
            moved_old = True
        if not self._fs.rename(self._Path(self.staging), self._dest):
            if moved_old:
                self._fs.rename(self._replaced, self._dest)
            raise OSError(f"could not move the finished output into {self.destination}")
        if moved_old:
            self._fs.delete(self._replaced, True)

    def abort(self) -> None:
        """Removes the staging folder; the destination is untouched."""
        self._fs.delete(self._Path(self.staging), True)
