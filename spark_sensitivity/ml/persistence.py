"""Saving and loading a fitted model: Params and fit facts as ML metadata, centers and cluster
statistics as the clusters table in Parquet under data/ (the layout of earlier versions, which
still load)."""

from __future__ import annotations

from typing import Any

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from spark_sensitivity.core import score
from spark_sensitivity.io.files import glob_escape


class ModelWriter(MLWriter):
    """Writes a ``SensitivitySamplerModel`` (passed in, so this module need not import it)."""

    def __init__(self, instance: Any):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        model = self.instance
        DefaultParamsWriter.saveMetadata(
            model, path, self.sparkSession, extraMetadata={"fitInfo": model.fitInfo}
        )
        model.clustersFrame(self.sparkSession).repartition(1).write.parquet(f"{path}/data")


class ModelReader(MLReader[Any]):
    """Loads a model of class ``cls`` written by :class:`ModelWriter`."""

    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        path = glob_escape(path)  # a saved model is read by its exact name, even with [ or { in it
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        centers, stats = score.clusters_from_rows(self.sparkSession.read.parquet(f"{path}/data").collect())
        model = self.cls.fromClusters(centers, stats, metadata.get("fitInfo", {}))
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model
