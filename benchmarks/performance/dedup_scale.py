"""Dedup at the text model's dimension on dense near-duplicates: time and peak memory against select.

Feeds docs/DEDUP.md, section "How it runs" (the table "At 384 dimensions, dense near-duplicates";
prints JSON). From the repository root:

    python -m benchmarks.performance.dedup_scale --workdir runs/dedup_scale --rows 20000 100000 1000000

For each size it writes a table of Gaussian blobs (float32, streamed to Parquet in chunks, never whole
in memory), then runs in fresh processes, one after the other: `dedup` (--k, --dedup-eps) and
`select` on the same table and k. It records each run's wall time, the manifest's stage times and
counts, and the peak resident memory of the driver's JVM and of every Python worker (polled from
/proc: VmHWM, the kernel's high-water mark, so a short peak between polls is still seen).

The blobs: `--blobs` unit-norm means in random directions, sizes in proportion to 1 / rank (the
largest holds about 28% of the rows at 20 blobs), and per blob a noise whose squared norm is
s * (mean's), s spread evenly over [0.02, 0.12]: in the tighter blobs nearly every pair is within
cosine 0.95 (rows are near-copies of each other), in the looser ones few are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK_ROWS = 50_000


def write_blobs(path: Path, rows: int, dim: int, blobs: int, seed: int) -> None:
    """The benchmark table (id, embedding array<float>), written a chunk at a time."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(blobs, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    shares = 1.0 / np.arange(1, blobs + 1)
    shares /= shares.sum()
    noise = np.sqrt(np.linspace(0.02, 0.12, blobs) / dim)
    path.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, rows, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, rows - start)
        blob = rng.choice(blobs, size=n, p=shares)
        x = (means[blob] + rng.normal(size=(n, dim)) * noise[blob, None]).astype(np.float32)
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim).cast(pa.list_(pa.float32()))
        table = pa.table({"id": pa.array(np.arange(start, start + n), pa.int64()), "embedding": embedding})
        pq.write_table(table, path / f"part-{part:05d}.parquet")


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class PeakMemory(threading.Thread):
    """Polls a process tree: the largest VmHWM of the JVM and of any one Python worker, in MiB."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.done = root, threading.Event()
        self.jvm_kib = self.worker_kib = 0

    def run(self) -> None:
        while not self.done.is_set():
            for pid in _descendants(self.root):
                line = _cmdline(pid)
                peak = _status_kib(pid, "VmHWM")
                if "java" in line.split(" ", 1)[0]:
                    self.jvm_kib = max(self.jvm_kib, peak)
                elif "pyspark.daemon" in line or "pyspark.worker" in line:
                    self.worker_kib = max(self.worker_kib, peak)
            self.done.wait(0.2)

    def result(self) -> dict[str, float]:
        return {
            "jvm_peak_rss_mib": round(self.jvm_kib / 1024, 1),
            "worker_peak_rss_mib": round(self.worker_kib / 1024, 1),
        }


def run(command: list[str], out: Path, log: Path) -> dict:
    started = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        poller = PeakMemory(process.pid)
        poller.start()
        code = process.wait()
        poller.done.set()
        poller.join()
    result = {"exit": code, "wall_seconds": round(time.perf_counter() - started, 1), **poller.result()}
    manifest = out / "manifest.json"
    if code == 0 and manifest.exists():
        result["manifest"] = json.loads(manifest.read_text())
    else:
        result["log_tail"] = log.read_text()[-2000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--blobs", type=int, default=20)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--skip-select", action="store_true")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "spark_sensitivity"]
    conf = ["--spark-conf", f"spark.driver.memory={args.driver_memory}", "--quiet"]
    for rows in args.rows:
        table = args.workdir / f"blobs_{rows}x{args.dim}"
        if not table.exists():
            write_blobs(table, rows, args.dim, args.blobs, args.seed)
        common = ["--input", str(table), "--k", str(args.k), "--seed", str(args.seed), *conf]
        record = {
            "rows": rows,
            "dim": args.dim,
            "k": args.k,
            "eps": args.eps,
            "load_before": os.getloadavg()[0],
        }
        out = args.workdir / f"dedup_{rows}"
        record["dedup"] = run(
            [*cli, "dedup", *common, "--dedup-eps", str(args.eps), "--output", str(out), "--overwrite"],
            out,
            args.workdir / f"dedup_{rows}.log",
        )
        if not args.skip_select:
            out = args.workdir / f"select_{rows}"
            record["select"] = run(
                [
                    *cli,
                    "select",
                    *common,
                    "--sample-size",
                    "1000",
                    "--strategy",
                    "sensitivity",
                    "--output",
                    str(out),
                    "--overwrite",
                ],  # fmt: skip
                out,
                args.workdir / f"select_{rows}.log",
            )
        print(json.dumps(_summary(record)), flush=True)


def _summary(record: dict) -> dict:
    """The numbers docs/DEDUP.md reports (the manifests are long)."""
    dedup = record["dedup"]
    info = dedup.get("manifest", {}).get("dedup", {})
    keys = ("removed_rows", "largest_cluster", "split_clusters", "groups", "largest_group")
    summary = {k: record[k] for k in ("rows", "dim", "k", "eps", "load_before")}
    summary["dedup"] = {
        "exit": dedup["exit"],
        "wall_seconds": dedup["wall_seconds"],
        "kmeans_seconds": info.get("kmeans_seconds"),
        "dedup_seconds": info.get("dedup_seconds"),
        **{k: info.get(k) for k in keys},
        "jvm_peak_rss_mib": dedup["jvm_peak_rss_mib"],
        "worker_peak_rss_mib": dedup["worker_peak_rss_mib"],
        **({"log_tail": dedup["log_tail"]} if "log_tail" in dedup else {}),
    }
    if "select" in record:
        select = record["select"]
        summary["select"] = {
            "exit": select["exit"],
            "wall_seconds": select["wall_seconds"],
            "jvm_peak_rss_mib": select["jvm_peak_rss_mib"],
            "worker_peak_rss_mib": select["worker_peak_rss_mib"],
        }
    return summary


if __name__ == "__main__":
    main()
