"""Loss-aware round 2 must cluster exactly as round 1 did, or the scored representatives are not its own.

Round 1's manifest records the settings that decide the clusters and the representatives
(``round_settings``). Round 2 reads that manifest, from ``--round1 OUT1`` or, when not given, from a
``manifest.json`` of round 1 in the folder that holds the ``--rep-losses`` table, and names every
setting that differs in one line. With the manifest found, round 2 also compares its representatives
with round 1's ``representatives/``: the same settings on changed input data move them too.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL
from spark_sensitivity.io.files import files_for, glob_escape
from spark_sensitivity.io.lineage import read_manifest
from spark_sensitivity.io.redaction import redact

# The settings that decide the k-means fit and so the representatives (the draws' seed is the fit's).
ROUND_SETTINGS = (
    "input",
    "format",
    "input_options",
    "id_col",
    "vector_col",
    "on_invalid",
    "k",
    "z",
    "seed",
    "max_iter",
    "tol",
    "init_mode",
    "init_steps",
    "fit_fraction",
    "points_per_center",
    "fit_engine",
    "driver_fit_max_mb",
    "embedder",
    "text_col",
    "image_col",
    "embed_options",
)
_FLAGS = {"loss_lambda": "lambda"}


def round_settings(parameters: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``ROUND_SETTINGS`` from a run's (redacted) parameters."""
    return {name: parameters.get(name) for name in ROUND_SETTINGS}


def _flag(name: str) -> str:
    return "--" + _FLAGS.get(name, name).replace("_", "-")


def changed_settings(round1: dict[str, Any], round2: dict[str, Any]) -> list[str]:
    """'--seed 3 -> 4' for every setting that differs (a JSON round trip makes tuples lists)."""
    now = json.loads(json.dumps(round2, default=str))
    return [
        f"{_flag(name)} {round1.get(name)!r} -> {now.get(name)!r}"
        for name in ROUND_SETTINGS
        if name in round1 and round1.get(name) != now.get(name)
    ]


def round1_manifest(spark: SparkSession, round1: str | None, rep_losses: str) -> tuple[dict, str] | None:
    """Round 1's manifest and its folder: from ``round1`` (required to exist), else next to the loss
    table when the folder there holds a round-1 manifest; None when there is none to compare with."""
    if round1 is not None:
        manifest = read_manifest(spark, round1)
        if manifest is None or "round_settings" not in manifest:
            raise ValueError(f"--round1 {round1} has no manifest.json of a loss-aware round 1")
        return manifest, round1.rstrip("/")
    folder = rep_losses.rstrip("/").rpartition("/")[0]
    if not folder or folder.endswith(":/"):  # a bare name, or the root of a file system
        return None
    manifest = read_manifest(spark, folder)
    if manifest is None or "round_settings" not in manifest:
        return None
    return manifest, folder


def check_same_settings(manifest: dict, where: str, parameters: dict[str, Any]) -> None:
    """A one-line ValueError naming every setting that differs from round 1's."""
    changes = changed_settings(manifest["round_settings"], redact(round_settings(parameters)))
    if changes:
        raise ValueError(
            f"settings changed since loss-aware round 1 ({where}/manifest.json): {'; '.join(changes)}; "
            "run round 2 with round 1's settings, or redo round 1 and score its representatives"
        )


def check_same_representatives(spark: SparkSession, where: str, current: DataFrame, id_col: str) -> None:
    """A one-line ValueError when the representatives differ from round 1's representatives/."""
    path = f"{where}/representatives"
    if not files_for(spark, path).exists(path):
        return
    round1 = spark.read.parquet(glob_escape(path)).select(CLUSTER_COL, id_col)
    before = {r[CLUSTER_COL]: r[id_col] for r in round1.collect()}
    now = {r[CLUSTER_COL]: r[id_col] for r in current.select(CLUSTER_COL, id_col).collect()}
    moved = sorted(j for j in before.keys() | now.keys() if before.get(j) != now.get(j))
    if moved:
        j = moved[0]
        raise ValueError(
            f"the representatives differ from round 1's ({where}/representatives): {len(moved)} of "
            f"{len(before)} clusters changed (e.g. cluster {j}: id {before.get(j)} -> {now.get(j)}); "
            "the input changed since round 1: redo round 1 and score its representatives"
        )
