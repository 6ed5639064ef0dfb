"""Saving and loading a fitted model: Params and fit facts as ML metadata, centers and cluster
statistics as the clusters table in Parquet under data/ (the layout of earlier versions, which
still load), and a whitening matrix, when the model has one, as its rows in Parquet under
whitening/."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pyspark.ml.util import DefaultParamsWriter, MLReader, MLWriter
from pyspark.sql import SparkSession

from spark_sensitivity.core.sampling import score
from spark_sensitivity.io.files import Files, LocalFiles, files_for, glob_escape

_WHITENING = "whitening"
_METADATA = "metadata"
# The metadata keys a load reads, and their JSON types.
_METADATA_KEYS = {
    "uid": str,
    "paramMap": dict,
    "defaultParamMap": dict,
    "fitInfo": dict,
    "whitened": bool,
}
# Far more than any saved model's metadata; an edited file is not read beyond it.
_MAX_METADATA_BYTES = 1 << 20
_JSON_NAMES = {str: "string", dict: "object", bool: "true or false"}


def replace_saved(spark: SparkSession, path: str, what: str, parts: tuple[str, ...]) -> None:
    """``write().overwrite()``: deletes ``path`` when it holds ``what`` (each of ``parts``), refuses
    anything else, through the file system (pyspark's own way needs the JVM, which a Spark Connect
    client does not have)."""
    files = files_for(spark, path)
    where = path.removeprefix("file:") if isinstance(files, LocalFiles) else path
    if not files.exists(where):
        return
    if not files.is_dir(where) or not all(files.exists(f"{where.rstrip('/')}/{part}") for part in parts):
        raise FileExistsError(f"{where} exists and is not {what}; overwrite() replaces only {what}")
    files.delete(where)


class ParamsWriter(DefaultParamsWriter):
    """pyspark's writer of Params-only instances (the Estimator), with an overwrite() that also
    works over Spark Connect."""

    def _handleOverwrite(self, path: str) -> None:
        replace_saved(self.sparkSession, path, "a saved estimator", (_METADATA,))


class ModelWriter(MLWriter):
    """Writes a ``SensitivitySamplerModel`` (passed in, so this module need not import it)."""

    def __init__(self, instance: Any):
        super().__init__()
        self.instance = instance

    def _handleOverwrite(self, path: str) -> None:
        replace_saved(self.sparkSession, path, "a saved model", (_METADATA, "data"))

    def saveImpl(self, path: str) -> None:
        model = self.instance
        whitening = model.whiteningMatrix
        extra = {"fitInfo": model.fitInfo, "whitened": whitening is not None}
        DefaultParamsWriter.saveMetadata(model, path, self.sparkSession, extraMetadata=extra)
        # coalesce, not repartition: k local rows need no shuffle (and no Spark job of their own).
        model.clustersFrame(self.sparkSession).coalesce(1).write.parquet(f"{path}/data")
        if whitening is not None:
            rows = [(i, row.tolist()) for i, row in enumerate(whitening)]
            frame = self.sparkSession.createDataFrame(rows, "row int, values array<double>")
            frame.coalesce(1).write.parquet(f"{path}/{_WHITENING}")


class ModelReader(MLReader[Any]):
    """Loads a model of class ``cls`` written by :class:`ModelWriter`."""

    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        files = files_for(self.sparkSession, path)
        shown = path.removeprefix("file:") if isinstance(files, LocalFiles) else path
        check_saved_model(files, shown)
        metadata = _metadata(self.sparkSession, files, shown)
        exact = glob_escape(path)  # a saved model is read by its exact name, even with [ or { in it
        centers, stats = score.clusters_from_rows(self.sparkSession.read.parquet(f"{exact}/data").collect())
        whitening = None
        if metadata.get("whitened"):
            rows = sorted(self.sparkSession.read.parquet(f"{exact}/{_WHITENING}").collect())
            whitening = np.array([row["values"] for row in rows], dtype=np.float64)
        model = self.cls.fromClusters(centers, stats, metadata.get("fitInfo", {}), whitening=whitening)
        model._resetUid(metadata["uid"])
        _set_params(model, metadata, f"{shown}/{_METADATA}")
        return model


def check_saved_model(files: Files, path: str) -> None:
    """Refuses a folder that holds no saved model (one line naming what is missing); ``files`` may be
    the local file system, so a command can check a local model before Spark starts."""
    if not files.is_dir(path):
        raise FileNotFoundError(
            f"model {path} does not exist or is not a folder; pass the model/ of an output"
        )
    for part in (_METADATA, "data"):
        if not files.exists(f"{path.rstrip('/')}/{part}"):
            raise FileNotFoundError(
                f"model {path} has no {part}/; is it the model/ of a select or refresh output?"
            )


def _metadata(spark: SparkSession, files: Files, path: str) -> dict[str, Any]:
    """The metadata of a saved model, checked key by key (it is a file anyone could have edited)."""
    where = f"{path}/{_METADATA}"
    try:
        metadata = json.loads(_metadata_line(spark, files, where))
    except ValueError as error:
        raise ValueError(f"model metadata {where} is not JSON ({_cut(str(error))})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"model metadata {where} must be a JSON object")
    for key, kind in _METADATA_KEYS.items():
        if key in metadata and not isinstance(metadata[key], kind):
            raise ValueError(f"model metadata {where}: {key!r} must be a JSON {_JSON_NAMES[kind]}")
    missing = [key for key in ("uid", "paramMap") if key not in metadata]
    if missing:
        raise ValueError(f"model metadata {where} has no {missing[0]!r}")
    return metadata


def _metadata_line(spark: SparkSession, files: Files, where: str) -> str:
    """The metadata's JSON line. A local file is read by the OS: Hadoop's local file system would
    fail on a hand-edited file with a checksum error instead of saying what is wrong in it."""
    if not isinstance(files, LocalFiles):
        line = spark.read.text(glob_escape(where)).first()
        return line[0] if line is not None else ""
    parts = [name for name in files.children(where) if name.startswith("part-")]
    if not parts:
        raise ValueError(f"model metadata {where} holds no part- file; is it a saved model?")
    with open(f"{where}/{parts[0]}", "rb") as stream:
        return stream.readline(_MAX_METADATA_BYTES).decode("utf-8", errors="replace")


def _set_params(model: Any, metadata: dict[str, Any], where: str) -> None:
    """Sets the saved Params, refusing an unknown name or a value its setting does not allow."""
    for section in ("paramMap", "defaultParamMap"):
        setter = model._set if section == "paramMap" else model._setDefault
        for name, value in metadata.get(section, {}).items():
            if not model.hasParam(name):
                raise ValueError(f"model metadata {where}: {section} has an unknown param {_cut(repr(name))}")
            try:
                setter(**{name: model.getParam(name).typeConverter(value)})
            except (TypeError, ValueError):
                raise ValueError(
                    f"model metadata {where}: {section} param {name!r} has a value of the wrong type, "
                    f"{_cut(repr(value))}"
                ) from None
    try:
        model.validate_params()
    except ValueError as error:
        raise ValueError(f"model metadata {where}: {_cut(str(error))}") from None


def _cut(text: str) -> str:
    """Text from an edited file, cut short: a message never holds an unbounded value."""
    return text if len(text) <= 100 else text[:97] + "..."
