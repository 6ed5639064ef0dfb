"""The forecast section of a selection's manifest (the RMSE of the mean loss estimate at the run's m,
for the strategy the run writes), and ``auto``'s choice of strategy once the clusters are known.

Shared by the model-free draw and loss-aware round 2 of ``select``; the numbers come from
``core.forecasting.forecast_inputs``, the rule from ``core.sampling.strategies.choose_auto``.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_sensitivity.core.forecasting import forecast, forecast_inputs
from spark_sensitivity.core.forecasting.forecast_inputs import PilotRows
from spark_sensitivity.core.sampling import lossaware, strategies
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.settings import SelectConfig


def _scored(model: SensitivitySamplerModel) -> DataFrame:
    return model.summary.assignments.where(F.col("cluster_id").isNotNull())


def read_pilot(spark: SparkSession, config: SelectConfig, model: SensitivitySamplerModel) -> PilotRows | None:
    """The --pilot-losses rows with their cluster, q_i and cost under the model-free rule; None without
    a pilot. Only the pilot's rows reach the driver."""
    if config.pilot_losses is None:
        return None
    pilot = read_input(spark, config.pilot_losses, config.pilot_losses_format, {})
    return forecast_inputs.pilot_rows(
        _scored(model), model.clusterStats, pilot, config.id_col, config.pilot_loss_col
    )


def auto_choice(
    config: SelectConfig, k_given: int | None, model: SensitivitySamplerModel, pilot: PilotRows | None
) -> strategies.AutoChoice:
    """What ``auto`` draws with on this fit: the rule of ``strategies.choose_auto`` on the clusters'
    sizes, costs and centers, and with a pilot the forecast of each strategy the fit allows."""
    stats = model.clusterStats
    within = forecast_inputs.within_squares(_scored(model), stats.total_cost, config.z)
    share = strategies.explained_share(model.clusterCenters(), stats.sizes, within)
    forecasts = None if pilot is None else _candidate_forecasts(config, k_given, model, pilot)
    return strategies.choose_auto(k_given, config.k, config.sample_size, stats.n, stats, share, forecasts)


def _candidate_forecasts(
    config: SelectConfig, k_given: int | None, model: SensitivitySamplerModel, pilot: PilotRows
) -> dict[str, float | None]:
    """Each candidate strategy's forecast relative RMSE: sensitivity and stratified, and the
    representatives when the plan fitted k = m (their bias modelled from the pilot)."""
    stats, m = model.clusterStats, config.sample_size
    fixed = None
    if strategies.represents(k_given, config.k, m):
        fixed = forecast_inputs.representatives_costs(_scored(model), stats.sizes, stats.total_cost)
    result = forecast_inputs.forecast_from_rows(pilot, stats.sizes, m, config.seed, fixed)
    names = [strategies.SENSITIVITY, strategies.STRATIFIED] + ([strategies.REPRESENTATIVES] if fixed else [])
    return {name: result.get(name).relative_rmse for name in names}


def written_forecast(
    config: SelectConfig,
    model: SensitivitySamplerModel,
    pilot: PilotRows,
    strategy: str,
    subset: DataFrame,
) -> dict[str, Any]:
    """The forecast section for the model-free subset the run wrote with ``strategy``: every scheme,
    and for a deterministic subset its own bias and RMSE (from the subset's weights and costs)."""
    stats = model.clusterStats
    fixed = None
    if strategy in forecast.FIXED_SCHEMES:
        fixed = forecast_inputs.subset_costs(subset, strategy, stats.total_cost)
    result = forecast_inputs.forecast_from_rows(pilot, stats.sizes, config.sample_size, config.seed, fixed)
    return {**result.with_strategy(strategy).as_dict(), "sensitivity_rule": config.mode}


def forecast_facts(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    selection: lossaware.LossAwareSelection,
) -> dict[str, Any]:
    """The forecast section of loss-aware round 2 (its draws follow the loss-aware rule): from
    --pilot-losses when given, else from the representatives' losses."""
    m, seed = config.sample_size, config.seed
    if config.pilot_losses is not None:
        pilot = read_input(spark, config.pilot_losses, config.pilot_losses_format, {})
        result = forecast_inputs.pilot_forecast(
            selection.scored,
            selection.scorer,
            selection.sizes,
            pilot,
            config.id_col,
            config.pilot_loss_col,
            m,
            seed,
        )
    else:
        result = forecast_inputs.representatives_forecast(
            model.summary.assignments, selection.scored, selection.scorer, selection.sizes,
            selection.scorer.proxy, selection.rep_vectors_by_cluster(), config.z, m, seed,
        )  # fmt: skip
    return {**result.with_strategy(strategies.LOSS_AWARE).as_dict(), "sensitivity_rule": config.mode}
