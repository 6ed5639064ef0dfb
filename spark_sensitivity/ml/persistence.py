"""Saving and loading a fitted model: Params and fit facts as ML metadata, centers and cluster
statistics as the clusters table in Parquet under data/ (the layout of earlier versions, which
still load), and a whitening matrix, when the model has one, as its rows in Parquet under
whitening/."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from spark_sensitivity.core import score
from spark_sensitivity.io.files import glob_escape

_WHITENING = "whitening"


class ModelWriter(MLWriter):
    """Writes a ``SensitivitySamplerModel`` (passed in, so this module need not import it)."""

    def __init__(self, instance: Any):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        model = self.instance
        whitening = model.whiteningMatrix
        extra = {"fitInfo": model.fitInfo, "whitened": whitening is not None}
        DefaultParamsWriter.saveMetadata(model, path, self.sparkSession, extraMetadata=extra)
        model.clustersFrame(self.sparkSession).repartition(1).write.parquet(f"{path}/data")
        if whitening is not None:
            rows = [(i, row.tolist()) for i, row in enumerate(whitening)]
            frame = self.sparkSession.createDataFrame(rows, "row int, values array<double>")
            frame.repartition(1).write.parquet(f"{path}/{_WHITENING}")


class ModelReader(MLReader[Any]):
    """Loads a model of class ``cls`` written by :class:`ModelWriter`."""

    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        path = glob_escape(path)  # a saved model is read by its exact name, even with [ or { in it
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        centers, stats = score.clusters_from_rows(self.sparkSession.read.parquet(f"{path}/data").collect())
        whitening = None
        if metadata.get("whitened"):
            rows = sorted(self.sparkSession.read.parquet(f"{path}/{_WHITENING}").collect())
            whitening = np.array([row["values"] for row in rows], dtype=np.float64)
        model = self.cls.fromClusters(centers, stats, metadata.get("fitInfo", {}), whitening=whitening)
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model
