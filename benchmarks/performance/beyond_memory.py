"""A table larger than this machine's memory: the select job at 10M and 100M x 64 float32, and the
single-machine scikit-learn and faiss pipelines on the same 100M-row table.

Feeds docs/PERFORMANCE.md, section "A table larger than memory". From the repository root, on a
quiet machine (nothing else on the cores; about 40 minutes, 30 GB of disk under --data-dir):

    python -m benchmarks.performance.beyond_memory
    python -m benchmarks.performance.beyond_memory --skip-select      # the single-machine runs only
                                                                      # (keeps the recorded select runs)

The select runs go through ``benchmarks.performance.scale`` (each size in a fresh process after a
warm-up, local[2], a 6 GB driver; driver memory peaks and spilled bytes from the UI's REST API). The
data generator writes 250,000 rows per file, so it never holds the table either. The single-machine
pipelines (``benchmarks.performance.pipelines``) each run in a child process whose address space is
capped at --memory-limit-gb (below the machine's RAM, so an attempt to hold the table fails with a
MemoryError instead of sending the machine into the kernel's out-of-memory killer) and --timeout;
their outcome is recorded either way: finished (stages, cost), out of memory, or out of time.
``sklearn`` and ``faiss`` read the table into memory, as those scripts are usually written;
``faiss_streaming`` is the single-machine pipeline that fits a table this size (two streamed passes).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO

CHILD = """
import json, sys
from benchmarks.performance import pipelines
name, data, out, k, m = sys.argv[1:6]
result = getattr(pipelines, name)(data, out, int(k), int(m), 0, 20)
print("RESULT " + json.dumps(result, default=float), flush=True)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=[10_000_000, 100_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--m", type=int, default=1_000_000, help="draws (default: 1,000,000)")
    parser.add_argument("--data-dir", default=str(REPO / "runs" / "perf" / "data"))
    parser.add_argument("--results", default=str(REPO / "runs" / "perf" / "beyond_memory.json"))
    parser.add_argument("--memory-limit-gb", type=float, default=20.0)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per single-machine run")
    parser.add_argument("--skip-select", action="store_true")
    return parser


def single_machine(name: str, data: str, out: str, args: argparse.Namespace) -> dict:
    """One single-machine pipeline in a capped child process: its result, or how it failed."""
    limit = int(args.memory_limit_gb * (1 << 30))

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    started = time.perf_counter()
    command = [sys.executable, "-c", CHILD, name, data, out, str(args.k), str(args.m)]
    try:
        done = subprocess.run(
            command, cwd=REPO, preexec_fn=cap, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"pipeline": name, "outcome": f"not finished after {args.timeout} s (stopped)"}
    seconds = round(time.perf_counter() - started, 1)
    lines = done.stdout.splitlines()
    found = [line for line in lines if line.startswith("RESULT ")]
    if done.returncode == 0 and found:
        return {"pipeline": name, "outcome": "finished", "seconds": seconds, **json.loads(found[0][7:])}
    last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    memory = "MemoryError" in done.stderr or "bad_alloc" in done.stderr or "Out of memory" in done.stderr
    outcome = f"out of memory under a {args.memory_limit_gb:g} GB cap" if memory else "failed"
    return {"pipeline": name, "outcome": outcome, "seconds": seconds, "last_line": last[:300]}


def main() -> None:
    args = _parser().parse_args()
    previous = Path(args.results)
    results: dict = json.loads(previous.read_text()) if args.skip_select and previous.exists() else {}
    if not args.skip_select:
        command = [sys.executable, "-m", "benchmarks.performance.scale", "--rows", *map(str, args.rows)]
        command += ["--dim", str(args.dim), "--k", str(args.k), "--m", str(args.m)]
        command += [
            "--data-dir",
            args.data_dir,
            "--results",
            str(Path(args.results).with_suffix(".select.json")),
        ]
        done = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
        results["select"] = [
            json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"rows"')
        ]
        print(done.stdout, flush=True)
    big = Path(args.data_dir) / f"mixture-n{args.rows[1]}-d{args.dim}-c{args.k}-s0"
    if not (big / "_complete").exists():
        sys.exit(f"no complete table at {big}: run without --skip-select first")
    results["single_machine"] = []
    for name in ("sklearn", "faiss", "faiss_streaming"):
        out = Path(args.data_dir) / f"beyond-memory-{name}.parquet"
        result = single_machine(name, str(big), str(out), args)
        print(json.dumps(result), flush=True)
        results["single_machine"].append(result)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
