"""``SensitivitySampler``, the pyspark.ml Estimator: fits k-means on a sample of the rows and returns a
:class:`~spark_sensitivity.ml.model.SensitivitySamplerModel`."""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import (
    DefaultParamsReader,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import DataFrame

from spark_sensitivity.core.kmeans import cluster, torchkernel, whiten
from spark_sensitivity.core.kmeans.batches import DirectScan
from spark_sensitivity.io import parquet_scan
from spark_sensitivity.ml.model import SensitivitySamplerModel, SensitivitySamplerSummary
from spark_sensitivity.ml.params import SensitivitySamplerParams
from spark_sensitivity.ml.persistence import ParamsWriter


class SensitivitySampler(
    Estimator[SensitivitySamplerModel], SensitivitySamplerParams, MLWritable, MLReadable
):
    """Clustering-based sensitivity sampling (Axiotis et al., ICML 2024) as a Spark ML Estimator.

    ``fit`` runs k-means on a deterministic sample of the rows (on the driver in numpy while the
    sample is small, else MLlib's distributed block solver), assigns every row to its nearest
    center in one pass, and reduces the per-cluster sizes and costs. The returned model scores rows
    (``transform``) and draws a weighted subset (``sample``).

    Each Param's default, help and check are declared once, in ``spark_sensitivity.settings``.

    Parameters
    ----------
    idCol : str, default "id"
        Unique, non-null row id. Per-row randomness derives from it, so results do not depend on
        partitioning.
    featuresCol : str, default "embedding"
        Embedding column: array<float>, array<double> or an ML Vector, all of one length.
    k : int, default 100
    costPower : int, default 2
        z of the cost ||x - c||^z. z = 1 scores with the k-median cost around k-means centers
        (MLlib has no k-median solver).
    maxIter, tol, initMode, initSteps : k-means settings, as in ``pyspark.ml.clustering.KMeans``.
    seed : int, default 0
    fitFraction : float, optional
        Fit k-means on this fraction of the rows.
    pointsPerCenter : int, default 256
        When fitFraction is unset, fit on about ``pointsPerCenter * k`` rows (0: all rows).
    fitEngine : {"auto", "driver", "executors", "mllib"}, default "auto"
        Where k-means fits its sample. "driver" collects it and runs k-means|| and Lloyd in numpy
        (float32 matrix products); "executors" seeds the same way on the driver from the sample's
        first 64 rows per center (at most driverFitMaxMB), then runs each Lloyd iteration as one
        Spark job with the same kernel in the tasks; "mllib" runs MLlib's distributed KMeans;
        "auto" picks the driver while the float32 sample is at most driverFitMaxMB and a quarter of
        the driver's heap, the executors beyond.
    driverFitMaxMB : int, default 512
    accelerator : {"auto", "cpu", "cuda"}, default "auto"
        Where the nearest-center products run: "cuda" on a GPU through torch (the driver's fit and
        each assignment task), "cpu" in numpy, "auto" on a GPU wherever torch sees one. Either gives
        the same assignment.
    assignReader : {"auto", "spark", "pyarrow"}, default "auto"
        How the pass that assigns every row reads the embeddings. "pyarrow": the driver splits the
        input's Parquet files as Spark would and each task reads its row groups with pyarrow, so the
        embeddings never pass through the JVM; it needs the dataset to be a plain read of Parquet
        files (no filter, limit or computed column on top; reader options that only choose files; an
        integer, string or binary id)
        and no whitening. "spark": Spark's scan. "auto": pyarrow where it applies and the files are
        on the local file system, spark otherwise. Either gives the same assignment.
    checkUniqueIds : bool, default True
        Check that ids are unique before fitting (one shuffle of the id column).
    onInvalid : {"fail", "skip"}, default "fail"
        What to do with rows whose embedding is null, of the wrong length or not finite.
    strategy : str, default "sensitivity"
        How :meth:`SensitivitySamplerModel.sample` picks rows: "sensitivity" (i.i.d. draws, the
        paper's rule), "representatives" (the row nearest each center; sample size = k),
        "stratified", "prototypes", or "auto" (representatives when the sample size equals k, else
        stratified). See ``spark_sensitivity.core.sampling.strategies``.
    whiten : bool, default False
        Multiply the embeddings by (G/n)^-1/2, G = X^T X their uncentred Gram matrix over n rows
        (summed in one more pass; up to a rotation, which changes no distance), before k-means and
        scoring: distances become the ones least squares sees (with rows [A b] holding an intercept
        column, those of the centred rows under their inverse covariance). The model keeps the
        matrix and applies it to every dataset it assigns; sampled rows keep their original
        embeddings. A Gram matrix of rank below d is refused. Not for loss-aware selection.

    Examples
    --------
    >>> sampler = SensitivitySampler(k=50, idCol="id", featuresCol="embedding", seed=7)
    >>> model = sampler.fit(df)
    >>> subset = model.sample(10_000)   # id, cluster_id, cost, sensitivity, probability, count, weight, ...
    """

    @keyword_only
    def __init__(
        self,
        *,
        idCol: str | None = None,
        featuresCol: str | None = None,
        k: int | None = None,
        costPower: int | None = None,
        maxIter: int | None = None,
        tol: float | None = None,
        seed: int | None = None,
        initMode: str | None = None,
        initSteps: int | None = None,
        fitFraction: float | None = None,
        pointsPerCenter: int | None = None,
        fitEngine: str | None = None,
        driverFitMaxMB: int | None = None,
        accelerator: str | None = None,
        assignReader: str | None = None,
        onInvalid: str | None = None,
        checkUniqueIds: bool | None = None,
        strategy: str | None = None,
        whiten: bool | None = None,
    ):
        """Params left out (or None) keep their defaults, declared in ``spark_sensitivity.settings``."""
        super().__init__()
        kwargs = {key: value for key, value in self._input_kwargs.items() if value is not None}
        self._set(**kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> SensitivitySampler:
        return self._set(**{key: value for key, value in self._input_kwargs.items() if value is not None})

    def _kmeans_settings(self) -> cluster.KMeansSettings:
        param = self.getParam
        return cluster.KMeansSettings.of(
            lambda declared: (
                self.getOrDefault(param(declared.param)) if self.isDefined(param(declared.param)) else None
            )
        )

    def _fit(self, dataset: DataFrame) -> SensitivitySamplerModel:
        self.validate_params()
        if self.getAccelerator() == "cuda" and self.getFitEngine() == "driver":
            torchkernel.resolve_accelerator("cuda")  # the driver fits on its GPU: fail before any work
        input_rows = self.validate_input(dataset)  # the id check counts the rows in its pass
        if input_rows == 0:
            raise ValueError("the input has no rows")
        id_col, vector_col = self.getIdCol(), self.getFeaturesCol()
        started = time.perf_counter()
        matrix = (
            whiten.whitening_matrix(whiten.gram_sums(dataset, vector_col), vector_col)
            if self.getWhiten()
            else None
        )
        scan, reader_reason = self._direct_scan(dataset, matrix is not None)
        gram_done = time.perf_counter()
        whitened = None if matrix is None else lambda sample: whiten.whitened_sample(sample, matrix)
        kmeans = cluster.fit(dataset, id_col, vector_col, self._kmeans_settings(), input_rows, whitened)
        fitted = time.perf_counter()
        rows = whiten.assign_whitened(
            dataset,
            id_col,
            vector_col,
            kmeans.centers,
            self.getCostPower(),
            self.getOnInvalid(),
            self.getAccelerator(),
            matrix,
            scan,
        )
        info = {
            "input_rows": input_rows,
            "fit_fraction": kmeans.fit_fraction,
            "fit_rows": kmeans.fit_rows,
            "kmeans_engine": kmeans.engine,
            "kmeans_device": kmeans.device,
            "kmeans_iterations": kmeans.iterations,
            "kmeans_fit_cost": kmeans.training_cost,
            "invalid_rows": rows.invalid_rows,
            "assign_reader": "spark" if scan is None else "pyarrow",
            "assign_reader_reason": reader_reason,
            "kmeans_seconds": round(fitted - gram_done, 3),
            "assign_reduce_seconds": round(time.perf_counter() - fitted, 3),
        }
        if matrix is not None:
            info["whiten_seconds"] = round(gram_done - started, 3)
        summary = SensitivitySamplerSummary(rows)
        model = SensitivitySamplerModel.fromClusters(kmeans.centers, rows.stats, info, summary, matrix)
        self._copyValues(model)
        return model

    def _direct_scan(self, dataset: DataFrame, whitened: bool) -> tuple[DirectScan | None, str]:
        """The assignment pass's own read of the Parquet files (None: Spark's scan), and why."""
        reader = self.getAssignReader()
        columns = [self.getIdCol(), self.getFeaturesCol()]
        why = parquet_scan.why_spark_reads(dataset, columns, reader, whitened)
        if why is not None:
            return None, why
        batch_rows = int(
            dataset.sparkSession.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") or 10_000
        )
        try:
            scan = parquet_scan.direct_scan(dataset, columns, batch_rows)
        except (OSError, pa.ArrowException) as error:
            if reader == "pyarrow":
                raise
            return None, f"Spark's scan: pyarrow cannot list the files here ({error})"
        parts = f"{scan.parts} part" + ("" if scan.parts == 1 else "s")
        return scan, f"the tasks read the Parquet files in {parts}"

    def write(self) -> MLWriter:
        return ParamsWriter(self)

    @classmethod
    def read(cls) -> MLReader[SensitivitySampler]:
        return DefaultParamsReader(cls)
