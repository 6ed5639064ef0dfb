"""The k-means cost of the experiment harnesses' fit settings against the CLI's defaults.

Feeds docs/RESULTS.md, sections "(a) Estimating the average loss" and "(c) Classification accuracy
vs budget" (the k-means cost of their fit settings, quoted in the text; prints only). From the
repository root:

    python -m benchmarks.experiments.fit_settings_cost

docs/RESULTS.md (a) fits with 100 points per center and (c) with 50 and random initialisation,
where `select` uses 256 and k-means||; this prints the total k-means cost of each on the
Fashion-MNIST PCA rows those sections use, mean of seeds 0-2.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import fashion_pca, spark_session, vector_array
from spark_sensitivity import SensitivitySampler

HARNESS = {100: {"pointsPerCenter": 100}, 300: {"pointsPerCenter": 50, "initMode": "random"}}
HARNESS[1000] = HARNESS[300]


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options; --help
    x = fashion_pca()["x"]
    spark = spark_session()
    with tempfile.TemporaryDirectory() as folder:
        table = pa.table({"id": np.arange(len(x)), "embedding": vector_array(x)})
        pq.write_table(table, f"{folder}/part.parquet")
        frame = spark.read.parquet(folder).cache()
        for k, harness in HARNESS.items():
            for name, settings in (("harness", harness), ("CLI defaults", {})):
                costs = []
                for seed in range(3):
                    model = SensitivitySampler(idCol="id", k=k, seed=seed, **settings).fit(frame)
                    costs.append(model.clusterStats.total_cost)
                    model.summary.release()
                print(f"k = {k:5d} {name:13s} {settings}: mean cost {np.mean(costs):,.0f}", flush=True)


if __name__ == "__main__":
    main()
