"""Iceberg tables without Spark's Iceberg runtime: pyiceberg for the catalog, Spark for the rows.

Spark's own ``iceberg`` format needs the iceberg-spark-runtime jar, which cannot be installed from
PyPI. This module needs only the ``pyiceberg`` package (extra ``iceberg``) and any pyiceberg catalog
(SQL on SQLite or PostgreSQL, REST, Hive, Glue), given by its properties (``uri``, ``warehouse``...).

- read: the driver plans the scan of one snapshot (manifests only); each file scan task becomes one
  Spark partition, read on the executors by pyiceberg's ArrowScan (which applies delete files and
  schema evolution). No row passes through the driver.
- write: executors write Parquet data files into the table's ``data/`` folder, each under a name
  that starts with this job's prefix; the driver collects only their paths and commits them to the
  table in ONE transaction (one new snapshot; the table is created by that same commit when it is
  missing). Until then readers see nothing, and :meth:`IcebergOutput.abort` deletes the staged files.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

# Marks this tool's snapshots, so a table's history links each snapshot to its run's manifest.
RUN_ID_PROPERTY = "spark-sensitivity.run-id"
CLUSTERS_SUFFIX = "_clusters"
# pyiceberg's name for a catalog given by properties alone (no --catalog-option name=...).
DEFAULT_CATALOG_NAME = "default"

log = logging.getLogger("spark_sensitivity")


def _pyiceberg() -> Any:
    try:
        import pyiceberg.catalog
    except ImportError as error:
        raise ImportError(
            "Iceberg tables without the Iceberg jars need pyiceberg: pip install 'spark-sensitivity[iceberg]'"
        ) from error
    return pyiceberg


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def open_catalog(options: Mapping[str, str], create: bool = False) -> Any:
    """The pyiceberg catalog with these properties, under the catalog name ``name`` (default ``default``).

    The name also picks an entry of ~/.pyiceberg.yaml, and a SQL catalog keeps each table under the
    name it was committed with: reading back needs the same name. A SQLite catalog must exist, except
    that a write (``create``) creates a missing one (its folder and its catalog tables).
    """
    _pyiceberg()
    from pyiceberg.catalog import load_catalog

    if not options:
        raise ValueError(
            "Iceberg tables need the catalog's properties: --catalog-option uri=... (e.g. "
            "uri=sqlite:////data/catalog.db and warehouse=file:///data/warehouse)"
        )
    properties = dict(options)
    name = properties.pop("name", DEFAULT_CATALOG_NAME)
    database = _missing_sqlite_database(properties.get("uri", ""))
    if database is not None and not create:
        raise ValueError(
            f"Iceberg catalog {properties['uri']} does not exist (no SQLite database at {database}); "
            "a run with --output-format iceberg creates it"
        )
    if database is not None:
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    try:
        catalog = load_catalog(name, **properties)
        if database is not None:
            catalog.create_tables()  # also when init_catalog_tables=false: the file is new
    except Exception as error:  # pyiceberg, SQLAlchemy and HTTP clients raise their own types
        raise ValueError(f"cannot open Iceberg catalog {name!r}: {_first_line(error)}") from None
    if database is not None:
        log.info(
            "created Iceberg catalog %s (catalog name %r: read its tables back under that name)",
            database,
            name,
        )
    return catalog


def _check_creatable(database: str) -> None:
    """Fails now, before any work, when a write could not create the SQLite catalog ``database``."""
    folder = os.path.dirname(os.path.abspath(database))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"cannot create Iceberg catalog sqlite:///{database}: {folder} is not a writable folder"
        )


def _missing_folders(folder: str) -> list[str]:
    """``folder`` and its ancestors that do not exist, deepest first."""
    missing = []
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _missing_sqlite_database(uri: str) -> str | None:
    """The file of a ``sqlite:///`` URI when it does not exist yet, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    database = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if database in ("", ":memory:") or os.path.exists(database) else database


def _identifier(name: str | None, flag: str) -> tuple[str, str]:
    namespace, _, table = (name or "").rpartition(".")
    if not namespace or not table:
        raise ValueError(f"{flag} must name an Iceberg table as namespace.table, got {name!r}")
    return namespace, table


def _load_table(catalog: Any, name: str, flag: str) -> Any:
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    _identifier(name, flag)
    try:
        return catalog.load_table(name)
    except (NoSuchTableError, NoSuchNamespaceError):
        raise ValueError(f"Iceberg table {name} does not exist in catalog {catalog.name!r}") from None


def _snapshot_id(table: Any, name: str, options: Mapping[str, str]) -> int | None:
    """The snapshot an input option asks for (``snapshot-id`` or ``as-of-timestamp`` in ms), or None."""
    unknown = sorted(set(options) - {"snapshot-id", "as-of-timestamp"})
    if unknown:
        raise ValueError(
            f"unknown Iceberg input option {unknown[0]!r}; expected snapshot-id or as-of-timestamp"
        )
    if len(options) > 1:
        raise ValueError("give either snapshot-id or as-of-timestamp, not both")
    for key, value in options.items():
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"--input-option {key} must be an integer, got {value!r}") from None
        if key == "snapshot-id":
            if table.snapshot_by_id(number) is None:
                raise ValueError(f"Iceberg table {name} has no snapshot {number}")
            return number
        snapshot = table.snapshot_as_of_timestamp(number)
        if snapshot is None:
            raise ValueError(f"Iceberg table {name} has no snapshot at or before timestamp {number} ms")
        return snapshot.snapshot_id
    return None


def read_iceberg(
    spark: SparkSession, name: str, catalog_options: Mapping[str, str], options: Mapping[str, str]
) -> DataFrame:
    """The Iceberg table ``namespace.table`` at its current snapshot, or the one ``options`` picks."""
    from pyiceberg.io.pyarrow import ArrowScan, schema_to_pyarrow

    table = _load_table(open_catalog(catalog_options), name, "--input")
    scan = table.scan(snapshot_id=_snapshot_id(table, name, options))
    tasks = list(scan.plan_files())
    projection = scan.projection()
    spark_schema = from_arrow_schema(schema_to_pyarrow(projection, include_field_ids=False))
    target = to_arrow_schema(spark_schema, timezone="UTC")
    metadata, io, row_filter = table.metadata, table.io, scan.row_filter

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # Each partition holds the indexes of its scan tasks (one, from spark.range below).
        wanted = [tasks[i] for batch in batches for i in batch.column(0).to_pylist()]
        for out in ArrowScan(metadata, io, projection, row_filter).to_record_batches(wanted):
            yield out.cast(target)

    return spark.range(len(tasks), numPartitions=max(len(tasks), 1)).mapInArrow(read, spark_schema)


def _type_shape(kind: Any) -> str:
    """An Iceberg type as text without field ids, so a table's columns compare with new rows'."""
    from pyiceberg.types import ListType, MapType, StructType

    if isinstance(kind, StructType):
        return "struct<" + ", ".join(f"{f.name}: {_type_shape(f.field_type)}" for f in kind.fields) + ">"
    if isinstance(kind, ListType):
        return f"list<{_type_shape(kind.element_type)}>"
    if isinstance(kind, MapType):
        return f"map<{_type_shape(kind.key_type)}, {_type_shape(kind.value_type)}>"
    return str(kind)


def _nullable(schema: pa.Schema) -> pa.Schema:
    # Every column optional: Spark's nullability flags differ between runs of the same query.
    return pa.schema([f.with_nullable(True) for f in schema])


@dataclass
class _Staged:
    """One table's part of the job: the files written for it, and what to undo after a commit."""

    name: str
    schema: pa.Schema
    location: str
    data_folder: str
    prefix: str
    files: list[str] = field(default_factory=list)
    created: bool = False
    previous_snapshot: int | None = None
    committed: bool = False


class IcebergOutput:
    """The subset and clusters tables of one run: checked before any work, staged, then committed."""

    def __init__(self, catalog_options: Mapping[str, str], subset_table: str | None, overwrite: bool):
        namespace, table = _identifier(subset_table, "--output-table (with --output-format iceberg)")
        self.namespace = namespace
        self.names = {"subset": f"{namespace}.{table}", "clusters": f"{namespace}.{table}{CLUSTERS_SUFFIX}"}
        self.staged: dict[str, _Staged] = {}
        self._options = dict(catalog_options)
        # A missing SQLite catalog is created only when the first table is staged, so that a run
        # failing before (on its input, say) leaves no catalog behind; it has no tables to check.
        self._new_database = _missing_sqlite_database(self._options.get("uri", ""))
        self._made_folders: list[str] = []
        self._catalog = None
        if self._new_database is not None:
            _check_creatable(self._new_database)
            return
        for name in self.names.values():
            existing = self._existing(name)
            if existing is not None and existing.current_snapshot() is not None and not overwrite:
                raise FileExistsError(
                    f"Iceberg table {name} already has rows; pass --overwrite to replace them in a new "
                    "snapshot (earlier snapshots stay readable)"
                )

    @property
    def catalog(self) -> Any:
        """The output's catalog, created on first use when it is a missing SQLite database."""
        if self._catalog is None:
            if self._new_database is not None:
                self._made_folders = _missing_folders(os.path.dirname(os.path.abspath(self._new_database)))
            self._catalog = open_catalog(self._options, create=True)
        return self._catalog

    def _existing(self, name: str) -> Any:
        return self.catalog.load_table(name) if self.catalog.table_exists(name) else None

    def stage(self, part: str, df: DataFrame) -> None:
        """Checks ``df``'s columns against the table, then the executors write its data files."""
        from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow

        name = self.names[part]
        schema = _nullable(to_arrow_schema(df.schema, timezone="UTC"))
        table = self._existing(name)
        if table is not None:
            if table.spec().fields:
                raise ValueError(
                    f"Iceberg table {name} is partitioned; the {part} is written to unpartitioned tables only"
                )
            have = {f.name: _type_shape(f.field_type) for f in table.schema().fields}
            new = {
                f.name: _type_shape(f.field_type)
                for f in visit_pyarrow(schema, _ConvertToIcebergWithoutIDs()).fields
            }
            for column in sorted(have.keys() | new.keys()):
                if have.get(column) != new.get(column):
                    raise ValueError(
                        f"column {column!r} is {new.get(column, 'missing')} in the {part} but "
                        f"{have.get(column, 'missing')} in Iceberg table {name}; write to another table"
                    )
            location = table.location()
        else:
            location = self._new_location(name)
        location = location.rstrip("/")
        staged = _Staged(name, schema, location, f"{location}/data", f"ss-{uuid.uuid4().hex[:16]}-")
        self.staged[part] = staged
        io = self._io(location)
        folder, prefix = staged.data_folder, staged.prefix

        def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            path = f"{folder}/{prefix}{TaskContext.get().partitionId():05d}-{uuid.uuid4().hex[:8]}.parquet"
            writer = None
            try:
                for batch in batches:
                    if writer is None:
                        writer = pq.ParquetWriter(io.new_output(path).create(overwrite=True), schema)
                    writer.write_batch(batch.cast(schema))
            except BaseException:
                if writer is not None:  # no path will name this file: remove it now
                    writer.close()
                    io.delete(path)
                raise
            if writer is not None:
                writer.close()
                yield pa.record_batch([pa.array([path])], names=["path"])

        staged.files = [row.path for row in df.mapInArrow(write, "path string").collect()]

    def _new_location(self, name: str) -> str:
        resolve = getattr(self.catalog, "_resolve_table_location", None)
        if resolve is None:
            raise ValueError(
                f"Iceberg table {name} does not exist and catalog {self.catalog.name!r} picks table "
                "locations itself; create the table first"
            )
        namespace, table = _identifier(name, "--output-table")
        warehouse = self.catalog.properties.get("warehouse")
        if warehouse and not self.catalog.namespace_exists(namespace):
            # Where the table will be once the commit creates its namespace (pyiceberg's convention).
            return f"{warehouse.rstrip('/')}/{namespace}/{table}"
        return resolve(None, namespace, table)

    def _io(self, location: str) -> Any:
        from pyiceberg.io import load_file_io

        return load_file_io(self.catalog.properties, location)

    def commit(self, run_id: str) -> dict[str, Any]:
        """Commits each staged table in one transaction (clusters first, the subset last); a failure
        undoes the commits already made. Returns the tables and their new snapshot ids."""
        from pyiceberg.io.pyarrow import parquet_files_to_data_files
        from pyiceberg.table import TableProperties

        committed: dict[str, Any] = {}
        try:
            for part in ("clusters", "subset"):
                staged = self.staged[part]
                self.catalog.create_namespace_if_not_exists(self.namespace)
                table = self._existing(staged.name)
                if table is None:
                    txn = self.catalog.create_table_transaction(
                        staged.name, staged.schema, location=staged.location
                    )
                    old_files = []
                    staged.created = True
                else:
                    txn = table.transaction()
                    old_files = [task.file for task in table.scan().plan_files()]
                    staged.previous_snapshot = table.metadata.current_snapshot_id
                if txn.table_metadata.name_mapping() is None:
                    # Our files carry no Iceberg field ids: readers map their columns by name.
                    mapping = txn.table_metadata.schema().name_mapping.model_dump_json()
                    txn.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING: mapping})
                io = self._io(staged.data_folder)
                new_files = list(parquet_files_to_data_files(io, txn.table_metadata, iter(staged.files)))
                with txn.update_snapshot(snapshot_properties={RUN_ID_PROPERTY: run_id}).overwrite() as update:
                    for data_file in old_files:
                        update.delete_data_file(data_file)
                    for data_file in new_files:
                        update.append_data_file(data_file)
                result = txn.commit_transaction()
                staged.committed = True
                self._delete_files(staged, keep=frozenset(staged.files))  # lost task attempts' files
                committed[part] = {
                    "catalog": self.catalog.name,
                    "table": staged.name,
                    "snapshot_id": result.metadata.current_snapshot_id,
                }
        except BaseException:
            self.abort()
            raise
        return committed

    def abort(self) -> None:
        """Undoes this run's commits (a created table is dropped, an existing one gets its previous
        snapshot back) and deletes its data files."""
        for staged in self.staged.values():
            if staged.committed:
                if staged.created:
                    self.catalog.drop_table(staged.name)
                elif staged.previous_snapshot is None:  # the table had no snapshot: empty it again
                    self.catalog.load_table(staged.name).delete()
                else:
                    table = self.catalog.load_table(staged.name)
                    table.manage_snapshots().set_current_snapshot(staged.previous_snapshot).commit()
                staged.committed = False
            self._delete_files(staged)
        if self._catalog is not None and self._new_database is not None:
            self._remove_new_catalog()

    def _remove_new_catalog(self) -> None:
        # The run created this SQLite catalog: remove it (and the folders made for it) unless another
        # run has meanwhile committed a table to it.
        catalog = self._catalog
        if any(catalog.list_tables(namespace) for namespace in catalog.list_namespaces()):
            return
        catalog.engine.dispose()
        os.remove(self._new_database)
        for folder in self._made_folders:  # deepest first; one holding other files stays
            try:
                os.rmdir(folder)
            except OSError:
                break

    def _delete_files(self, staged: _Staged, keep: frozenset[str] = frozenset()) -> None:
        # Also the files of task attempts whose paths never reached the driver: listed by prefix.
        from pyiceberg.io.pyarrow import PyArrowFileIO

        io = self._io(staged.data_folder)
        if not isinstance(io, PyArrowFileIO):
            for path in set(staged.files) - keep:
                io.delete(path)
            return
        scheme, netloc, folder = PyArrowFileIO.parse_location(staged.data_folder)
        fs = io.fs_by_scheme(scheme, netloc)
        if fs.get_file_info(folder).type != pyarrow.fs.FileType.Directory:
            return
        for info in fs.get_file_info(pyarrow.fs.FileSelector(folder)):
            if (
                info.base_name.startswith(staged.prefix)
                and f"{staged.data_folder}/{info.base_name}" not in keep
            ):
                fs.delete_file(info.path)
