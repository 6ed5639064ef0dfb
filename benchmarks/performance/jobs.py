"""How many Spark jobs, stages and passes over the input one select run costs (issue: the fixed cost).

Feeds docs/PERFORMANCE.md, section "Jobs and passes over the input per run" (prints JSON). From the
repository root:

    python -m benchmarks.performance.jobs                     # 400,000 x 64 blobs, k = 200, m = 5,000
    python -m benchmarks.performance.jobs --rows 50000 --dim 16 --k 50 --m 1000
    python -m benchmarks.performance.jobs --rows 50000 --dim 16 --k 50 --m 1000 --loss-aware   # round 2

Unlike timings, these counts do not depend on the machine's load. The run goes through the
project's ``workflows.select.run_select`` in one local[2] session with the UI's REST API on, and every stage of the
run is read back from it: a stage whose input records reach the table's row count is a pass over the
input (a scan of the Parquet files; reads of persisted data are not input).

With ``--loss-aware`` the counted run is loss-aware round 2 (round 1 runs first, uncounted; the
representatives' loss is the norm of their embedding).

Prints one JSON object: jobs, stages, tasks, input passes, the job descriptions in order, and the
run's own stage timings from the manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.workflows.select import run_select

GROUP = "perf-jobs-select"


def _api(spark, path: str) -> list[dict]:
    base = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{base}/api/v1/applications/{app}/{path}") as reply:
        return json.load(reply)


def _round2(spark, config: SelectConfig, work: Path) -> SelectConfig:
    """Runs round 1 and scores its representatives; returns round 2's config."""
    from pyspark.sql import functions as F

    round1 = dataclasses.replace(config, mode="loss-aware", output=str(work / "round1"))
    run_select(spark, round1)
    reps = spark.read.parquet(str(work / "round1" / "representatives"))
    norm = F.sqrt(F.aggregate(config.vector_col, F.lit(0.0), lambda acc, x: acc + x * x))
    reps.select(config.id_col, norm.alias("loss")).write.parquet(str(work / "losses"))
    return dataclasses.replace(
        config, mode="loss-aware", rep_losses=str(work / "losses"), round1=round1.output
    )


def _call(name: str) -> str:
    """'fit at /some/where/select.py:237' -> 'fit at select.py:237' (no machine paths in reports)."""
    call, _, place = name.partition(" at ")
    return f"{call} at {Path(place).name}" if place else call


def _time(text: str) -> datetime:
    """The REST API's timestamps, '2026-11-29T23:01:02.345GMT'."""
    return datetime.strptime(text.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


def _timeline(jobs: list[dict]) -> list[str]:
    """Each job's call, start (seconds after the first job's) and duration: the gaps between jobs are
    the driver's own work (Python, planning)."""
    ordered = sorted(jobs, key=lambda j: j["jobId"])
    first = _time(ordered[0]["submissionTime"])
    lines = []
    for job in ordered:
        start, end = _time(job["submissionTime"]), _time(job["completionTime"])
        lines.append(
            f"{(start - first).total_seconds():6.2f} +{(end - start).total_seconds():.2f} s {_call(job['name'])}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--m", type=int, default=5_000)
    parser.add_argument(
        "--workdir", default=None, help="where the data and output go (default: a temporary folder)"
    )
    parser.add_argument("--loss-aware", action="store_true", help="count loss-aware round 2 instead")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "true")
        .config("spark.ui.port", "0")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "6g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        data = Path(work) / "data"
        write_gaussian_mixture(data, args.rows, args.dim, clusters=max(args.k // 4, 2), seed=0)
        config = SelectConfig(
            input=str(data),
            output=str(Path(work) / "out"),
            sample_size=args.m,
            k=args.k,
            seed=0,
            strategy="sensitivity",  # docs/PERFORMANCE.md's figures; select's default became auto
        )
        if args.loss_aware:
            config = _round2(spark, config, Path(work))
        spark.sparkContext.setJobGroup(GROUP, "select")
        manifest = run_select(spark, config)
        jobs = [j for j in _api(spark, "jobs") if j.get("jobGroup") == GROUP]
        stage_ids = {s for j in jobs for s in j["stageIds"]}
        stages = [s for s in _api(spark, "stages") if s["stageId"] in stage_ids and s["status"] == "COMPLETE"]
        passes = [s for s in stages if s.get("inputRecords", 0) >= args.rows]
        report = {
            "rows": args.rows,
            "dim": args.dim,
            "k": args.k,
            "m": args.m,
            "jobs": len(jobs),
            "stages_run": len(stages),
            "stages_skipped": sum(j.get("numSkippedStages", 0) for j in jobs),
            "tasks": sum(s["numTasks"] for s in stages),
            "input_passes": len(passes),
            "mode": "loss-aware round 2" if args.loss_aware else "model-free",
            "input_pass_stages": [_call(s["name"]) for s in sorted(passes, key=lambda s: s["stageId"])],
            "job_calls": Counter(_call(j["name"]) for j in jobs),
            "largest_stages": [
                {
                    "call": _call(s["name"]),
                    "tasks": s["numTasks"],
                    "records": s.get("inputRecords", 0) + s.get("shuffleReadRecords", 0),
                }
                for s in sorted(stages, key=lambda s: -s["numTasks"])[:5]
            ],  # fmt: skip
            "jobs_in_order": _timeline(jobs),
            "timings": manifest["timings"],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
