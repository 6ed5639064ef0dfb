"""The forecast section of a selection's manifest: the RMSE of the mean loss estimate at the run's m.

Shared by the model-free draw and loss-aware round 2 of ``select``; the numbers come from
``core.forecast_inputs``.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core import forecast_inputs, lossaware
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.settings import SelectConfig


def forecast_facts(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    selection: lossaware.LossAwareSelection | None = None,
) -> dict[str, Any] | None:
    """The forecast section of the manifest: from --pilot-losses when given, else from the
    representatives' losses in loss-aware mode; None in model-free mode without a pilot."""
    m, seed = config.sample_size, config.seed
    if config.pilot_losses is not None:
        pilot = read_input(spark, config.pilot_losses, config.pilot_losses_format, {})
        if selection is None:
            scored = model.summary.assignments.where(F.col("cluster_id").isNotNull())
            scorer, sizes = model.clusterStats, model.clusterStats.sizes
        else:
            scored, scorer, sizes = selection.scored, selection.scorer, selection.sizes
        result = forecast_inputs.pilot_forecast(
            scored, scorer, sizes, pilot, config.id_col, config.pilot_loss_col, m, seed
        )
    elif selection is not None:
        result = forecast_inputs.representatives_forecast(
            model.summary.assignments, selection.scored, selection.scorer, selection.sizes,
            selection.scorer.proxy, selection.rep_vectors_by_cluster(), config.z, m, seed,
        )  # fmt: skip
    else:
        return None
    return {**result.as_dict(), "sensitivity_rule": config.mode}
