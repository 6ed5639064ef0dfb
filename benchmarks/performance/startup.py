"""The fixed cost of a fresh process: what a JVM class-data-sharing (AppCDS) archive of Spark's
classes saves at start-up, next to scikit-learn's single-process pipeline on the same data.

Feeds docs/PERFORMANCE.md, section "Class-data sharing for a fresh process". From the repository
root, on a quiet machine (about 5 minutes):

    python -m benchmarks.performance.startup
    python -m benchmarks.performance.startup --repeats 5 --rows 400000 --dim 64 --k 200 --m 5000

Writes the 400,000 x 64 mixture of docs/PERFORMANCE.md's fixed-cost section once, makes the
archive scripts/setup.sh makes (``scripts/class_archive.py``, when this environment has none), and
alternates fresh ``spark-sensitivity select`` processes without it (``-Xshare:auto``, the JVM's
default, given as ``spark.driver.extraJavaOptions`` so the CLI adds no archive) and with it (as the
CLI runs by default), and the scikit-learn pipeline of ``benchmarks.performance.pipelines``. Prints
one JSON object: every run's whole-process seconds and the job's own seconds (its manifest), and
the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--m", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=str(REPO / "runs" / "perf" / "data"))
    return parser


def _select(args: argparse.Namespace, data: str, out: str, java_options: str | None) -> dict:
    """One fresh select process: its wall seconds and the job's own (manifest) seconds."""
    command = [sys.executable, "-m", "spark_sensitivity", "select", "--input", data, "--output", out]
    command += ["--k", str(args.k), "--sample-size", str(args.m), "--seed", "0", "--quiet"]
    command += ["--strategy", "sensitivity", "--spark-conf", "spark.driver.memory=6g"]
    if java_options:
        command += ["--spark-conf", f"spark.driver.extraJavaOptions={java_options}"]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    return {"process_seconds": round(wall, 2), "job_seconds": manifest["timings"]["total_seconds"]}


def _sklearn(data: str, out: str, args: argparse.Namespace) -> dict:
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "from benchmarks.performance.pipelines import sklearn\n"
        f"r = sklearn({data!r}, {out!r}, {args.k}, {args.m}, 0, 20)\n"
        "print('RESULT ' + json.dumps({'job_seconds': r['seconds']}))\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    found = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))[7:])
    return {"process_seconds": round(wall, 2), **found}


def main() -> None:
    from spark_sensitivity.io.datasets import write_gaussian_mixture
    from spark_sensitivity.io.session import CLASS_ARCHIVE

    args = _parser().parse_args()
    data = Path(args.data_dir) / f"mixture-n{args.rows}-d{args.dim}-c50-s0"
    if not (data / "_complete").exists():
        write_gaussian_mixture(data, args.rows, args.dim, 50, seed=0)
        (data / "_complete").touch()
    if not CLASS_ARCHIVE.is_file():
        subprocess.run([sys.executable, "scripts/class_archive.py"], cwd=REPO, check=True)
    runs: dict[str, list[dict]] = {"plain": [], "cds": [], "sklearn": []}
    with tempfile.TemporaryDirectory(dir=args.data_dir) as work:
        for repeat in range(args.repeats):
            runs["plain"].append(_select(args, str(data), f"{work}/plain{repeat}", "-Xshare:auto"))
            runs["cds"].append(_select(args, str(data), f"{work}/cds{repeat}", None))
            runs["sklearn"].append(_sklearn(str(data), f"{work}/sk{repeat}.parquet", args))
    medians = {
        name: {key: statistics.median(r[key] for r in rows if r.get(key) is not None) for key in rows[0]}
        for name, rows in runs.items()
    }
    print(
        json.dumps(
            {
                "archive_bytes": CLASS_ARCHIVE.stat().st_size,
                "runs": runs,
                "medians": medians,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
