"""The assignment pass reading Parquet itself (--assign-reader pyarrow) against Spark's scan (spark):
the pass alone split into its parts, the whole select job with each, and faiss on the same table.

Feeds docs/PERFORMANCE.md, section "Reading the embeddings without the JVM". From the repository
root, on a quiet machine (nothing else on the cores; about 15 minutes at the defaults):

    python -m benchmarks.performance.direct_read
    python -m benchmarks.performance.direct_read --rows 200000 --k 200 --repeats 2   # a few minutes

One local[2] session with a 6 GB driver (as benchmarks.performance.compare), after a warm-up select
with each reader on a small table. The centers come from one select fit (auto engine). Then, each
alternated ``--repeats`` times and written to Spark's noop sink: the JVM scan of (id, embedding)
alone, that scan sent to Python as Arrow, the files read by the tasks with pyarrow alone, and the
assignment pass with either reader. The GEMM floor is the pass's multiply-adds at the best
one-thread float32 rate of a 2048^2 product as OpenBLAS is set here, times the two cores. Last, the
select job (--strategy sensitivity, as compare runs it) with either reader and faiss (2 threads)
alternated, a new seed each round shared by both readers, whose subsets are compared row for row.
Raw figures go to runs/perf/direct_read.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import REPO


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--m", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(REPO / "runs" / "perf" / "data"))
    parser.add_argument("--results", default=str(REPO / "runs" / "perf" / "direct_read.json"))
    return parser


def load() -> float:
    return round(os.getloadavg()[0], 2)


def dataset(folder: Path, rows: int, dim: int, components: int) -> str:
    from spark_sensitivity.io.datasets import write_gaussian_mixture

    path = folder / f"mixture-n{rows}-d{dim}-c{components}-s0"
    if not (path / "_complete").exists():
        write_gaussian_mixture(path, rows, dim, components, seed=0)
        (path / "_complete").touch()
    return str(path)


def session() -> Any:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("spark-sensitivity direct read")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def drain(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    rows = sum(batch.num_rows for batch in batches)
    yield pa.RecordBatch.from_pydict({"rows": pa.array([rows], type=pa.int64())})


def noop_seconds(df: Any) -> float:
    started = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def pass_breakdown(spark: Any, data: str, centers: np.ndarray, repeats: int) -> dict[str, Any]:
    """Median seconds of each way to read and assign the table, alternated."""
    from spark_sensitivity.core.kmeans.cluster import assign
    from spark_sensitivity.io import parquet_scan

    df = spark.read.parquet(data).select("id", "embedding")
    scan = parquet_scan.direct_scan(df, ["id", "embedding"], 10_000)
    read = scan.read  # the tasks get the reader alone, not the DataFrame around it
    read_alone = scan.tasks.mapInArrow(lambda tasks: drain(read(tasks)), "rows long")
    plans = {
        "scan (JVM)": df,
        "scan + Arrow to Python": df.mapInArrow(drain, "rows long"),
        "pyarrow read in the tasks": read_alone,
        "assignment pass, spark": assign(df, "embedding", centers, 2, keep_vector=False),
        "assignment pass, pyarrow": assign(df, "embedding", centers, 2, keep_vector=False, scan=scan),
    }
    times: dict[str, list[float]] = {name: [] for name in plans}
    before = load()
    for _ in range(repeats):
        for name, plan in plans.items():
            times[name].append(round(noop_seconds(plan), 3))
    return {
        "runs": times,
        "median": {name: round(statistics.median(values), 3) for name, values in times.items()},
        "parts": scan.parts,
        "spark_partitions": df.rdd.getNumPartitions(),
        "load": [before, load()],
    }


def subset_rows(folder: str) -> list[tuple]:
    table = pq.read_table(Path(folder) / "subset", columns=["id", "count", "weight"])
    return sorted(zip(*(table.column(name).to_pylist() for name in ("id", "count", "weight")), strict=True))


def job_runs(spark: Any, data: str, args: argparse.Namespace, out: str) -> dict[str, Any]:
    """The select job with each reader and faiss (2 threads), alternated; a new seed each round."""
    import faiss
    from threadpoolctl import threadpool_limits

    from benchmarks.performance import pipelines

    runs: dict[str, list[dict]] = {"select, spark": [], "select, pyarrow": [], "faiss[2t]": []}
    same = []
    for round_ in range(args.repeats):
        params = {"k": args.k, "m": args.m, "seed": round_, "max_iter": 20}
        folders = {}
        for reader in ("spark", "pyarrow"):
            folders[reader] = f"{out}/{reader}-{round_}"
            before = load()
            with threadpool_limits(limits=2):
                result = pipelines.project(
                    spark, data, folders[reader], engine="auto", assign_reader=reader, **params
                )
            spark.catalog.clearCache()
            runs[f"select, {reader}"].append(result | {"load": [before, load()]})
        same.append(subset_rows(folders["spark"]) == subset_rows(folders["pyarrow"]))
        faiss.omp_set_num_threads(2)
        before = load()
        with threadpool_limits(limits=2):
            result = pipelines.faiss(data, f"{out}/faiss-{round_}", **params)
        runs["faiss[2t]"].append(result | {"load": [before, load()]})
    medians = {name: statistics.median(run["seconds"] for run in values) for name, values in runs.items()}
    return {"runs": runs, "median_seconds": medians, "same_subsets": same}


def main() -> None:
    args = _parser().parse_args()
    from benchmarks.performance import pipelines, probes

    data = dataset(Path(args.data_dir), args.rows, args.dim, args.k)
    warm = dataset(Path(args.data_dir), 20_000, args.dim, 20)
    gemm = probes.gemm_rates(args.k, args.dim)
    floor = 2 * args.rows * args.k * args.dim / (gemm["square_gflops_1t"] * 1e9 * 2)
    spark = session()
    with tempfile.TemporaryDirectory(prefix="direct-read-") as out:
        for reader in ("spark", "pyarrow"):
            pipelines.project(spark, warm, f"{out}/warm-{reader}", 20, 500, 0, 20, "auto", reader)
        from spark_sensitivity import SensitivitySampler

        model = SensitivitySampler(k=args.k, seed=0).fit(spark.read.parquet(data))
        centers = np.asarray(model.clusterCenters(), dtype=np.float64)
        model.summary.release()
        breakdown = pass_breakdown(spark, data, centers, args.repeats)
        print(json.dumps(breakdown["median"], indent=1), flush=True)
        jobs = job_runs(spark, data, args, out)
    spark.stop()
    result = {
        "args": vars(args),
        "gemm": gemm,
        "gemm_floor_seconds": round(floor, 3),
        "openblas_env": {key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "pass": breakdown,
        "jobs": jobs,
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=1, default=float))
    pass_medians = breakdown["median"]
    for reader in ("spark", "pyarrow"):
        seconds = pass_medians[f"assignment pass, {reader}"]
        print(f"{reader}: pass {seconds:.3f} s, floor/pass {floor / seconds:.0%}")
    print(json.dumps(jobs["median_seconds"]), "same subsets:", jobs["same_subsets"])


if __name__ == "__main__":
    main()
