"""Same outputs before and after a refactor: runs every command on fixed inputs, then compares two
such runs.

``python -m benchmarks.integration.same_outputs run DIR`` writes, under DIR, the outputs of seven
select runs (model-free auto with a pilot forecast, a report and a loss column; sensitivity;
stratified with --dedup-eps; loss-aware rounds 1 and 2 with --drop-vector; Delta output; several
sample sizes), a dedup run with --accelerator cpu, a refresh, an embed and an evaluate run, and
saves the select model once more through ``model.write()``.

``python -m benchmarks.integration.same_outputs compare BEFORE AFTER`` compares them: every
manifest and JSON file with timings, dates, run ids, versions and paths left out; every Parquet
table row for row (sorted by every column); the saved models' metadata. It prints each difference
and exits 1 when there is one. Run ``run`` with the old code and with the new, then ``compare``.
For the old code, run it from a ``git worktree`` of the earlier commit, with this checkout on
PYTHONPATH for ``benchmarks``: ``cd OLD && PYTHONPATH=$PWD:NEW python -m
benchmarks.integration.same_outputs run DIR`` (``-m`` puts the current folder first on the module
path, so spark_sensitivity comes from OLD, in the driver and in Spark's Python workers alike).

Used for the "no change of behaviour" check of docs/ARCHITECTURE.md's layout changes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Keys whose values differ between any two runs: the clock, versions, the run's identity. Paths are
# compared with the run's own folder written as ROOT.
VOLATILE = {"run_id", "versions", "version", "created", "started", "finished", "timestamp", "uid", "log"}
VOLATILE_SUFFIXES = ("seconds", "_time", "per_second")


def _volatile(key: str) -> bool:
    return key in VOLATILE or key.endswith(VOLATILE_SUFFIXES)


def _inputs(root: Path) -> dict[str, Path]:
    from spark_sensitivity.io.datasets import write_gaussian_mixture

    base = root / "inputs"
    paths = {name: base / name for name in ("mixture", "new", "texts", "losses")}
    if base.exists():
        return paths
    write_gaussian_mixture(paths["mixture"], n=6000, dim=16, clusters=8, seed=5)
    rng = np.random.default_rng(1)
    table = pq.read_table(paths["mixture"])
    loss = np.abs(rng.normal(size=table.num_rows)) + table.column("component").to_numpy() * 0.1
    pq.write_table(table.append_column("loss", pa.array(loss)), base / "with_loss.parquet")
    paths["with_loss"] = base / "with_loss.parquet"
    pilot = pq.read_table(paths["with_loss"]).select(["id", "loss"]).slice(0, 500)
    pq.write_table(pilot, base / "pilot.parquet")
    new = pq.read_table(paths["mixture"]).slice(0, 500)
    ids = pa.array(new.column("id").to_numpy() + 1_000_000)
    paths["new"].mkdir(parents=True)
    pq.write_table(new.set_column(0, "id", ids), paths["new"] / "part-0.parquet")
    words = ["cat", "dog", "sat", "mat", "ran", "far", "red", "sun"]
    texts = [" ".join(rng.choice(words, size=6)) for _ in range(300)]
    paths["texts"].mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(range(300)), "body": texts}), paths["texts"] / "t.parquet")
    return paths


def run_all(root: Path) -> None:
    from spark_sensitivity.cli import main

    paths = _inputs(root)
    paths["with_loss"] = root / "inputs" / "with_loss.parquet"
    out = root / "out"
    common = ["--k", "12", "--seed", "3", "--quiet"]
    data = ["--input", str(paths["mixture"])]
    runs = {
        "auto_pilot": ["select", "--input", str(paths["with_loss"]), "--sample-size", "300",
                       "--pilot-losses", str(root / "inputs" / "pilot.parquet"), "--loss-col", "loss", "--report", *common],
        "sensitivity": ["select", *data, "--strategy", "sensitivity", "--sample-size", "400", *common],
        "stratified_dedup": ["select", *data, "--strategy", "stratified", "--sample-size", "250",
                             "--dedup-eps", "0.01", *common],
        "lossaware_1": ["select", *data, "--mode", "loss-aware", "--sample-size", "200", "--drop-vector",
                        *common],
        "delta": ["select", *data, "--strategy", "sensitivity", "--sample-size", "150", "--output-format",
                  "delta", *common],
        "several": ["select", *data, "--sample-size", "30,120", *common],
        "dedup": ["dedup", *data, "--dedup-eps", "0.05", "--accelerator", "cpu", *common],
        "embed": ["embed", "--input", str(paths["texts"]), "--text-col", "body", "--embedder", "hashing",
                  "--embed-option", "dim=16", "--quiet"],
    }  # fmt: skip
    for name, argv in runs.items():
        _run(main, name, [*argv, "--output", str(out / name)])
    reps = pq.read_table(out / "lossaware_1" / "representatives").select(["id"]).replace_schema_metadata(None)
    losses = reps.append_column("loss", pa.array(reps.column("id").to_numpy() % 7 * 0.25 + 0.1))
    pq.write_table(losses, root / "inputs" / "rep_losses.parquet")
    round2 = [*runs["lossaware_1"], "--rep-losses", str(root / "inputs" / "rep_losses.parquet")]
    _run(main, "lossaware_2", [*round2, "--output", str(out / "lossaware_2")])
    refresh = ["refresh", "--model", str(out / "sensitivity" / "model"), "--new-input", str(paths["new"]),
               "--previous-subset", str(out / "sensitivity" / "subset"), "--seed", "4", "--quiet"]  # fmt: skip
    _run(main, "refresh", [*refresh, "--output", str(out / "refresh")])
    evaluate = ["evaluate", "--input", str(paths["with_loss"]), "--scheme", "uniform", "--scheme",
                "model-free", "--sample-sizes", "50,200", "--seeds", "5", "--k", "8", "--quiet"]  # fmt: skip
    _run(main, "evaluate", [*evaluate, "--output", str(out / "evaluate")])
    labels = ["evaluate", "--input", str(paths["mixture"]), "--label-col", "component", "--sample-sizes",
              "40", "--seeds", "2", "--quiet"]  # fmt: skip
    _run(main, "evaluate_labels", [*labels, "--output", str(out / "evaluate_labels")])
    from spark_sensitivity.ml.model import SensitivitySamplerModel

    model = SensitivitySamplerModel.load(str(out / "sensitivity" / "model"))
    model.write().save(str(out / "resaved_model"))


def _run(main: Any, name: str, argv: list[str]) -> None:
    code = main(argv)
    print(f"{name}: exit {code}", flush=True)
    if code != 0:
        sys.exit(f"{name} failed: {' '.join(argv)}")


def _clean(value: Any, root: str = "") -> Any:
    """``value`` less volatile keys, floats to 12 digits, the run's own folder written as ROOT."""
    if isinstance(value, dict):
        return {k: _clean(v, root) for k, v in sorted(value.items()) if not _volatile(k)}
    if isinstance(value, list):
        return [_clean(v, root) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    if isinstance(value, str) and root:
        return value.replace(root, "ROOT")
    return value


def _json_lines(path: Path, root: Path) -> list:
    """The JSON documents of a file, or of every part file of a folder (a saved model's metadata)."""
    files = sorted(path.glob("part-*")) if path.is_dir() else [path]
    text = "\n".join(f.read_text() for f in files)
    try:
        return [_clean(json.loads(text), str(root))]
    except json.JSONDecodeError:
        return [_clean(json.loads(line), str(root)) for line in text.splitlines() if line.strip()]


def _table(path: Path) -> list[tuple]:
    table = pq.read_table(path) if path.is_file() else pq.ParquetDataset(path).read()
    columns = [c for c in table.column_names if not _volatile(c)]
    rows = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
    return sorted((tuple(json.dumps(v, sort_keys=True) for v in row) for row in rows), key=str)


def _files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(("_", ".")) for part in relative.parts) or "inputs" in relative.parts:
            continue
        if path.is_dir() and any(p.suffix == ".parquet" for p in path.glob("*.parquet")):
            if (path / "_delta_log").exists() or not any(c.is_dir() for c in path.iterdir()):
                found[str(relative)] = path
        elif (
            path.is_dir()
            and path.name == "metadata"
            or path.is_file()
            and path.suffix == ".json"
            and "_delta_log" not in relative.parts
        ):
            found[str(relative)] = path
    return found


def compare(before: Path, after: Path) -> int:
    old, new = _files(before), _files(after)
    problems = [f"only before: {k}" for k in old.keys() - new.keys()]
    problems += [f"only after: {k}" for k in new.keys() - old.keys()]
    for key in sorted(old.keys() & new.keys()):
        a, b = old[key], new[key]
        if a.is_dir() and a.name != "metadata":
            same = _table(a) == _table(b)
        else:
            same = _json_lines(a, before) == _json_lines(b, after)
        if not same:
            problems.append(f"differs: {key}")
    for line in problems:
        print(line)
    print(f"{len(old.keys() & new.keys())} outputs compared, {len(problems)} differences")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("dir", type=Path)
    both = sub.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run_all(args.dir)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
