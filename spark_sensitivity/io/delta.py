"""Delta Lake tables: Spark's native ``delta`` format when its jars are loaded, else delta-rs.

Without the Delta jars (pip ``delta-spark`` fetches them from Maven at run time), tables are read and
written through a Spark Python data source over the ``deltalake`` package (delta-rs):

- write: each task writes its rows as one Parquet file into the table folder and returns the file's
  name, size and row count; the driver's ``commit`` adds all files in ONE Delta transaction, so
  readers see the whole job or nothing. No row passes through the driver. A failed job commits
  nothing and ``abort`` deletes its files; a task still running when the job was cancelled may
  leave a file behind, never referenced by the log (VACUUM removes it).
- read: the driver lists the data files of the requested version; each file is one Spark partition,
  read with pyarrow on the workers. Time travel is the ``versionAsOf`` option.

The data source writes unpartitioned tables; it reads partitioned ones too.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

DELTA_RS_FORMAT = "deltars"
NATIVE_DELTA_CLASS = "org.apache.spark.sql.delta.sources.DeltaDataSource"
WRITE_MODES = ("append", "overwrite", "error", "errorifexists", "ignore")


def _deltalake() -> ModuleType:
    """The deltalake package, imported only where a table is touched (it is an optional extra)."""
    try:
        import deltalake
        import deltalake.transaction
    except ImportError as error:
        raise ImportError(
            "Delta tables without the Delta Lake jars need the deltalake package: "
            "pip install 'spark-sensitivity[delta]'"
        ) from error
    return deltalake


def _table_uri(path: str) -> str:
    """A location delta-rs and pyarrow agree on: local paths made absolute, URIs left as they are."""
    if urlparse(path).scheme in ("", "file"):
        return os.path.abspath(path.removeprefix("file://"))
    return path.rstrip("/")


@dataclass
class _FileWritten(WriterCommitMessage):
    """What a task wrote: a data file relative to the table root, or nothing (an empty task)."""

    path: str | None
    size: int
    rows: int


class _DeltaRsWriter(DataSourceArrowWriter):
    def __init__(self, uri: str, schema: StructType, overwrite: bool):
        self.uri = uri
        # Delta's timestamp type is UTC; Spark hands timestamps to Arrow as UTC instants.
        self.arrow_schema = to_arrow_schema(schema, timezone="UTC")
        self.overwrite = overwrite
        # Every file of this job starts with this prefix, so abort can find those no message names.
        self.prefix = f"part-{uuid.uuid4().hex[:16]}-"

    def write(self, iterator: Iterator[pa.RecordBatch]) -> _FileWritten:
        fs, root = pyarrow.fs.FileSystem.from_uri(self.uri)
        name = f"{self.prefix}{uuid.uuid4().hex[:16]}.snappy.parquet"
        writer: pq.ParquetWriter | None = None
        rows = 0
        try:
            for batch in iterator:
                if writer is None:
                    fs.create_dir(root, recursive=True)
                    writer = pq.ParquetWriter(f"{root}/{name}", self.arrow_schema, filesystem=fs)
                writer.write_batch(batch.cast(self.arrow_schema))
                rows += batch.num_rows
        except BaseException:
            if writer is not None:  # no commit message will name this file: remove it now
                writer.close()
                fs.delete_file(f"{root}/{name}")
            raise
        if writer is None:
            return _FileWritten(None, 0, 0)
        writer.close()
        return _FileWritten(name, fs.get_file_info(f"{root}/{name}").size, rows)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        dl = _deltalake()
        now = int(time.time() * 1000)
        adds = [
            dl.transaction.AddAction(m.path, m.size, {}, now, True, json.dumps({"numRecords": m.rows}))
            for m in messages
            if isinstance(m, _FileWritten) and m.path is not None
        ]
        schema = dl.Schema.from_arrow(self.arrow_schema)
        if dl.DeltaTable.is_deltatable(self.uri):
            mode = "overwrite" if self.overwrite else "append"
            dl.DeltaTable(self.uri).create_write_transaction(adds, mode, schema)
        else:
            # mode "error": if another job created the table meanwhile, this commit fails, not mixes.
            dl.transaction.create_table_with_add_actions(self.uri, schema, adds, mode="error")

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        """Deletes this job's files, including those of failed tasks (they sent no message)."""
        fs, root = pyarrow.fs.FileSystem.from_uri(self.uri)
        if fs.get_file_info(root).type != pyarrow.fs.FileType.Directory:
            return
        for info in fs.get_file_info(pyarrow.fs.FileSelector(root)):
            if info.base_name.startswith(self.prefix):
                fs.delete_file(info.path)


class _DataFile(InputPartition):
    """One data file, and the table schema (it fills partition columns from the file's values)."""

    def __init__(self, fragment: Any, schema: pa.Schema):
        self.fragment = fragment
        self.schema = schema


class _DeltaRsReader(DataSourceReader):
    def __init__(self, uri: str, version: int | None):
        self.uri = uri
        self.version = version

    def partitions(self) -> Sequence[InputPartition]:
        dataset = _deltalake().DeltaTable(self.uri, version=self.version).to_pyarrow_dataset()
        return [_DataFile(fragment, dataset.schema) for fragment in dataset.get_fragments()]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        # A table without data files gets one placeholder partition from Spark: it reads nothing.
        if isinstance(partition, _DataFile):
            yield from partition.fragment.to_batches(schema=partition.schema)


class DeltaRsDataSource(DataSource):
    """``spark.read.format("deltars")`` and ``df.write.format("deltars")`` over delta-rs.

    Options: ``path`` (what ``load`` and ``save`` pass), ``versionAsOf`` for reads, and
    ``overwriteSchema=true`` to let an overwrite change the table's columns.
    """

    @classmethod
    def name(cls) -> str:
        return DELTA_RS_FORMAT

    def _uri(self) -> str:
        path = self.options.get("path")
        if not path:
            raise ValueError("the deltars data source needs a table path: load(path) or save(path)")
        return _table_uri(path)

    def _version(self) -> int | None:
        version = self.options.get("versionAsOf")
        return None if version is None else int(version)

    def schema(self) -> StructType:
        table = _deltalake().DeltaTable(self._uri(), version=self._version())
        return from_arrow_schema(table.to_pyarrow_dataset().schema)

    def reader(self, schema: StructType) -> DataSourceReader:
        return _DeltaRsReader(self._uri(), self._version())

    def writer(self, schema: StructType, overwrite: bool) -> _DeltaRsWriter:
        writer = _DeltaRsWriter(self._uri(), schema, overwrite)
        replace_schema = overwrite and self.options.get("overwriteSchema", "false").lower() == "true"
        _check_existing_table(writer.uri, writer.arrow_schema, replace_schema)
        return writer


def _check_existing_table(uri: str, arrow_schema: pa.Schema, replace_schema: bool) -> None:
    """Before any task runs: the rows must fit the table's columns (as native Delta demands)."""
    dl = _deltalake()
    if not dl.DeltaTable.is_deltatable(uri):
        return
    table = dl.DeltaTable(uri)
    partitioned = table.metadata().partition_columns
    if partitioned:
        raise ValueError(
            f"Delta table {uri} is partitioned by {partitioned}; the delta-rs writer writes "
            "unpartitioned tables only"
        )
    if replace_schema:
        return
    have = {field.name: field.type for field in table.schema().fields}
    new = {field.name: field.type for field in dl.Schema.from_arrow(arrow_schema).fields}
    for name in sorted(have.keys() | new.keys()):
        if have.get(name) != new.get(name):
            raise ValueError(
                f"column {name!r} is {new.get(name)} in the rows but {have.get(name)} in Delta table "
                f"{uri}; cast the rows, or overwrite with overwriteSchema=true"
            )


def native_delta_available(spark: SparkSession) -> bool:
    """Whether Spark's own Delta data source is on the class path (one JVM lookup, no job)."""
    # A Spark Connect client has no JVM to ask: it uses the delta-rs source.
    jvm = getattr(getattr(spark, "sparkContext", None), "_jvm", None)
    if jvm is None:
        return False
    return bool(jvm.org.apache.spark.util.Utils.classIsLoadable(NATIVE_DELTA_CLASS))


def delta_format(spark: SparkSession) -> str:
    """The format name to use for Delta tables in this session ("delta" or the delta-rs source)."""
    if native_delta_available(spark):
        return "delta"
    spark.dataSource.register(DeltaRsDataSource)
    return DELTA_RS_FORMAT


def is_delta_table(path: str) -> bool:
    """Whether ``path`` holds a Delta table (reads the log's existence only)."""
    return _deltalake().DeltaTable.is_deltatable(_table_uri(path))


def delta_version(path: str) -> int:
    """The latest version of the Delta table at ``path``."""
    return _deltalake().DeltaTable(_table_uri(path)).version()


def read_delta(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """The Delta table at ``path``, at ``version`` when given (time travel), else the latest."""
    fmt = delta_format(spark)
    if fmt == DELTA_RS_FORMAT and not is_delta_table(path):
        raise ValueError(f"no Delta table at {path}")
    reader = spark.read.format(fmt)
    if version is not None:
        reader = reader.option("versionAsOf", str(version))
    return reader.load(path)


def record_location(path: str, location: str) -> None:
    """Names ``location`` as the table's place in the commit that created the table at ``path``.

    A table written in a staging folder and then renamed into place would otherwise keep the
    staging folder in its history: delta-rs records the folder it wrote to as the CREATE TABLE
    commit's ``operationParameters.location`` (DESCRIBE HISTORY shows it). Only that field of the
    staged, not yet published version 0 is rewritten; readers use no other part of commitInfo."""
    fs, root = pyarrow.fs.FileSystem.from_uri(_table_uri(path))
    first = f"{root}/_delta_log/{0:020d}.json"
    if fs.get_file_info(first).type != pyarrow.fs.FileType.File:
        return
    with fs.open_input_stream(first) as stream:
        lines = stream.read().decode("utf-8").splitlines()
    actions = [json.loads(line) for line in lines if line.strip()]
    parameters = [a["commitInfo"].get("operationParameters", {}) for a in actions if "commitInfo" in a]
    if not any("location" in p for p in parameters):
        return
    for found in parameters:
        if "location" in found:
            found["location"] = location
    with fs.open_output_stream(first) as stream:
        stream.write("".join(json.dumps(a, separators=(",", ":")) + "\n" for a in actions).encode("utf-8"))


def write_delta(df: DataFrame, path: str, mode: str = "error", overwrite_schema: bool = False) -> None:
    """Writes ``df`` to the Delta table at ``path`` in one commit (one new table version).

    ``mode``: append, overwrite (a new version replacing the rows; older versions stay readable),
    error/errorifexists (fail if the table exists) or ignore (do nothing if it exists). The rows'
    columns must match the table's unless an overwrite passes ``overwrite_schema``. ML Vector columns
    are stored in their struct form; convert them with ``vector_to_array`` to keep them usable.
    """
    if mode not in WRITE_MODES:
        raise ValueError(f"unknown write mode {mode!r}; expected one of {', '.join(WRITE_MODES)}")
    fmt = delta_format(df.sparkSession)
    spark_mode = mode
    if fmt == DELTA_RS_FORMAT:
        # Python data sources know append and overwrite only; the commit creates a missing table.
        if mode in ("error", "errorifexists", "ignore") and is_delta_table(path):
            if mode == "ignore":
                return
            raise FileExistsError(f"Delta table {path} already exists; append to it or overwrite it")
        spark_mode = "overwrite" if mode == "overwrite" else "append"
        # Checked here too so bad input fails with a plain ValueError, not a wrapped worker error.
        arrow_schema = to_arrow_schema(df.schema, timezone="UTC")
        _check_existing_table(_table_uri(path), arrow_schema, mode == "overwrite" and overwrite_schema)
    writer = df.write.format(fmt).mode(spark_mode)
    writer.option("overwriteSchema", str(overwrite_schema).lower()).save(path)
