"""Which run an output came from, and which inputs it has read: the checks refresh makes first.

A select or refresh output folder holds model/, subset/ and manifest.json side by side. Refresh takes
a model and a previous subset, which must come from one such folder; and the new rows must not be
rows that an earlier run already read (they would be counted in two strata). The manifest next to
the model lists every input read so far (``inputs``; a select manifest has only its ``parameters``).
"""

from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession

from spark_sensitivity.io.files import files_for
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.settings import SettingError

MANIFEST = "manifest.json"
# The refresh flag that lets a run through when an earlier input cannot be read (named in the error).


def _folder(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) or "."


def run_manifest(spark: SparkSession, part_path: str) -> dict[str, Any] | None:
    """The manifest of the output folder that holds ``part_path`` (e.g. OUT/model), if there is one."""
    return read_manifest(spark, _folder(part_path))


def read_manifest(spark: SparkSession, folder: str) -> dict[str, Any] | None:
    """``folder``/manifest.json, parsed; None when there is none."""
    files = files_for(spark, folder)
    manifest = f"{folder.rstrip('/')}/{MANIFEST}"
    if not files.exists(manifest):
        return None
    try:
        return json.loads(files.read_bytes(manifest))
    except ValueError as error:
        raise ValueError(f"{manifest} is not valid JSON: {error}") from None


def check_same_run(spark: SparkSession, model_path: str, previous_subset: str) -> None:
    """Refuses a model and a previous subset that were not published together."""
    files = files_for(spark, model_path)
    model_run = files.qualify(_folder(model_path))
    if files.qualify(_folder(previous_subset)) == model_run:
        return
    manifest = run_manifest(spark, model_path) or {}
    recorded = manifest.get("subset")
    if recorded and files.qualify(recorded) == files.qualify(previous_subset):
        return
    raise ValueError(
        f"--model {model_path} and --previous-subset {previous_subset} come from different runs; pass "
        "the model/ and subset/ of one select or refresh output"
    )


def recorded_input(spark: SparkSession | None, source: str, fmt: str) -> dict[str, str]:
    """How a manifest records an input: a path fully qualified (absolute, or with its scheme), so a
    later refresh run from another folder still finds it; a table name as it is."""
    if fmt in ("table", "iceberg"):
        return {"path": source, "format": fmt}
    try:
        qualified = files_for(spark, source).qualify(source)
    except ValueError:  # over Spark Connect a remote path is recorded as given (it has its scheme)
        qualified = source
    return {"path": qualified, "format": fmt}


def inputs_read(manifest: dict[str, Any] | None) -> list[dict[str, str]]:
    """Every input the run (and the runs before it) read: [{"path", "format"}], oldest first."""
    if not manifest:
        return []
    if "inputs" in manifest:
        return list(manifest["inputs"])
    parameters = manifest.get("parameters", {})
    if "input" in parameters:
        return [{"path": parameters["input"], "format": parameters.get("format", "parquet")}]
    return []


def _is_qualified(path: str) -> bool:
    """An absolute local path, or one with a scheme (file:/..., hdfs://..., s3a://...)."""
    return path.startswith("/") or len(urlparse(path).scheme) > 1


def _earlier_ids(spark: SparkSession, path: str, fmt: str, id_col: str) -> tuple[DataFrame | None, str]:
    """The earlier input's id column, or None and why it cannot be read."""
    if fmt not in ("table", "iceberg") and not _is_qualified(path):
        # Written by an earlier version, relative to the folder that run started in, which is unknown:
        # resolving it against this run's folder could check the wrong table and prove nothing.
        return None, "is recorded as a relative path, relative to a folder this run cannot know"
    try:
        return read_input(spark, path, fmt, {}).select(id_col), ""
    except Exception as error:  # moved, deleted or unreadable
        return None, f"cannot be read ({str(error).strip().splitlines()[0][:200]})"


def check_not_read_before(
    spark: SparkSession,
    new_ids: DataFrame,
    id_col: str,
    earlier: list[dict[str, str]],
    new_input: str,
    allow_unreadable: bool = False,
) -> list[str]:
    """Refuses new rows whose ids an earlier run already read; returns the inputs it could not check.

    Reads only the id column of the earlier inputs (a semi-join, no row to the driver). An earlier
    input that cannot be read is refused too (the check would prove nothing), unless
    ``allow_unreadable``: then it is listed in the result.
    """
    files = files_for(spark, new_input)
    new_path = files.qualify(new_input)
    unchecked = []
    for source in earlier:
        path, fmt = source["path"], source.get("format", "parquet")
        if fmt != "table" and _is_qualified(path):
            if files.qualify(path) == new_path:
                raise ValueError(
                    f"--new-input {new_input} was already read by an earlier run; give a folder of the "
                    "newly appended rows only"
                )
            if new_path.startswith(files.qualify(path).rstrip("/") + "/"):
                # The table grew in place: its folder now holds the new rows too, so it proves nothing.
                unchecked.append(f"{path}: the new rows lie inside it")
                continue
        old_ids, reason = _earlier_ids(spark, path, fmt, id_col)
        if old_ids is None:
            if not allow_unreadable:
                raise SettingError(
                    f"the earlier input {path} {reason}, so the new rows cannot be checked against it; "
                    "set skip_unreadable_earlier_inputs to refresh anyway (rows it holds would be counted "
                    "twice)",
                    "skip_unreadable_earlier_inputs",
                )
            unchecked.append(f"{path}: {reason}")
            continue
        _refuse_seen(new_ids, old_ids, id_col, path)
    return unchecked


def _refuse_seen(new_ids: DataFrame, old_ids: DataFrame, id_col: str, path: str) -> None:
    seen = new_ids.select(id_col).join(old_ids, on=id_col, how="left_semi").limit(3).collect()
    if seen:
        count = new_ids.select(id_col).join(old_ids, on=id_col, how="left_semi").count()
        examples = ", ".join(str(row[id_col]) for row in seen)
        raise ValueError(
            f"{count} new rows have ids that the earlier input {path} already holds (e.g. ids "
            f"{examples}); a refresh takes only rows appended since, or they are counted twice"
        )
