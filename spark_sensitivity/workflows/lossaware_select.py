"""The loss-aware mode of ``select`` (the paper's two rounds).

Round 1 (no ``--rep-losses`` yet) publishes representatives/ (the row nearest each center) and a
manifest that says what to do next. Round 2 reads the model's losses on those rows and draws with
s_i = loss(r_a(i)) + lambda * ||x_i - r_a(i)||^z; ``lossaware_rounds`` checks that it clusters exactly
as round 1 did.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from spark_sensitivity.core.forecasting import forecast_inputs
from spark_sensitivity.core.sampling import lossaware, representatives
from spark_sensitivity.io.provenance import utc_timestamp
from spark_sensitivity.io.publish import AtomicOutput
from spark_sensitivity.io.redaction import redact
from spark_sensitivity.io.storage import read_input
from spark_sensitivity.ml.model import SensitivitySamplerModel
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.workflows import lossaware_rounds
from spark_sensitivity.workflows.forecast import forecast_facts

NEXT_STEP = (
    "compute the model's loss on the rows of representatives/ (a table of id, loss) and run again with "
    "the same input, seed and k-means settings plus --rep-losses"
)


def check_flags(spark: SparkSession, config: SelectConfig) -> str | None:
    """Flags that need each other, and round 2's settings against round 1's manifest when one is
    found (``lossaware_rounds``); returns round 1's folder, or None."""
    if config.rep_weights != "zero" and config.rep_losses is None:
        raise ValueError("--rep-weights needs --mode loss-aware with --rep-losses")
    if config.round1 is not None and config.rep_losses is None:
        raise ValueError("--round1 needs --mode loss-aware with --rep-losses")
    if config.pilot_losses is not None and config.mode == "loss-aware" and config.rep_losses is None:
        raise ValueError("--pilot-losses forecasts the draws: in loss-aware mode it needs --rep-losses")
    if config.pilot_losses is not None:
        pilot = read_input(spark, config.pilot_losses, config.pilot_losses_format, {})
        forecast_inputs.check_pilot_columns(pilot, config.id_col, config.pilot_loss_col)
    if config.rep_losses is None:
        return None
    losses = read_input(spark, config.rep_losses, config.rep_losses_format, {})
    representatives.check_loss_columns(losses, config.id_col, config.rep_loss_col)
    found = lossaware_rounds.round1_manifest(spark, config.round1, config.rep_losses)
    if found is None:
        return None
    manifest, folder = found
    lossaware_rounds.check_same_settings(manifest, folder, dataclasses.asdict(config))
    return folder


def write_representatives(
    model: SensitivitySamplerModel, df: DataFrame, config: SelectConfig, out: AtomicOutput
) -> None:
    """representatives/: cluster_id, id, distance and the input's columns (the embedding too unless
    --drop-vector), so the user can score them without a join."""
    drop = (config.vector_col,) if config.drop_vector else ()
    reps = representatives.with_input_columns(lossaware.model_representatives(model), df, config.id_col, drop)
    reps.coalesce(1).write.parquet(out.path("representatives"))


def round1_manifest(
    spark: SparkSession,
    config: SelectConfig,
    out: AtomicOutput,
    model: SensitivitySamplerModel,
    df: DataFrame,
    n_rows: int,
    started: float,
) -> dict[str, Any]:
    """Round 1: stages representatives/ and returns the manifest, which says what to do next."""
    write_representatives(model, df, config, out)
    reps = spark.read.parquet(out.read_path("representatives")).count()
    return redact(
        {
            "run_id": config.run_id,
            "parameters": dataclasses.asdict(config),
            "mode": config.mode,
            "n": n_rows,
            "k": config.k,
            "representatives": reps,
            "round_settings": lossaware_rounds.round_settings(dataclasses.asdict(config)),
            "next_step": NEXT_STEP,
            "timings": {"total_seconds": round(time.perf_counter() - started, 3)},
            "created": utc_timestamp(),
            "output": config.output,
        }
    )


def draw_round2(
    spark: SparkSession,
    config: SelectConfig,
    model: SensitivitySamplerModel,
    df: DataFrame,
    out: AtomicOutput,
    round1: str | None,
) -> tuple[DataFrame, dict[str, Any]]:
    """Round 2: stages representatives/ again (checked against round 1's), draws with the
    representatives' losses; returns the subset (representatives and draws, column role) and the
    manifest's loss_aware, forecast and sum_of_sensitivities."""
    write_representatives(model, df, config, out)
    if round1 is not None:
        reps = spark.read.parquet(out.path("representatives"))
        lossaware_rounds.check_same_representatives(spark, round1, reps, config.id_col)
    losses = read_input(spark, config.rep_losses, config.rep_losses_format, {})
    forecast: dict[str, Any] | None = None

    def on_prepared(selection: lossaware.LossAwareSelection) -> None:
        nonlocal forecast
        forecast = forecast_facts(spark, config, model, selection)

    drop = (config.vector_col,) if config.drop_vector else ()
    subset, loss_aware = lossaware.select_with_roles(
        model, losses, config.sample_size, config.seed, config.rep_loss_col,
        config.loss_lambda, config.uniform_share, drop, config.rep_weights, on_prepared,
    )  # fmt: skip
    facts: dict[str, Any] = {}
    if "sum_of_sensitivities" in loss_aware:
        facts["sum_of_sensitivities"] = loss_aware.pop("sum_of_sensitivities")
    if loss_aware:
        facts["loss_aware"] = loss_aware
    if forecast:
        facts["forecast"] = forecast
    return subset, facts
