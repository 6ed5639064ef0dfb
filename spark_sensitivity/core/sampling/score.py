"""Stage 3: per-cluster statistics (one reduce pass) and each row's sensitivity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField

from spark_sensitivity.core.kmeans.cluster import CLUSTER_COL, COST_COL

SENSITIVITY_COL = "sensitivity"
PROBABILITY_COL = "probability"


@dataclass(frozen=True)
class ClusterStats:
    """Size n_j and cost Phi_j of every cluster; index j is the cluster id."""

    sizes: np.ndarray
    costs: np.ndarray

    @property
    def n(self) -> int:
        return int(self.sizes.sum())

    @property
    def total_cost(self) -> float:
        return float(self.costs.sum())

    @property
    def nonempty(self) -> int:
        return int((self.sizes > 0).sum())

    @property
    def total_sensitivity(self) -> float:
        """sum_i s_i = sum_j Phi_j / Phi + (number of non-empty clusters), known without a pass."""
        cost_share = 1.0 if self.total_cost > 0 else 0.0
        return cost_share + self.nonempty

    def sensitivity(self, cluster_ids: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """s_i = v_i / Phi + 1 / n_a(i) (model-free sensitivity of docs/METHOD.md).

        When every point sits on its center (Phi = 0) only the uniform-within-cluster term remains.
        """
        sizes = self.sizes[cluster_ids].astype(np.float64)
        if np.any(sizes == 0):
            raise ValueError("rows assigned to a cluster that was empty when the statistics were taken")
        uniform_part = 1.0 / sizes
        if self.total_cost <= 0:
            return uniform_part
        return costs / self.total_cost + uniform_part

    @property
    def fields(self) -> list[StructField]:
        """The columns :meth:`compute` adds in the assignment pass (see ``cluster.assign``)."""
        return [StructField(SENSITIVITY_COL, DoubleType()), StructField(PROBABILITY_COL, DoubleType())]

    def compute(self, cluster_ids: np.ndarray, costs: np.ndarray) -> list[np.ndarray]:
        s = self.sensitivity(cluster_ids, costs)
        return [s, s / self.total_sensitivity]


@dataclass(frozen=True)
class StatsPass:
    """What the reduce pass found: the statistics of the valid rows and counts of the bad ones."""

    stats: ClusterStats
    invalid_vectors: int


def cluster_stats(assigned: DataFrame, k: int) -> StatsPass:
    """One reduce over assigned rows: (n_j, Phi_j) for every cluster, plus the count of bad rows.

    Rows with an invalid embedding have a null cluster id and are counted apart. Brings k + 1 rows
    to the driver, never per-row data.
    """
    rows = (
        assigned.groupBy(CLUSTER_COL)
        .agg(
            F.count(F.lit(1)).alias("size"),
            F.sum(COST_COL).alias("cost"),
        )
        .collect()
    )
    sizes = np.zeros(k, dtype=np.int64)
    costs = np.zeros(k, dtype=np.float64)
    invalid = 0
    for row in rows:
        if row[CLUSTER_COL] is None:
            invalid = int(row["size"])
        else:
            sizes[row[CLUSTER_COL]] = row["size"]
            costs[row[CLUSTER_COL]] = row["cost"]
    return StatsPass(ClusterStats(sizes, costs), invalid)


CLUSTERS_SCHEMA = f"{CLUSTER_COL} int, size long, cost double, center array<double>"


def clusters_frame(spark: SparkSession, centers: np.ndarray, stats: ClusterStats) -> DataFrame:
    """The clusters table (cluster_id, size, cost, center), k rows: the output's clusters/ and a
    saved model's data/."""
    rows = [
        (j, int(stats.sizes[j]), float(stats.costs[j]), [float(x) for x in center])
        for j, center in enumerate(centers)
    ]
    return spark.createDataFrame(rows, CLUSTERS_SCHEMA)


def clusters_from_rows(rows: list[Row]) -> tuple[np.ndarray, ClusterStats]:
    """The centers and statistics of a collected clusters table, in cluster id order."""
    ordered = sorted(rows, key=lambda row: row[CLUSTER_COL])
    centers = np.array([row.center for row in ordered], dtype=np.float64)
    sizes = np.array([row.size for row in ordered], dtype=np.int64)
    costs = np.array([row.cost for row in ordered], dtype=np.float64)
    return centers, ClusterStats(sizes, costs)
