"""Performance benchmark: the select job against naive Spark, scikit-learn and faiss on the same data.

Regenerates docs/PERFORMANCE.md, the block between ``<!-- perf:begin -->`` and ``<!-- perf:end -->``
(under "Running it"); the rest of that page is written by hand from its figures. From the
repository root:

    python -m benchmarks.performance.compare --rows 100000 --k 100 --no-scaling   # a few minutes
    python -m benchmarks.performance.compare    # 1M x 128, k = 1000, then the select job alone at 1M and 2M

One command generates the embeddings (an imbalanced Gaussian mixture, written once and reused) and
measures, each part in its own process so that memory peaks and JVM state do not leak between them:

1. the float32 GEMM rate of numpy (with the environment's OpenBLAS settings and without them) and of
   the assignment kernel, which bound the assignment pass;
2. the four pipelines of ``pipelines``, alternated ``--repeats`` times in one Spark session after
   a warm-up (medians are reported), and the assignment pass split into scan, Arrow and kernel;
3. the select job alone at n and 2n in fresh processes: time per stage and driver peak memory.

It prints every figure and writes them to ``--results`` (JSON) and into ``--doc`` between the
markers ``<!-- perf:begin -->`` and ``<!-- perf:end -->`` (the rest of the page is left alone).
Its parts run as children: this module again, ``python -m benchmarks.performance.compare ... --child
KIND``, so run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.common import REPO


class Entry(NamedTuple):
    """One timed pipeline: its name in the results, the pipeline, the k-means engine, driver threads."""

    key: str
    name: str
    engine: str
    threads: int


PIPELINES = ("project", "naive", "sklearn", "faiss")
WARM_UP_ROWS = 20_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_argument_group("data")
    data.add_argument("--rows", type=int, default=1_000_000, help="n (default: 1,000,000)")
    data.add_argument("--dim", type=int, default=128, help="embedding length d (default: 128)")
    data.add_argument("--components", type=int, help="mixture components (default: --k)")
    data.add_argument("--data-dir", default=str(REPO / "runs" / "perf" / "data"), help="generated tables")
    job = parser.add_argument_group("selection")
    job.add_argument("--k", type=int, default=1000, help="clusters (default: 1000)")
    job.add_argument("--sample-size", type=int, default=10_000, help="m (default: 10,000)")
    job.add_argument("--max-iter", type=int, default=20, help="Lloyd iterations, all pipelines (default: 20)")
    job.add_argument("--seed", type=int, default=0)
    runs = parser.add_argument_group("runs")
    runs.add_argument("--pipelines", default=",".join(PIPELINES), help="subset of " + ",".join(PIPELINES))
    runs.add_argument(
        "--engines",
        default="driver,mllib",
        help="k-means engines (--fit-engine) the project pipeline is timed with (default: driver,mllib)",
    )
    runs.add_argument("--repeats", type=int, default=3, help="runs of each pipeline (default: 3)")
    runs.add_argument(
        "--once",
        default="naive,project[mllib],sklearn",
        help="pipelines run in the first round only, the slow ones (default: naive,project[mllib],sklearn)",
    )
    runs.add_argument(
        "--batch-rows",
        default="10000",
        help="Arrow batch sizes (maxRecordsPerBatch) for the assignment breakdown (default: 10000)",
    )
    runs.add_argument(
        "--local-threads",
        type=int,
        default=os.cpu_count(),
        help="BLAS and OpenMP threads of the work in the driver process: scikit-learn, the driver "
        "k-means engine (default: the cores; on a busy shared machine 1 is faster, as a thread that waits "
        "for a busy core holds up the others)",
    )
    runs.add_argument("--faiss-threads", default="1,2", help="faiss is timed with each (default: 1,2)")
    runs.add_argument("--no-scaling", action="store_true", help="skip the n and 2n runs")
    runs.add_argument(
        "--scale-repeats", type=int, default=2, help="alternated fresh runs at n and 2n (default: 2)"
    )
    runs.add_argument(
        "--scale-engine",
        default="driver",
        help="k-means engine of the n and 2n runs (default: driver)",
    )
    spark = parser.add_argument_group("spark")
    spark.add_argument("--master", default="local[*]")
    spark.add_argument("--driver-memory", default="6g")
    spark.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="repeatable, for every session"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--results", default=str(REPO / "runs" / "perf" / "results.json"))
    out.add_argument("--doc", default=str(REPO / "docs" / "PERFORMANCE.md"), help="'' to leave it alone")
    out.add_argument(
        "--embed-results",
        help="JSON printed by benchmarks.performance.embed_throughput, to quote the embed stage's figures",
    )
    parser.add_argument("--child", choices=("gemm", "compare", "scale"), help=argparse.SUPPRESS)
    parser.add_argument("--child-data", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    return parser


def load() -> float:
    """The 1-minute load average: how busy the machine was while a figure was measured."""
    return round(os.getloadavg()[0], 2)


def dataset(args: argparse.Namespace, rows: int) -> str:
    """The mixture table of ``rows`` rows, generated on first use."""
    from spark_sensitivity.io.datasets import write_gaussian_mixture

    components = args.components or args.k
    path = Path(args.data_dir) / f"mixture-n{rows}-d{args.dim}-c{components}-s{args.seed}"
    if not (path / "_complete").exists():
        started = time.perf_counter()
        write_gaussian_mixture(path, rows, args.dim, components, seed=args.seed)
        (path / "_complete").touch()
        print(
            f"  generated {rows:,} x {args.dim} in {time.perf_counter() - started:.1f} s: {path}", flush=True
        )
    return str(path)


def spark_session(args: argparse.Namespace) -> Any:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(args.master)
        .appName("spark-sensitivity perf")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    for item in args.spark_conf:
        key, _, value = item.partition("=")
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _run_pipeline(spark: Any, entry: Entry, data: str, out: str, args: argparse.Namespace, seed: int) -> dict:
    """One run of one pipeline; the driver's own numeric work uses ``entry.threads`` threads."""
    import faiss
    from threadpoolctl import threadpool_limits

    from benchmarks.performance import pipelines

    params = {"k": args.k, "m": args.sample_size, "seed": seed, "max_iter": args.max_iter}
    faiss.omp_set_num_threads(entry.threads)
    before = load()
    with threadpool_limits(limits=entry.threads):
        if entry.name == "project":
            result = pipelines.project(spark, data, out, engine=entry.engine, **params)
        elif entry.name == "naive":
            result = pipelines.naive(spark, data, out, **params)
        else:
            result = getattr(pipelines, entry.name)(data, out, **params)
    result["load"] = [before, load()]
    if spark is not None:
        # Frames the run left cached would serve the next run with the same centers for free.
        result["cached_rdds_left"] = spark.sparkContext._jsc.sc().getPersistentRDDs().size()
        spark.catalog.clearCache()
    return result


def _warm_up(spark: Any, args: argparse.Namespace, warm: str, entries: list[Entry], out: str) -> None:
    """JIT, Python workers and imports, on a small table, so the timed runs start warm."""
    small = argparse.Namespace(
        **{**vars(args), "k": min(args.k, 20), "sample_size": min(args.sample_size, 500)}
    )
    for i, entry in enumerate(entries):
        _run_pipeline(spark, entry, warm, f"{out}/warm-{i}", small, args.seed)


def _entries(args: argparse.Namespace) -> list[Entry]:
    entries = []
    for name in args.pipelines.split(","):
        if name == "project":
            entries += [Entry(f"project[{e}]", name, e, args.local_threads) for e in args.engines.split(",")]
        elif name == "faiss":
            entries += [Entry(f"faiss[{t}t]", name, "-", int(t)) for t in args.faiss_threads.split(",")]
        else:
            entries.append(Entry(name, name, "-", args.local_threads))
    return entries


def child_compare(args: argparse.Namespace, data: dict) -> dict:
    """All pipelines alternated on one table; then the assignment pass broken down."""
    from benchmarks.performance import probes

    spark = spark_session(args)
    entries = _entries(args)
    runs: dict[str, list[dict]] = {entry.key: [] for entry in entries}
    with tempfile.TemporaryDirectory(prefix="perf-") as out:
        _warm_up(spark, args, data["warm"], entries, out)
        centers = None
        for repeat in range(args.repeats):
            for i, entry in enumerate(entries):
                if repeat > 0 and entry.key in args.once.split(","):
                    continue
                target = f"{out}/run-{i}-{repeat}"  # no brackets: Hadoop reads them as globs
                # A new seed each round: the k-means cost varies with the seed more than by 1%.
                result = _run_pipeline(spark, entry, data["n"], target, args, args.seed + repeat)
                if entry.name == "project":
                    rows = spark.read.parquet(f"{target}/clusters").orderBy("cluster_id").collect()
                    centers = np.array([row.center for row in rows])
                runs[entry.key].append(result)
                print(
                    f"  {entry.key:<34} run {repeat + 1}: {result['seconds']:8.1f} s  cost "
                    f"{result['kmeans_cost']:.6g}  load {result['load'][0]}-{result['load'][1]}  "
                    f"{result['stages']}",
                    flush=True,
                )
        breakdown = {}
        if centers is not None:
            for batch_rows in [int(b) for b in args.batch_rows.split(",")]:
                before = load()
                result = probes.assignment_breakdown(spark, data["n"], centers, batch_rows, args.repeats)
                result["load"] = [before, load()]
                breakdown[str(batch_rows)] = result
                print(f"  assignment pass, batches of {batch_rows}: {result}", flush=True)
    spark.stop()
    return {"runs": runs, "assignment": breakdown}


def child_scale(args: argparse.Namespace, data: dict) -> dict:
    """One select run on a fresh driver, with its peak memory."""
    from benchmarks.performance.memory import DriverMemory

    spark = spark_session(args)
    memory = DriverMemory(spark)
    with tempfile.TemporaryDirectory(prefix="perf-") as out:
        entry = Entry("project", "project", args.scale_engine, args.local_threads)
        _warm_up(spark, args, data["warm"], [entry], out)
        reset = memory.reset()
        result = _run_pipeline(spark, entry, data["n"], f"{out}/run", args, args.seed)
        result["memory"] = memory.peaks() | {"peaks_reset_after_warm_up": reset}
    spark.stop()
    return result


def child_gemm(args: argparse.Namespace, data: dict) -> dict:
    from benchmarks.performance import probes

    return probes.gemm_rates(args.k, args.dim) | {"load": load()}


def run_child(args: argparse.Namespace, kind: str, data: dict, env: dict | None = None) -> dict:
    """Runs one part in a fresh process (this module, from the current folder: the repository root)
    and returns its JSON result."""
    with tempfile.TemporaryDirectory(prefix="perf-") as folder:
        data_file, out_file = Path(folder) / "data.json", Path(folder) / "out.json"
        data_file.write_text(json.dumps(data))
        command = [sys.executable, "-m", __spec__.name, *sys.argv[1:], "--child", kind]
        command += ["--child-data", str(data_file), "--child-out", str(out_file)]
        subprocess.run(command, check=True, env=env)
        return json.loads(out_file.read_text())


def versions() -> dict[str, str]:
    import faiss
    import pyspark
    import sklearn

    return {
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "faiss": faiss.__version__,
        "cpus": str(os.cpu_count()),
        "processor": platform.processor() or platform.machine(),
    }


def main() -> None:
    args = _parser().parse_args()
    if args.child:
        data = json.loads(Path(args.child_data).read_text())
        result = {"gemm": child_gemm, "compare": child_compare, "scale": child_scale}[args.child](args, data)
        Path(args.child_out).write_text(json.dumps(result))
        return

    from benchmarks.performance import report

    started = time.perf_counter()
    keys = ("rows", "dim", "k", "sample_size", "max_iter", "seed", "repeats", "once", "engines", "pipelines")
    keys += ("local_threads", "faiss_threads", "scale_engine", "scale_repeats")
    settings = {key: getattr(args, key) for key in keys} | {"components": args.components or args.k}
    results: dict[str, Any] = {"settings": settings, "versions": versions(), "load_start": load()}
    print(f"perf: {settings}, load {results['load_start']}", flush=True)
    warm = dataset(argparse.Namespace(**{**vars(args), "components": 20}), WARM_UP_ROWS)
    data = {"n": dataset(args, args.rows), "warm": warm}

    print("GEMM rate (float32, numpy):", flush=True)
    results["gemm"] = run_child(args, "gemm", data)
    plain = {
        key: value
        for key, value in os.environ.items()
        if key not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    if len(plain) < len(os.environ):
        results["gemm_without_openblas_env"] = run_child(args, "gemm", data, env=plain)
    print(f"  {results['gemm']}\n  {results.get('gemm_without_openblas_env', '')}", flush=True)

    print(f"pipelines on {args.rows:,} rows, {args.repeats} rounds:", flush=True)
    results["compare"] = run_child(args, "compare", data)

    if not args.no_scaling:
        doubled = dataset(args, 2 * args.rows)
        results["scaling"] = {"n": [], "2n": []}
        for repeat in range(args.scale_repeats):
            for label, path in (("n", data["n"]), ("2n", doubled)):
                print(
                    f"select job alone at {label} ({args.scale_engine}), fresh driver, run {repeat + 1}:",
                    flush=True,
                )
                result = run_child(args, "scale", {"n": path, "warm": warm})
                results["scaling"][label].append(result)
                print(f"  {result['seconds']:.1f} s {result['stages']} {result['memory']}", flush=True)

    if args.embed_results:
        results["embed"] = json.loads(Path(args.embed_results).read_text())
    results["load_end"] = load()
    results["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    summary = report.summarize(results)
    results["summary"] = summary
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")
    print(report.text(summary), flush=True)
    if args.doc:
        report.update_doc(Path(args.doc), report.markdown(results, summary))
        print(f"updated {args.doc}; raw figures in {args.results}", flush=True)


if __name__ == "__main__":
    main()
