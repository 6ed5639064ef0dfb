"""``SensitivitySamplerModel``: fitted centers and cluster statistics that score rows and draw subsets."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.ml import Model
from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core.kmeans import cluster
from spark_sensitivity.core.kmeans.assigned import AssignedRows
from spark_sensitivity.core.kmeans.whiten import assign_whitened, whitened
from spark_sensitivity.core.sampling import sample, score, strategies
from spark_sensitivity.core.sampling import target as target_draws
from spark_sensitivity.core.sampling.rowrandom import row_hash
from spark_sensitivity.ml.params import SensitivitySamplerParams
from spark_sensitivity.ml.persistence import ModelReader, ModelWriter


class SensitivitySamplerSummary:
    """What fitting saw: the training rows' assignments (persisted), and counts of bad rows.

    ``assignments`` has the id, ``cluster_id`` and ``cost`` of each valid training row; it lets
    :meth:`SensitivitySamplerModel.sample` draw from the training data without a second assignment
    pass. Call :meth:`release` to free it.
    """

    def __init__(self, fitted: AssignedRows):
        self.dataset = fitted.rows
        self.assignments = fitted.assigned
        self.invalidRows = fitted.invalid_rows
        self.rows = fitted

    def release(self) -> None:
        self.rows.release()


# The whitened embedding of transform(), next to the original one and dropped after the assignment.
_WHITENED_TMP = "__ss_whitened"


class SensitivitySamplerModel(Model, SensitivitySamplerParams, MLWritable, MLReadable):
    """Fitted centers and per-cluster statistics; scores rows and draws weighted subsets.

    A model fitted with ``whiten`` holds the whitening matrix W = (G/n)^-1/2 (:attr:`whiteningMatrix`);
    its centers, costs and statistics are those of the whitened rows W x, and every dataset it
    assigns (``transform``, ``sample(dataset=...)``, a refresh of a saved model) is whitened by the
    same W.
    """

    def __init__(
        self,
        centers: np.ndarray | None = None,
        stats: score.ClusterStats | None = None,
        whitening: np.ndarray | None = None,
    ):
        super().__init__()
        self._centers = centers
        self._stats = stats
        self._whitening = whitening
        self._info: dict[str, Any] = {}
        self._summary: SensitivitySamplerSummary | None = None
        self._last_sample_info: dict[str, Any] = {}

    @classmethod
    def fromClusters(
        cls,
        centers: np.ndarray,
        stats: score.ClusterStats,
        fitInfo: dict[str, Any] | None = None,
        summary: SensitivitySamplerSummary | None = None,
        whitening: np.ndarray | None = None,
    ) -> SensitivitySamplerModel:
        """A model from its centers, their statistics, the facts of its fit and, when it was fitted
        on whitened rows, the whitening matrix (a fit or a load)."""
        model = cls(centers, stats, whitening)
        model._info = dict(fitInfo or {})
        model._summary = summary
        return model

    def withClusterStats(self, stats: score.ClusterStats, fitInfo: dict[str, Any]) -> SensitivitySamplerModel:
        """A copy (same uid, Params and centers) with other statistics and fit facts: a refresh."""
        updated = self.copy()
        updated._stats = stats
        updated._info = dict(fitInfo)
        return updated

    def clusterCenters(self) -> list[np.ndarray]:
        return list(self._centers)

    @property
    def whiteningMatrix(self) -> np.ndarray | None:
        """W (d x d, W^T W = (G/n)^-1, G the Gram matrix of the n fitted rows) that the rows are
        multiplied by before assignment, or None."""
        return None if self._whitening is None else self._whitening.copy()

    @property
    def clusterStats(self) -> score.ClusterStats:
        return self._stats

    @property
    def fitInfo(self) -> dict[str, Any]:
        """Facts about the fit: fraction and rows used, k-means iterations and cost, invalid rows."""
        return dict(self._info)

    @property
    def lastSampleInfo(self) -> dict[str, Any]:
        """What :meth:`sampleWithInfo` returned for this model's last :meth:`sample` call (a
        convenience for interactive use; code that draws should take the info it is returned)."""
        return dict(self._last_sample_info)

    @property
    def hasSummary(self) -> bool:
        return self._summary is not None

    @property
    def summary(self) -> SensitivitySamplerSummary:
        if self._summary is None:
            raise RuntimeError("no training summary: the model was loaded, not fitted in this session")
        return self._summary

    def clustersFrame(self, spark: SparkSession) -> DataFrame:
        """The clusters table: cluster_id, size, cost and center of each of the k clusters."""
        return score.clusters_frame(spark, self._centers, self._stats)

    def assignedRows(self, dataset: DataFrame | None = None, onInvalid: str = "skip") -> AssignedRows:
        """The rows to pick from and their assignment to the centers.

        Without ``dataset``, the training data and the fit's persisted assignments (the summary owns
        them: releasing the result leaves them). With one, one assignment pass over it, persisted
        until the result is released, and its own statistics; rows with an invalid embedding are
        left out, or fail when ``onInvalid`` is 'fail'.
        """
        if dataset is None:
            fitted = self.summary.rows
            return AssignedRows(fitted.rows, fitted.assigned, self._stats, fitted.invalid_rows, fitted.id_col)
        centers = np.asarray(self._centers, dtype=np.float64)
        return assign_whitened(
            dataset,
            self.getIdCol(),
            self.getFeaturesCol(),
            centers,
            self.getCostPower(),
            onInvalid,
            self.getAccelerator(),
            self._whitening,
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        """Adds cluster_id, cost, sensitivity and probability (under the fitted statistics)."""
        vector_col, keep_vector = self.getFeaturesCol(), True
        if self._whitening is not None:  # assign a whitened copy; the original embedding passes through
            dataset = whitened(dataset, vector_col, self._whitening, _WHITENED_TMP)
            vector_col, keep_vector = _WHITENED_TMP, False
        return cluster.assign(
            dataset,
            vector_col,
            self._centers,
            self.getCostPower(),
            derived=self._stats,
            keep_vector=keep_vector,
            accelerator=self.getAccelerator(),
        )

    def sample(
        self,
        sampleSize: int,
        seed: int | None = None,
        dataset: DataFrame | None = None,
        dropColumns: tuple[str, ...] = (),
        target: DataFrame | None = None,
    ) -> DataFrame:
        """The subset of :meth:`sampleWithInfo`; its info is kept as :attr:`lastSampleInfo`."""
        frame, self._last_sample_info = self.sampleWithInfo(sampleSize, seed, dataset, dropColumns, target)
        return frame

    def sampleWithInfo(
        self,
        sampleSize: int,
        seed: int | None = None,
        dataset: DataFrame | None = None,
        dropColumns: tuple[str, ...] = (),
        target: DataFrame | None = None,
    ) -> tuple[DataFrame, dict[str, Any]]:
        """Exactly ``sampleSize`` i.i.d. draws with replacement, with probability s_i / sum(s), or, with
        another ``strategy``, the rows that strategy picks (count 1, weight n_j / m_j).

        Without ``dataset`` it samples the training data from the fit's persisted assignments (no
        second assignment pass); with one it assigns that data to the model's centers and uses its
        own cluster statistics (rows with an invalid embedding are left out). Returns one row per
        drawn id: the input's columns (less ``dropColumns``) plus cluster_id, cost, sensitivity,
        probability, count and weight = count / (sampleSize * probability). The result is
        persisted; it has at most sampleSize rows.

        With ``target`` (rows of what the subset should look like, with the ``featuresCol``
        embedding; ids optional), the draws follow the target's shares of the clusters instead,
        uniform within each cluster (strategy stratified or auto) or by sensitivity (strategy
        sensitivity), with weights whose sum(weight * f) / sum(weight) estimates the target's mean of
        f (``core.sampling.target``).

        Also returns what the draw did: ``draws`` (always), ``rows`` (the distinct picked rows,
        without a target), the Poisson candidates and attempts of i.i.d. draws, and with a target
        ``target``: coverage, divergence, effective sample size and thin clusters.
        """
        if target is not None:
            return self._sample_target(sampleSize, seed, dataset, dropColumns, target)
        id_col = self.getIdCol()
        seed = self.getSeed() if seed is None else seed
        if sampleSize < 1:
            raise ValueError(f"sample size must be at least 1, got {sampleSize}")
        strategy = strategies.for_model(self.getStrategy(), sampleSize, len(self._centers))
        if dataset is not None:
            self.validate_input(dataset)
        rows = self.assignedRows(dataset)
        try:
            if strategy == strategies.SENSITIVITY:
                scored = rows.assigned.withColumn(sample.HASH_COL, row_hash(id_col, seed))
                draws = sample.draw(scored, rows.stats, sampleSize)
                info = {
                    "candidates": draws.candidates,
                    "attempts": draws.attempts,
                    "draws": sampleSize,
                    "rows": draws.rows,
                }
                columns = draws.frame.drop(sample.HASH_COL)
            else:
                picked = strategies.select(strategy, rows.assigned, rows.stats, sampleSize, seed, id_col)
                info = {"draws": picked.draws, "rows": picked.draws}  # each picked row counts once
                columns = picked.frame
        finally:
            rows.release()
        return sample.join_input(columns, rows.rows.drop(*dropColumns), id_col, sampleSize), info

    def _sample_target(
        self,
        sampleSize: int,
        seed: int | None,
        dataset: DataFrame | None,
        dropColumns: tuple[str, ...],
        target: DataFrame,
    ) -> tuple[DataFrame, dict[str, Any]]:
        """:meth:`sampleWithInfo` with a target (its docstring)."""
        id_col, seed = self.getIdCol(), self.getSeed() if seed is None else seed
        sample.check_draws(sampleSize)
        within = self.getStrategy()
        if within not in (strategies.SENSITIVITY, strategies.STRATIFIED, strategies.AUTO):
            raise ValueError(
                f"strategy {within} does not draw to a target: use stratified or auto (uniform within "
                "each cluster) or sensitivity"
            )
        if dataset is not None:
            self.validate_input(dataset)
        aimed = self._assign_target(target)
        rows = self.assignedRows(dataset)
        try:
            fit = target_draws.fit_target(
                aimed.assigned, target_draws.lake_radius(rows.assigned, self.getK())
            )
            if fit.total == 0:
                raise ValueError("the target has no rows")
            quotas = target_draws.target_quotas(fit.rows, rows.stats.sizes, sampleSize)
            if within == strategies.SENSITIVITY:
                scored = rows.assigned.withColumn(sample.HASH_COL, row_hash(id_col, seed))
                columns = target_draws.draw_sensitivity(scored, rows.stats, fit, quotas).frame.drop(
                    sample.HASH_COL
                )
            else:
                columns = target_draws.draw_uniform(rows.assigned, rows.stats, fit, quotas, seed, id_col)
            facts = target_draws.target_facts(rows.stats, fit, quotas, columns)
        finally:
            rows.release()
            aimed.release()
        joined = sample.join_input(columns, rows.rows.drop(*dropColumns), id_col, sampleSize)
        return joined, {"draws": sampleSize, "target": facts}

    def _assign_target(self, target: DataFrame) -> AssignedRows:
        """The target's rows assigned to the centers (an id made up when it has none); invalid or
        wrongly sized embeddings fail with the target named."""
        vector_col, id_col = self.getFeaturesCol(), self.getIdCol()
        if vector_col not in target.columns:
            raise ValueError(
                f"the target has no column {vector_col!r} (columns: {', '.join(target.columns)})"
            )
        if id_col not in target.columns:
            target = target.withColumn(id_col, F.monotonically_increasing_id())
        try:
            return self.assignedRows(target.select(id_col, vector_col), onInvalid="fail")
        except ValueError as error:
            raise ValueError(f"target: {error}") from None

    def write(self) -> MLWriter:
        return ModelWriter(self)

    @classmethod
    def read(cls) -> MLReader[SensitivitySamplerModel]:
        return ModelReader(cls)
