"""The select job at 1M and 10M rows on this machine: end-to-end time, stage times, driver memory, spills.

Feeds docs/PERFORMANCE.md, section "10 million rows on this machine" (the table and the 1B x 768
projection; prints JSON, raw figures in runs/perf/scale.json). From the repository root:

    python -m benchmarks.performance.scale                          # 1M and 10M x 128, k = 1000, m = 100,000
    python -m benchmarks.performance.scale --rows 100000 1000000    # a quicker pair
    python -m benchmarks.performance.scale --from-results           # the ratios and projection again, no runs

Each size runs in a fresh process (local[2] unless --master says otherwise, a 6 GB driver): one
select on an imbalanced Gaussian mixture (10M x 128 float32 is about 5 GB of Parquet, generated once
under --data-dir), after a warm-up select on 20,000 rows in the same session. Reports the job's
stage timings (its manifest), the driver's peak memory (``memory``: Python and JVM resident sets,
JVM heap), and the bytes Spark spilled (the UI's REST API, summed over the run's stages), then
t(10M) / t(1M) per stage. Each size runs as a child, ``python -m benchmarks.performance.scale ...
--child ROWS``, so run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import REPO

GROUP = "perf-scale-select"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--m", type=int, default=100_000, help="draws (default: 100,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--data-dir", default=str(REPO / "runs" / "perf" / "data"))
    parser.add_argument("--results", default=str(REPO / "runs" / "perf" / "scale.json"))
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="recompute the ratios and projection from --results, no runs",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    return parser


def dataset(args: argparse.Namespace, rows: int) -> str:
    """The mixture table of ``rows`` rows (k components), generated on first use."""
    from spark_sensitivity.io.datasets import write_gaussian_mixture

    path = Path(args.data_dir) / f"mixture-n{rows}-d{args.dim}-c{args.k}-s{args.seed}"
    if not (path / "_complete").exists():
        started = time.perf_counter()
        write_gaussian_mixture(path, rows, args.dim, args.k, seed=args.seed)
        (path / "_complete").touch()
        print(f"generated {rows:,} x {args.dim} in {time.perf_counter() - started:.0f} s", flush=True)
    return str(path)


def _api(spark, path: str) -> list[dict]:
    base, app = spark.sparkContext.uiWebUrl, spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{base}/api/v1/applications/{app}/{path}") as reply:
        return json.load(reply)


def child(args: argparse.Namespace, rows: int) -> dict:
    """One select run on a fresh driver (after a small warm-up): timings, memory, spills."""
    from pyspark.sql import SparkSession

    from benchmarks.performance.memory import DriverMemory
    from spark_sensitivity.io.datasets import write_gaussian_mixture
    from spark_sensitivity.settings import SelectConfig
    from spark_sensitivity.workflows.select import run_select

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master(args.master)
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.ui.enabled", "true")
        .config("spark.ui.port", "0")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    memory = DriverMemory(spark)
    data = dataset(args, rows)
    with tempfile.TemporaryDirectory(prefix="perf-scale-", dir=args.data_dir) as work:
        warm = Path(work) / "warm"
        write_gaussian_mixture(warm, 20_000, args.dim, 20, seed=1)
        run_select(
            spark,
            SelectConfig(
                input=str(warm), output=f"{work}/warm-out", sample_size=1000, k=20, strategy="sensitivity"
            ),
        )
        memory.reset()
        config = SelectConfig(
            input=data,
            output=f"{work}/out",
            sample_size=args.m,
            k=args.k,
            seed=args.seed,
            drop_vector=True,
            strategy="sensitivity",  # docs/PERFORMANCE.md's figures; select's default became auto
        )
        spark.sparkContext.setJobGroup(GROUP, "select")
        started = time.perf_counter()
        manifest = run_select(spark, config)
        wall = time.perf_counter() - started
    jobs = [j for j in _api(spark, "jobs") if j.get("jobGroup") == GROUP]
    ids = {s for j in jobs for s in j["stageIds"]}
    stages = [s for s in _api(spark, "stages") if s["stageId"] in ids]
    result = {
        "rows": rows,
        "dim": args.dim,
        "k": args.k,
        "m": args.m,
        "wall_seconds": round(wall, 1),
        "timings": manifest["timings"],
        "kmeans": manifest["kmeans_fit"],
        "memory": memory.peaks(),
        "jobs": len(jobs),
        "failed_stages": sum(1 for s in stages if s["status"] == "FAILED"),
        "memory_spilled_bytes": sum(s.get("memoryBytesSpilled", 0) for s in stages),
        "disk_spilled_bytes": sum(s.get("diskBytesSpilled", 0) for s in stages),
        "load_after": round(os.getloadavg()[0], 2),
    }
    spark.stop()
    return result


def main() -> None:
    args = _parser().parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(args, args.child)), flush=True)
        return
    if args.from_results:
        summary = summarize(json.loads(Path(args.results).read_text())["runs"], cores=_cores(args.master))
        print(json.dumps({key: summary[key] for key in ("ratio", "projection")}, indent=2))
        return
    results = []
    for rows in args.rows:
        dataset(args, rows)
        command = [sys.executable, "-m", __spec__.name, *sys.argv[1:], "--child", str(rows)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
        print(json.dumps(result), flush=True)
        results.append(result)
    summary = summarize(results, cores=_cores(args.master))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(summary, indent=2))
    print(json.dumps({key: summary[key] for key in ("ratio", "projection")}, indent=2))


def _cores(master: str) -> int:
    """The task slots of a local master (local[2] -> 2; local[*] -> the machine's cores)."""
    found = re.fullmatch(r"local\[(\d+)\]", master)
    return int(found.group(1)) if found else os.cpu_count() or 1


# The projection's cluster, as in docs/PERFORMANCE.md: 1B rows x 768 on 512 executor cores.
TARGET_ROWS, TARGET_DIM, TARGET_CORES = 10**9, 768, 512


def _stages(run: dict) -> dict[str, float]:
    """A run's stage seconds, with the id check (the time no named stage accounts for) apart."""
    timings = dict(run["timings"])
    total = timings.pop("total_seconds")
    timings["id_check_seconds"] = total - sum(timings.values())
    return timings


def summarize(runs: list[dict], cores: int) -> dict:
    """t(large) / t(small) per stage, and each stage's marginal core-seconds per row between the two
    sizes (what grows with n; fixed costs such as the fit and the small writes do not) scaled to
    TARGET_ROWS x TARGET_DIM: per embedding byte for the stages that scan embeddings, per row for
    the id check and the sampling pass. The k-means fit itself (constant in n) is left out."""
    small, large = runs[0], runs[-1]
    before, after = _stages(small), _stages(large)
    extra_rows = large["rows"] - small["rows"]
    per_byte = {"kmeans_seconds", "assign_reduce_seconds", "write_seconds"}  # scans of the embeddings
    projection = {}
    for stage in after:
        core_seconds_per_row = max(after[stage] - before[stage], 0.0) * cores / extra_rows
        scale = TARGET_DIM / large["dim"] if stage in per_byte else 1.0
        core_seconds = core_seconds_per_row * scale * TARGET_ROWS
        projection[stage] = {
            "core_hours": round(core_seconds / 3600, 2),
            "wall_seconds_on_512_cores": round(core_seconds / TARGET_CORES, 1),
        }
    ratio = {stage: round(after[stage] / before[stage], 2) for stage in after if before[stage] > 0}
    ratio["total_seconds"] = round(large["timings"]["total_seconds"] / small["timings"]["total_seconds"], 2)
    return {
        "runs": runs,
        "ratio": {"rows": large["rows"] / small["rows"], "seconds": ratio},
        "projection": projection,
    }


if __name__ == "__main__":
    main()
