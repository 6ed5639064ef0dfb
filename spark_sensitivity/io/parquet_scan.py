"""The assignment pass reading Parquet files itself: the driver splits the files as Spark would, and
each Python task reads its row groups with pyarrow.

Spark's own path scans the files in the JVM and sends every Arrow batch, embeddings included, to the
Python worker, which at 1M x 128 took as long as the nearest-center products (docs/PERFORMANCE.md).
Here the embeddings go from the file into numpy in the worker, and only the id, cluster and cost go
back to the JVM. It is used only where it reads exactly the rows the DataFrame holds: a plain read
of Parquet files, at most a choice of columns on top (:func:`why_not_direct`).

Every assignment task unpickles this module: it imports pyarrow and the standard library alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from spark_sensitivity.core.kmeans.batches import DirectScan

# Reader options that only choose which files are read (inputFiles() lists the outcome) or how
# their schemas merge; any other option could change the rows' values, and Spark reads instead.
FILE_CHOICE_OPTIONS = frozenset(
    {
        "path",
        "paths",
        "pathglobfilter",
        "recursivefilelookup",
        "modifiedbefore",
        "modifiedafter",
        "mergeschema",
    }
)
# Schemes whose files every executor's pyarrow opens as Spark does; auto leaves object stores
# (s3a, abfss, gs) to Spark, whose credentials pyarrow does not see.
LOCAL_SCHEMES = frozenset({"file"})
# Id types that pyarrow and Spark read from Parquet to the same values.
EXACT_ID_TYPES = frozenset({"byte", "short", "integer", "long", "string", "binary"})
_PARQUET_RELATION = "org.apache.spark.sql.execution.datasources.LogicalRelation"


@dataclass(frozen=True)
class Split:
    """A byte range of one file; a row group belongs to the split that holds its midpoint."""

    uri: str
    start: int
    end: int


@dataclass(frozen=True)
class ParquetParts:
    """Reads the splits a task is given (``parts[i]`` for each index ``i`` in its input batches) as
    Arrow batches of the columns ``schema`` names, cast to the types Spark gives them."""

    parts: tuple[tuple[Split, ...], ...]
    schema: pa.Schema
    batch_rows: int
    required: tuple[str, ...]
    case_sensitive: bool = False  # spark.sql.caseSensitive: how Spark matches a file's column names

    def __call__(self, tasks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in tasks:
            for index in batch.column(0).to_pylist():
                for split in self.parts[index]:
                    yield from self._read(split)

    def _read(self, split: Split) -> Iterator[pa.RecordBatch]:
        filesystem, path = file_system(split.uri)
        with filesystem.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            groups = [
                i
                for i in range(parquet.metadata.num_row_groups)
                if split.start <= row_group_midpoint(parquet.metadata.row_group(i)) < split.end
            ]
            if not groups:
                return
            found = self._names_in_file(parquet.schema_arrow.names)
            for name in self.required:
                if name not in found:
                    # A partition column lives in the folder names, not in the file.
                    raise ValueError(
                        f"column {name!r} is not in the Parquet file {split.uri}; read the input through "
                        "Spark with --assign-reader spark (assignReader='spark')"
                    )
            for batch in parquet.iter_batches(
                batch_size=self.batch_rows, row_groups=groups, columns=list(found.values()), use_threads=False
            ):
                yield conformed(batch, self.schema, found)

    def _names_in_file(self, names: Sequence[str]) -> dict[str, str]:
        """Each wanted column's name in one file, matched as Spark matches them."""
        if self.case_sensitive:
            return {field.name: field.name for field in self.schema if field.name in names}
        lowered = {name.lower(): name for name in names}
        return {
            field.name: lowered[field.name.lower()] for field in self.schema if field.name.lower() in lowered
        }


def conformed(batch: pa.RecordBatch, schema: pa.Schema, names: dict[str, str]) -> pa.RecordBatch:
    """``batch`` with the columns and types of ``schema`` (``names``: each one's name in the batch):
    a column one file lacks is null, as Spark reads it under a merged schema."""
    columns = []
    for field in schema:
        if field.name not in names:
            columns.append(pa.nulls(batch.num_rows, field.type))
        else:
            columns.append(batch.column(names[field.name]).cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def row_group_midpoint(group: pq.RowGroupMetaData) -> int:
    """The byte in the middle of a row group's column chunks, the rule Parquet readers split by."""
    first = group.column(0)
    start = first.dictionary_page_offset if first.has_dictionary_page else first.data_page_offset
    size = sum(group.column(i).total_compressed_size for i in range(group.num_columns))
    return int(start) + size // 2


def plan_parts(sizes: Sequence[tuple[str, int]], max_split: int, open_cost: int) -> list[list[Split]]:
    """Files cut into splits of at most ``max_split`` bytes, packed into parts as Spark packs file
    splits into partitions (largest first, a part closed when the next split would overflow it,
    each file counted ``open_cost`` bytes more)."""
    splits = [
        Split(uri, start, min(start + max_split, size))
        for uri, size in sizes
        for start in range(0, max(size, 1), max_split)
    ]
    splits.sort(key=lambda split: split.end - split.start, reverse=True)
    parts: list[list[Split]] = []
    current: list[Split] = []
    filled = 0
    for split in splits:
        length = split.end - split.start
        if current and filled + length > max_split:
            parts.append(current)
            current, filled = [], 0
        current.append(split)
        filled += length + open_cost
    if current:
        parts.append(current)
    return parts


def split_bytes(total: int, files: int, parallelism: int, max_partition: int, open_cost: int) -> int:
    """Spark's largest split: at most spark.sql.files.maxPartitionBytes, smaller when that would
    leave cores idle (FilePartition.maxSplitBytes)."""
    per_core = (total + files * open_cost) // max(parallelism, 1)
    return max(1, min(max_partition, max(open_cost, per_core)))


# Hadoop's names for the object stores pyarrow opens under another scheme.
_PYARROW_SCHEMES = {"s3a": "s3", "s3n": "s3"}
# What a URI keeps as it is when its other characters are percent-encoded (existing escapes too).
_URI_SAFE = ":/?#[]@!$&'()*+,;=%~"


def file_system(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for a file as Spark lists it, and the file's path in it. Hadoop leaves
    characters outside ASCII unescaped in the URI, which pyarrow's URI parser refuses: a local
    file's path is decoded here, another URI gets them percent-encoded."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        return pafs.LocalFileSystem(), unquote(parts.path) if scheme else uri
    rest = uri.partition("://")[2]
    encoded = quote(f"{_PYARROW_SCHEMES.get(scheme, scheme)}://{rest}", safe=_URI_SAFE)
    return pafs.FileSystem.from_uri(encoded)


def file_sizes(uris: Sequence[str]) -> list[tuple[str, int]]:
    """Each file's size, asked of its file system (one listing per file system, not a read); a
    FileNotFoundError for a file this process cannot see (a Spark Connect client on another host)."""
    by_root: dict[tuple[str, str], list[str]] = {}
    for uri in uris:
        parts = urlsplit(uri)
        by_root.setdefault((parts.scheme, parts.netloc), []).append(uri)
    sizes: dict[str, int] = {}
    for group in by_root.values():
        filesystem, _ = file_system(group[0])
        paths = [file_system(uri)[1] for uri in group]
        for uri, info in zip(group, filesystem.get_file_info(paths), strict=True):
            if info.type != pafs.FileType.File:
                raise FileNotFoundError(f"{uri} is not a file this process can see")
            sizes[uri] = int(info.size or 0)
    return [(uri, sizes[uri]) for uri in uris]


def why_spark_reads(df: DataFrame, columns: Sequence[str], requested: str, whitened: bool) -> str | None:
    """Why the assignment pass reads ``df`` through Spark's scan under the reader ``requested``
    (auto, spark or pyarrow), or None when its tasks read the files themselves. A SettingError
    when pyarrow is asked for and cannot read exactly ``df``'s rows."""
    from spark_sensitivity.settings import SettingError

    if requested == "spark":
        return "assignReader is spark"
    why = "the embeddings are whitened first" if whitened else None
    if why is None:
        why = why_not_direct(df, columns, any_scheme=requested == "pyarrow")
    if why is not None and requested == "pyarrow":
        raise SettingError(
            f"assignReader is pyarrow, which reads only a plain read of Parquet files; the input is not one: {why}",
            "assignReader",
        )
    return None if why is None else f"Spark's scan: {why}"


def why_not_direct(df: DataFrame, columns: Sequence[str], any_scheme: bool) -> str | None:
    """None when the tasks can read ``columns`` of ``df`` from its files and get exactly its rows:
    a plain read of Parquet files, with no filter, limit, join or computed column on top, with
    reader options that only choose files, and columns whose values pyarrow and Spark read alike
    (``columns[0]`` the id); else why not, in a few words."""
    from spark_sensitivity.core.runtime import has_jvm

    why = _why_not_plain_classic(df, columns) if has_jvm(df.sparkSession) else _why_not_plain_connect(df)
    if why is not None:
        return why
    conf = df.sparkSession.conf
    for key in ("spark.sql.files.ignoreCorruptFiles", "spark.sql.files.ignoreMissingFiles"):
        if (conf.get(key, "false") or "false").lower() == "true":
            return f"{key} is set, and a task that reads a file itself cannot skip it as Spark would"
    id_type = df.schema[columns[0]].dataType.typeName()
    if id_type not in EXACT_ID_TYPES:
        # Timestamps (INT96, calendar rebasing) and decimals are read by rules pyarrow may not share.
        return f"its id column {columns[0]} is a {id_type}"
    files = df.inputFiles()
    if not files:
        return "it lists no files"
    schemes = sorted({urlsplit(uri).scheme or "file" for uri in files})
    if not any_scheme and not set(schemes) <= LOCAL_SCHEMES:
        return f"its files are on {', '.join(schemes)}, which auto leaves to Spark's reader"
    return None


def _why_not_plain_classic(df: DataFrame, columns: Sequence[str]) -> str | None:
    plan = df._jdf.queryExecution().optimizedPlan()
    if plan.nodeName() == "Project":
        expressions = plan.projectList()
        for i in range(expressions.size()):
            if expressions.apply(i).getClass().getSimpleName() != "AttributeReference":
                return "it computes a column"
        plan = plan.child()
    if plan.getClass().getName() != _PARQUET_RELATION:
        return f"it is not a plain file read (its plan is a {plan.nodeName()})"
    relation = plan.relation()
    if relation.getClass().getSimpleName() != "HadoopFsRelation":
        return "it is not a read of files"
    if relation.fileFormat().getClass().getSimpleName() != "ParquetFileFormat":
        return "its files are not Parquet"
    options = _scala_keys(relation.options())
    if other := sorted(key for key in options if key.lower() not in FILE_CHOICE_OPTIONS):
        return f"it is read with the option {other[0]}"
    partition_columns = {name.lower() for name in relation.partitionSchema().fieldNames()}
    if used := [name for name in columns if name.lower() in partition_columns]:
        return f"its column {used[0]} is a partition column"
    return None


def _scala_keys(options: Any) -> list[str]:
    keys = options.keys().iterator()
    found = []
    while keys.hasNext():
        found.append(str(keys.next()))
    return found


def _why_not_plain_connect(df: DataFrame) -> str | None:
    # The plan as the client sends it to the server (Spark Connect's protobuf relation).
    relation = df._plan.plan(df.sparkSession.client)
    if relation.WhichOneof("rel_type") == "project":
        for expression in relation.project.expressions:
            if expression.WhichOneof("expr_type") != "unresolved_attribute":
                return "it computes a column"
        relation = relation.project.input
    kind = relation.WhichOneof("rel_type")
    if kind != "read" or relation.read.WhichOneof("read_type") != "data_source":
        return f"it is not a plain file read (its plan is a {kind})"
    source = relation.read.data_source
    if source.format.lower() != "parquet":
        return "its files are not Parquet"
    if source.schema or source.predicates or relation.read.is_streaming:
        return "it is read with a schema, predicates or as a stream"
    if other := sorted(key for key in source.options if key.lower() not in FILE_CHOICE_OPTIONS):
        return f"it is read with the option {other[0]}"
    return None


def direct_scan(df: DataFrame, columns: Sequence[str], batch_rows: int) -> DirectScan:
    """The tasks that read ``columns`` of ``df`` (checked by :func:`why_not_direct`) straight from
    its Parquet files: the files split and packed on the driver, one Spark partition per part."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from spark_sensitivity.core.kmeans.batches import DirectScan
    from spark_sensitivity.core.kmeans.cluster import memory_bytes

    spark = df.sparkSession
    selected = df.select(*columns)
    files = file_sizes(df.inputFiles())
    conf = spark.conf
    max_partition = memory_bytes(conf.get("spark.sql.files.maxPartitionBytes", "128m") or "128m")
    open_cost = memory_bytes(conf.get("spark.sql.files.openCostInBytes", "4m") or "4m")
    total = sum(size for _, size in files)
    split = split_bytes(total, len(files), _parallelism(spark), max_partition, open_cost)
    parts = plan_parts(files, split, open_cost)
    schema = to_arrow_schema(selected.schema, timezone="UTC")
    case_sensitive = (conf.get("spark.sql.caseSensitive", "false") or "false").lower() == "true"
    reader = ParquetParts(
        tuple(tuple(part) for part in parts), schema, batch_rows, (selected.columns[0],), case_sensitive
    )
    tasks = spark.range(len(parts), numPartitions=max(len(parts), 1))
    return DirectScan(tasks, reader, selected.schema, len(parts))


def _parallelism(spark: Any) -> int:
    from spark_sensitivity.core.runtime import has_jvm

    configured = spark.conf.get("spark.sql.files.minPartitionNum", None) or spark.conf.get(
        "spark.default.parallelism", None
    )
    if configured:
        return int(configured)
    return spark.sparkContext.defaultParallelism if has_jvm(spark) else 1
