"""The Params of ``SensitivitySampler`` and its model, derived from the settings' one declaration.

Each Param's doc, default and check come from the setting that names it (``settings.param_settings``),
so the command line, the config file and the pyspark.ml face cannot drift apart. Param names are
part of saved models and stay as they are.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasMaxIter, HasSeed, HasTol
from pyspark.sql import DataFrame

from spark_sensitivity import settings
from spark_sensitivity.core.kmeans import cluster
from spark_sensitivity.core.kmeans.assigned import check_ids
from spark_sensitivity.core.sampling import sample, score, strategies

OUTPUT_COLUMNS = (
    cluster.CLUSTER_COL,
    cluster.COST_COL,
    score.SENSITIVITY_COL,
    score.PROBABILITY_COL,
    sample.COUNT_COL,
    sample.WEIGHT_COL,
)
_DECLARED = settings.param_settings()
_CONVERTERS = {
    int: TypeConverters.toInt,
    float: TypeConverters.toFloat,
    str: TypeConverters.toString,
    bool: TypeConverters.toBoolean,
}


def _param(name: str) -> Param[Any]:
    """The Param of the setting whose Param name is ``name``, documented by its help."""
    declared = _DECLARED[name]
    doc = declared.help
    if declared.inverted:  # the help describes the switch, which sets the Param to False
        doc = f"False does what {declared.option} does: {doc}"
    return Param(Params._dummy(), name, doc, _CONVERTERS[declared.kind])


class SensitivitySamplerParams(HasFeaturesCol, HasMaxIter, HasSeed, HasTol):
    """The Params shared by the Estimator and its Model, with their getters and checks."""

    # The shared mixins' Params are declared again so that their doc and default are the settings'.
    featuresCol: Param[str] = _param("featuresCol")
    maxIter: Param[int] = _param("maxIter")
    seed: Param[int] = _param("seed")
    tol: Param[float] = _param("tol")
    idCol: Param[str] = _param("idCol")
    k: Param[int] = _param("k")
    costPower: Param[int] = _param("costPower")
    initMode: Param[str] = _param("initMode")
    initSteps: Param[int] = _param("initSteps")
    fitFraction: Param[float] = _param("fitFraction")
    pointsPerCenter: Param[int] = _param("pointsPerCenter")
    fitEngine: Param[str] = _param("fitEngine")
    driverFitMaxMB: Param[int] = _param("driverFitMaxMB")
    accelerator: Param[str] = _param("accelerator")
    assignReader: Param[str] = _param("assignReader")
    checkUniqueIds: Param[bool] = _param("checkUniqueIds")
    onInvalid: Param[str] = _param("onInvalid")
    strategy: Param[str] = _param("strategy")
    whiten: Param[bool] = _param("whiten")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(**{name: d.default for name, d in _DECLARED.items() if d.default is not None})

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

    def getAccelerator(self) -> str:
        return self.getOrDefault(self.accelerator)

    def getAssignReader(self) -> str:
        return self.getOrDefault(self.assignReader)

    def getOnInvalid(self) -> str:
        return self.getOrDefault(self.onInvalid)

    def getCheckUniqueIds(self) -> bool:
        return self.getOrDefault(self.checkUniqueIds)

    def getStrategy(self) -> str:
        return self.getOrDefault(self.strategy)

    def getWhiten(self) -> bool:
        return self.getOrDefault(self.whiten)

    def validate_params(self) -> None:
        """A ValueError naming the first Param whose value its setting does not allow, e.g.
        "fitEngine must be one of auto, driver, executors, mllib, got 'gpu'"; fails before any work."""
        for name, declared in _DECLARED.items():
            # The select job's strategies include loss-aware, which the Param does not take.
            if name != "strategy" and self.isDefined(self.getParam(name)):
                declared.check(self.getOrDefault(name), label=name)
        strategies.check_strategy(self.getStrategy())

    def validate_input(self, dataset: DataFrame) -> int:
        """Fails on a missing or dotted id or embedding column, an input column that an output column
        would overwrite, and null (or, with checkUniqueIds, repeated) ids; returns the number of
        rows, counted in the same pass as the id check."""
        id_col, vector_col = self.getIdCol(), self.getFeaturesCol()
        missing = [c for c in (id_col, vector_col) if c not in dataset.columns]
        if missing:
            raise ValueError(f"input has no column {missing[0]!r} (columns: {dataset.columns})")
        dotted = [c for c in (id_col, vector_col) if "." in c]
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
        return check_ids(dataset, id_col, self.getCheckUniqueIds())
