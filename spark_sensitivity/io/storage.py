"""Reading inputs and writing tables; publishing the output folder is :mod:`spark_sensitivity.io.publish`."""

from __future__ import annotations

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructType, UserDefinedType

from spark_sensitivity.io.files import GLOB_CHARS, glob_escape
from spark_sensitivity.settings import INPUT_FORMATS


def read_input(
    spark: SparkSession, source: str, fmt: str, options: dict[str, str], catalog: dict[str, str] | None = None
) -> DataFrame:
    """The input as a DataFrame: a path in a file format, a catalog table name (fmt='table'), or an
    Iceberg table namespace.table in the pyiceberg catalog with the properties ``catalog``."""
    if fmt == "table":
        return spark.table(source)
    if fmt == "iceberg":
        from spark_sensitivity.io.iceberg import read_iceberg

        if catalog is None:  # only select's --input has --catalog-option
            raise ValueError("Iceberg tables are read only as the --input of select (with --catalog-option)")
        return read_iceberg(spark, source, catalog, options)
    if fmt == "delta":
        from spark_sensitivity.io.delta import read_delta

        version = options.get("versionAsOf")
        return read_delta(spark, source, int(version) if version is not None else None)
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {', '.join(INPUT_FORMATS)}")
    reader = spark.read.options(**options)
    if fmt == "csv":
        reader = reader.option("header", options.get("header", "true")).option(
            "inferSchema", options.get("inferSchema", "true")
        )
    try:
        frame = reader.format(fmt).load(source)
        _ = frame.schema  # over Spark Connect the schema is inferred only when asked for
        return frame
    except AnalysisException as error:
        if error.getCondition() == "UNABLE_TO_INFER_SCHEMA":
            raise ValueError(
                f"input {source} holds no {fmt} data files ({_why_no_files(options)})"
            ) from error
        special = sorted(set(GLOB_CHARS) & set(source))
        if error.getCondition() == "PATH_NOT_FOUND" and special and "\\" not in special:
            # Spark reads the input path as a glob pattern (date=2026-*/ is a feature), so a folder
            # literally named "[2026]" is not found by its own name.
            raise ValueError(
                f"input {source} does not exist; Spark reads --input as a glob pattern, in which "
                f"{' '.join(special)} are special: to read a path that holds them literally, escape "
                f"each with a backslash: {glob_escape(source)}"
            ) from error
        raise


# Reader options that leave files out: when nothing is left, they are the likely reason.
FILE_FILTERS = ("pathglobfilter", "modifiedbefore", "modifiedafter")


def _why_no_files(options: dict[str, str]) -> str:
    filters = [f"{key}={value}" for key, value in options.items() if key.lower() in FILE_FILTERS]
    if filters:
        return "none passes --input-option " + " and ".join(filters)
    return "only empty or hidden files such as _SUCCESS"


def _folder_format(fmt: str) -> str:
    # An Iceberg subset is committed to its table by spark_sensitivity.io.iceberg; the folder keeps Parquet.
    return "parquet" if fmt == "iceberg" else fmt


def write_table(df: DataFrame, path: str, fmt: str, location: str | None = None) -> None:
    """Writes a new table folder. CSV has no arrays or structs: those columns are written as JSON text.
    ``location``: where a folder written to staging will be published (a Delta table records it)."""
    fmt = _folder_format(fmt)
    if fmt == "delta":
        from spark_sensitivity.io.delta import record_location, write_delta

        write_delta(df, path)
        if location is not None:
            record_location(path, location)
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
    fmt = _folder_format(fmt)
    if fmt == "delta":
        from spark_sensitivity.io.delta import read_delta

        return read_delta(spark, path)
    # Our own folders are read by their exact name, even with [, {, * or ? in it.
    if fmt == "csv":
        return spark.read.option("header", "true").option("inferSchema", "true").csv(glob_escape(path))
    return spark.read.format(fmt).load(glob_escape(path))


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
