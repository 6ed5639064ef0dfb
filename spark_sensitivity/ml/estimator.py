"""The pyspark.ml face: ``SensitivitySampler`` (Estimator) and ``SensitivitySamplerModel`` (Model)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasMaxIter, HasSeed, HasTol
from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_sensitivity.core import cluster, sample, score, strategies
from spark_sensitivity.core.rowrandom import row_hash
from spark_sensitivity.io.files import glob_escape

OUTPUT_COLUMNS = (
    cluster.CLUSTER_COL,
    cluster.COST_COL,
    score.SENSITIVITY_COL,
    score.PROBABILITY_COL,
    sample.COUNT_COL,
    sample.WEIGHT_COL,
)


class _SensitivitySamplerParams(HasFeaturesCol, HasMaxIter, HasSeed, HasTol):
    idCol: Param[str] = Param(
        Params._dummy(), "idCol", "unique, non-null row id column", TypeConverters.toString
    )
    k: Param[int] = Param(Params._dummy(), "k", "number of clusters (> 0)", TypeConverters.toInt)
    costPower: Param[int] = Param(
        Params._dummy(),
        "costPower",
        "z in the cost ||x - c||^z: 2 for k-means (default), 1 for the k-median cost",
        TypeConverters.toInt,
    )
    initMode: Param[str] = Param(
        Params._dummy(), "initMode", "k-means init: 'k-means||' or 'random'", TypeConverters.toString
    )
    initSteps: Param[int] = Param(
        Params._dummy(), "initSteps", "steps of k-means|| init (> 0)", TypeConverters.toInt
    )
    fitFraction: Param[float] = Param(
        Params._dummy(),
        "fitFraction",
        "fraction of rows k-means is fitted on, in (0, 1]; overrides pointsPerCenter when set",
        TypeConverters.toFloat,
    )
    pointsPerCenter: Param[int] = Param(
        Params._dummy(),
        "pointsPerCenter",
        "fit k-means on about pointsPerCenter * k rows (0: all rows); used when fitFraction is unset",
        TypeConverters.toInt,
    )
    fitEngine: Param[str] = Param(
        Params._dummy(),
        "fitEngine",
        "where k-means fits its sample: 'driver' (numpy), 'mllib' (distributed), or 'auto' (the driver "
        "while the sample fits driverFitMaxMB and a quarter of the driver's heap)",
        TypeConverters.toString,
    )
    driverFitMaxMB: Param[int] = Param(
        Params._dummy(),
        "driverFitMaxMB",
        "largest fit sample (float32 MiB) fitEngine='auto' fits on the driver",
        TypeConverters.toInt,
    )
    checkUniqueIds: Param[bool] = Param(
        Params._dummy(),
        "checkUniqueIds",
        "check that ids are unique before fitting (one shuffle of the ids)",
        TypeConverters.toBoolean,
    )
    onInvalid: Param[str] = Param(
        Params._dummy(),
        "onInvalid",
        "rows with a null, wrong-length or non-finite embedding: 'fail' (default) or 'skip'",
        TypeConverters.toString,
    )
    strategy: Param[str] = Param(
        Params._dummy(),
        "strategy",
        "how sample() picks rows: 'sensitivity' (default), 'representatives', 'stratified', "
        "'prototypes' or 'auto' (see spark_sensitivity.core.strategies)",
        TypeConverters.toString,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(
            idCol="id",
            featuresCol="embedding",
            k=100,
            costPower=2,
            maxIter=20,
            tol=1e-4,
            seed=0,
            initMode="k-means||",
            initSteps=2,
            pointsPerCenter=256,
            fitEngine="auto",
            driverFitMaxMB=512,
            onInvalid="fail",
            checkUniqueIds=True,
            strategy=strategies.SENSITIVITY,
        )

    def getIdCol(self) -> str:
        return self.getOrDefault(self.idCol)

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getCostPower(self) -> int:
        return self.getOrDefault(self.costPower)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)

    def getInitSteps(self) -> int:
        return self.getOrDefault(self.initSteps)

    def getFitFraction(self) -> float | None:
        return self.getOrDefault(self.fitFraction) if self.isDefined(self.fitFraction) else None

    def getPointsPerCenter(self) -> int:
        return self.getOrDefault(self.pointsPerCenter)

    def getFitEngine(self) -> str:
        return self.getOrDefault(self.fitEngine)

    def getDriverFitMaxMB(self) -> int:
        return self.getOrDefault(self.driverFitMaxMB)

    def getOnInvalid(self) -> str:
        return self.getOrDefault(self.onInvalid)

    def getCheckUniqueIds(self) -> bool:
        return self.getOrDefault(self.checkUniqueIds)

    def getStrategy(self) -> str:
        return self.getOrDefault(self.strategy)

    def _validate_params(self) -> None:
        if self.getK() < 1:
            raise ValueError(f"k must be at least 1, got {self.getK()}")
        if self.getCostPower() not in (1, 2):
            raise ValueError(f"cost power z must be 1 or 2, got {self.getCostPower()}")
        if self.getInitMode() not in ("k-means||", "random"):
            raise ValueError(f"initMode must be 'k-means||' or 'random', got {self.getInitMode()!r}")
        fraction = self.getFitFraction()
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"fitFraction must be in (0, 1], got {fraction}")
        if self.getPointsPerCenter() < 0:
            raise ValueError(f"pointsPerCenter must be >= 0, got {self.getPointsPerCenter()}")
        if self.getFitEngine() not in cluster.ENGINES:
            raise ValueError(
                f"fitEngine must be one of {', '.join(cluster.ENGINES)}, got {self.getFitEngine()!r}"
            )
        if self.getDriverFitMaxMB() < 0:
            raise ValueError(f"driverFitMaxMB must be >= 0, got {self.getDriverFitMaxMB()}")
        if self.getOnInvalid() not in ("fail", "skip"):
            raise ValueError(f"onInvalid must be 'fail' or 'skip', got {self.getOnInvalid()!r}")
        strategies.check_strategy(self.getStrategy())

    def _validate_columns(self, dataset: DataFrame) -> None:
        missing = [c for c in (self.getIdCol(), self.getFeaturesCol()) if c not in dataset.columns]
        if missing:
            raise ValueError(f"input has no column {missing[0]!r} (columns: {dataset.columns})")
        dotted = [c for c in (self.getIdCol(), self.getFeaturesCol()) if "." in c]
        if dotted:
            raise ValueError(
                f"column {dotted[0]!r} has a '.' in its name, which Spark reads as a struct field; "
                "rename it (e.g. with withColumnRenamed) and pass the new name"
            )
        clashing = [c for c in dataset.columns if c in OUTPUT_COLUMNS]
        if clashing:
            raise ValueError(
                f"input column {clashing[0]!r} clashes with an output column of the same name; "
                "rename or drop it"
            )


class SensitivitySamplerSummary:
    """What fitting saw: the training rows' assignments (persisted), and counts of bad rows.

    ``assignments`` has the id, ``cluster_id`` and ``cost`` of each valid training row; it lets
    :meth:`SensitivitySamplerModel.sample` draw from the training data without a second assignment
    pass. Call :meth:`release` to free it.
    """

    def __init__(self, dataset: DataFrame, assignments: DataFrame, invalid_rows: int):
        self.dataset = dataset
        self.assignments = assignments
        self.invalidRows = invalid_rows

    def release(self) -> None:
        self.assignments.unpersist()


class SensitivitySampler(
    Estimator["SensitivitySamplerModel"], _SensitivitySamplerParams, MLWritable, MLReadable
):
    """Clustering-based sensitivity sampling (Axiotis et al., ICML 2024) as a Spark ML Estimator.

    ``fit`` runs k-means on a deterministic sample of the rows (on the driver in numpy while the
    sample is small, else MLlib's distributed block solver), assigns every row to its nearest center in one pass, and reduces the per-cluster sizes and
    costs. The returned model scores rows (``transform``) and draws a weighted subset (``sample``).

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
    fitEngine : {"auto", "driver", "mllib"}, default "auto"
        Where k-means fits its sample. "driver" collects it and runs k-means|| and Lloyd in numpy
        (float32 matrix products); "mllib" runs MLlib's distributed KMeans; "auto" picks the driver
        while the float32 sample is at most driverFitMaxMB and a quarter of the driver's heap.
    driverFitMaxMB : int, default 512
    checkUniqueIds : bool, default True
        Check that ids are unique before fitting (one shuffle of the id column).
    onInvalid : {"fail", "skip"}, default "fail"
        What to do with rows whose embedding is null, of the wrong length or not finite.
    strategy : str, default "sensitivity"
        How :meth:`SensitivitySamplerModel.sample` picks rows: "sensitivity" (i.i.d. draws, the
        paper's rule), "representatives" (the row nearest each center; sample size = k),
        "stratified", "prototypes", or "auto" (representatives when the sample size equals k, else
        stratified). See ``spark_sensitivity.core.strategies``.

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
        idCol: str = "id",
        featuresCol: str = "embedding",
        k: int = 100,
        costPower: int = 2,
        maxIter: int = 20,
        tol: float = 1e-4,
        seed: int = 0,
        initMode: str = "k-means||",
        initSteps: int = 2,
        fitFraction: float | None = None,
        pointsPerCenter: int = 256,
        fitEngine: str = "auto",
        driverFitMaxMB: int = 512,
        onInvalid: str = "fail",
        checkUniqueIds: bool = True,
        strategy: str = strategies.SENSITIVITY,
    ):
        super().__init__()
        kwargs = {key: value for key, value in self._input_kwargs.items() if value is not None}
        self._set(**kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> SensitivitySampler:
        return self._set(**{key: value for key, value in self._input_kwargs.items() if value is not None})

    def _fit_fraction(self, dataset: DataFrame) -> float:
        fraction = self.getFitFraction()
        if fraction is not None:
            return fraction
        if self.getPointsPerCenter() == 0:
            return 1.0
        rows = dataset.count()
        if rows == 0:
            raise ValueError("the input has no rows")
        return min(1.0, self.getPointsPerCenter() * self.getK() / rows)

    def _fit(self, dataset: DataFrame) -> SensitivitySamplerModel:
        self._validate_params()
        self._validate_columns(dataset)
        id_col, seed = self.getIdCol(), self.getSeed()
        check_ids(dataset, id_col, self.getCheckUniqueIds())
        fraction = self._fit_fraction(dataset)
        settings = cluster.KMeansSettings(
            k=self.getK(),
            max_iter=self.getMaxIter(),
            tol=self.getTol(),
            init_mode=self.getInitMode(),
            init_steps=self.getInitSteps(),
            seed=seed,
            engine=self.getFitEngine(),
            driver_max_bytes=self.getDriverFitMaxMB() << 20,
        )
        started = time.perf_counter()
        fit_rows = cluster.fit_sample(dataset, id_col, self.getFeaturesCol(), fraction, seed)
        kmeans = cluster.fit_centers(fit_rows, settings)
        fitted = time.perf_counter()

        assigned = cluster.assign(
            dataset.select(id_col, self.getFeaturesCol()),
            self.getFeaturesCol(),
            kmeans.centers,
            self.getCostPower(),
            keep_vector=False,
        ).persist()
        found = score.cluster_stats(assigned, self.getK())
        try:
            check_rows(assigned, found, id_col, self.getFeaturesCol(), self.getOnInvalid())
        except ValueError:
            assigned.unpersist()
            raise
        model = SensitivitySamplerModel(kmeans.centers, found.stats)
        model._info = {
            "fit_fraction": fraction,
            "fit_rows": kmeans.fit_rows,
            "kmeans_engine": kmeans.engine,
            "kmeans_iterations": kmeans.iterations,
            "kmeans_fit_cost": kmeans.training_cost,
            "invalid_rows": found.invalid_vectors,
            "kmeans_seconds": round(fitted - started, 3),
            "assign_reduce_seconds": round(time.perf_counter() - fitted, 3),
        }
        valid = assigned.where(F.col(cluster.CLUSTER_COL).isNotNull())
        model._summary = SensitivitySamplerSummary(dataset, valid, found.invalid_vectors)
        self._copyValues(model)
        return model

    def write(self) -> MLWriter:
        return DefaultParamsWriter(self)

    @classmethod
    def read(cls) -> MLReader[SensitivitySampler]:
        return DefaultParamsReader(cls)


def check_ids(dataset: DataFrame, id_col: str, unique: bool) -> None:
    """Fails on null ids, and on repeated ids when asked: per-row randomness and the join key on them.

    Runs before k-means so bad ids cost one pass over the id column, not a whole fit: a scan when
    only nulls are checked, else one group-by that finds nulls and repeats together.
    """
    column = F.col(id_col)
    if not unique:
        nulls = dataset.where(column.isNull()).count()
        if nulls:
            raise _null_ids(id_col, nulls)
        return
    bad = dataset.groupBy(id_col).count().where(column.isNull() | (F.col("count") > 1))
    if not bad.limit(1).collect():
        return
    null_group = bad.where(column.isNull()).first()
    if null_group is not None:
        raise _null_ids(id_col, null_group["count"])
    duplicated = bad.where(column.isNotNull())
    ids = ", ".join(f"{row[id_col]} ({row['count']} rows)" for row in duplicated.limit(3).collect())
    raise ValueError(
        f"id column {id_col!r} has {duplicated.count()} duplicated values (e.g. {ids}); ids must be unique"
    )


def _null_ids(id_col: str, count: int) -> ValueError:
    return ValueError(f"id column {id_col!r} has {count} null values; ids must be unique and non-null")


def check_rows(
    assigned: DataFrame, found: score.StatsPass, id_col: str, vector_col: str, policy: str
) -> None:
    """Fails on invalid embeddings unless the policy is 'skip'."""
    if found.invalid_vectors and policy == "fail":
        examples = [
            str(row[0])
            for row in assigned.where(F.col(cluster.CLUSTER_COL).isNull()).select(id_col).limit(3).collect()
        ]
        raise ValueError(
            f"embedding column {vector_col!r} has {found.invalid_vectors} rows that are null, of the "
            f"wrong length or not finite (e.g. ids {', '.join(examples)}); fix them, or skip them with --on-invalid skip (onInvalid='skip')"
        )


class SensitivitySamplerModel(Model, _SensitivitySamplerParams, MLWritable, MLReadable):
    """Fitted centers and per-cluster statistics; scores rows and draws weighted subsets."""

    def __init__(self, centers: np.ndarray | None = None, stats: score.ClusterStats | None = None):
        super().__init__()
        self._centers = centers
        self._stats = stats
        self._info: dict[str, Any] = {}
        self._summary: SensitivitySamplerSummary | None = None
        self._last_sample_info: dict[str, int] = {}

    def clusterCenters(self) -> list[np.ndarray]:
        return list(self._centers)

    @property
    def clusterStats(self) -> score.ClusterStats:
        return self._stats

    @property
    def fitInfo(self) -> dict[str, Any]:
        """Facts about the fit: fraction and rows used, k-means iterations and cost, invalid rows."""
        return dict(self._info)

    @property
    def lastSampleInfo(self) -> dict[str, int]:
        """Of the last :meth:`sample`: Poisson candidates drawn and attempts needed (usually 1)."""
        return dict(self._last_sample_info)

    @property
    def hasSummary(self) -> bool:
        return self._summary is not None

    @property
    def summary(self) -> SensitivitySamplerSummary:
        if self._summary is None:
            raise RuntimeError("no training summary: the model was loaded, not fitted in this session")
        return self._summary

    def _transform(self, dataset: DataFrame) -> DataFrame:
        """Adds cluster_id, cost, sensitivity and probability (under the fitted statistics)."""
        return cluster.assign(
            dataset, self.getFeaturesCol(), self._centers, self.getCostPower(), derived=self._stats
        )

    def sample(
        self,
        sampleSize: int,
        seed: int | None = None,
        dataset: DataFrame | None = None,
        dropColumns: tuple[str, ...] = (),
    ) -> DataFrame:
        """Exactly ``sampleSize`` i.i.d. draws with replacement, with probability s_i / sum(s), or, with
        another ``strategy``, the rows that strategy picks (count 1, weight n_j / m_j).

        Without ``dataset`` it samples the training data from the fit's persisted assignments (no
        second assignment pass); with one it assigns that data to the model's centers and uses its
        own cluster statistics. Returns one row per drawn id: the input's columns (less
        ``dropColumns``) plus cluster_id, cost, sensitivity, probability, count and weight =
        count / (sampleSize * probability). The result is persisted; it has at most sampleSize rows.
        """
        id_col = self.getIdCol()
        seed = self.getSeed() if seed is None else seed
        if sampleSize < 1:
            raise ValueError(f"sample size must be at least 1, got {sampleSize}")
        strategy = strategies.for_model(self.getStrategy(), sampleSize, len(self._centers))
        if dataset is None:
            source, assigned, stats = self.summary.dataset, self.summary.assignments, self._stats
            release = False
        else:
            self._validate_columns(dataset)
            check_ids(dataset, id_col, self.getCheckUniqueIds())
            source = dataset
            assigned = cluster.assign(
                dataset.select(id_col, self.getFeaturesCol()),
                self.getFeaturesCol(),
                self._centers,
                self.getCostPower(),
                keep_vector=False,
            )
            assigned = assigned.where(F.col(cluster.CLUSTER_COL).isNotNull()).persist()
            stats = score.cluster_stats(assigned, len(self._centers)).stats
            release = True
        try:
            if strategy == strategies.SENSITIVITY:
                scored = assigned.withColumn(sample.HASH_COL, row_hash(id_col, seed))
                draws = sample.draw(scored, stats, sampleSize)
                self._last_sample_info = {"candidates": draws.candidates, "attempts": draws.attempts}
                columns = draws.frame.drop(sample.HASH_COL)
            else:
                picked = strategies.select(strategy, assigned, stats, sampleSize, seed, id_col)
                self._last_sample_info = {"draws": picked.draws}
                columns = picked.frame
        finally:
            if release:
                assigned.unpersist()
        rest = source.drop(*dropColumns)
        return columns.join(rest, on=id_col, how="inner")

    def write(self) -> MLWriter:
        return _ModelWriter(self)

    @classmethod
    def read(cls) -> MLReader[SensitivitySamplerModel]:
        return _ModelReader(cls)


class _ModelWriter(MLWriter):
    """Params and fit facts as ML metadata; centers and cluster statistics as Parquet under data/."""

    def __init__(self, instance: SensitivitySamplerModel):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        model = self.instance
        DefaultParamsWriter.saveMetadata(
            model, path, self.sparkSession, extraMetadata={"fitInfo": model._info}
        )
        stats = model.clusterStats
        rows = [
            (j, int(stats.sizes[j]), float(stats.costs[j]), [float(x) for x in center])
            for j, center in enumerate(model.clusterCenters())
        ]
        self.sparkSession.createDataFrame(
            rows, "cluster_id int, size long, cost double, center array<double>"
        ).repartition(1).write.parquet(f"{path}/data")


class _ModelReader(MLReader[SensitivitySamplerModel]):
    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> SensitivitySamplerModel:
        path = glob_escape(path)  # a saved model is read by its exact name, even with [ or { in it
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        rows = sorted(self.sparkSession.read.parquet(f"{path}/data").collect(), key=lambda r: r.cluster_id)
        centers = np.array([row.center for row in rows], dtype=np.float64)
        stats = score.ClusterStats(
            np.array([row.size for row in rows], dtype=np.int64),
            np.array([row.cost for row in rows], dtype=np.float64),
        )
        model = SensitivitySamplerModel(centers, stats)
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        model._info = metadata.get("fitInfo", {})
        return model
