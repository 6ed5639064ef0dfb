"""EfficientNet-Lite0 features of Fashion-MNIST, cached for the experiments, and what they are worth.

Feeds docs/EMBEDDING.md, section "Pretrained image features on Fashion-MNIST" (``analyse``, quoted
there and in docs/RESULTS.md "(a) with CNN features" and "(c) with CNN features"), and caches the
features those two sections of docs/RESULTS.md are run on (``extract``). From the repository root:

    python -m benchmarks.experiments.image_features extract --engine spark   # about 5 minutes on 2 quiet cores
    python -m benchmarks.experiments.image_features analyse                  # prints JSON; runs/features/analysis.json

``extract`` embeds the 60,000 training and 10,000 test images with the ``efficientnet-lite0``
embedder (1280-d, images scaled to 64 x 64) and saves them as float32 ``.npy`` files under
``runs/features/`` (gitignored), in the dataset's row order:

    runs/features/fashion-efficientnet-lite0-64-train.npy   (60000, 1280)
    runs/features/fashion-efficientnet-lite0-64-t10k.npy    (10000, 1280)

``--engine spark`` runs the project's embed job (``spark-sensitivity embed``, local[2]) on a Parquet
table of raw image bytes and converts its output; ``--engine direct`` calls the embedder's batch
function in this process (the same code the executors run, without Spark). Both print images/s.
An experiment loads the cache with :func:`load_features`::

    from benchmarks.experiments.image_features import load_features
    x, y, x_test, y_test = load_features()

``analyse`` measures, on the training set, the share of the per-example loss variance explained by
k-means clusters (R^2 of the loss on its cluster means; k = 100, the project's driver engine
``spark_sensitivity.core.kmeans.localkmeans``, a few seeds), for clusters on PCA-50 of the pixels, PCA-50 of
the CNN features and the full CNN features. The loss is the cross-entropy of a logistic regression
trained on 1,000 uniformly chosen images (as in ``loss_estimation``), once on PCA-50
pixels (the loss of experiment (a)) and once on the CNN features. It also reports the test accuracy
of logistic regression trained on 1,000 and 8,000 images of each embedding.

``fashion_cnn()`` is the representation of the experiments' ``--representation cnn`` (PCA-50 of
the standardized features, train and test).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import REPO, spark_session, standardizer
from spark_sensitivity.core.kmeans import localkmeans
from spark_sensitivity.io.datasets import load_fashion_mnist, pca_embed

CACHE = REPO / "runs" / "features"
SPLITS = ("train", "t10k")
WARMUP = 1_000
CHUNK = 2_048
EXTRACT = "python -m benchmarks.experiments.image_features extract"  # in the messages


def feature_path(split: str, size: int = 64) -> Path:
    return CACHE / f"fashion-efficientnet-lite0-{size}-{split}.npy"


def load_features(size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cached CNN features and labels: train (60000, 1280), train labels, test (10000, 1280), test
    labels; rows in the dataset's order. Run ``python -m benchmarks.experiments.image_features
    extract`` first. While a direct extraction is under way (or was stopped), the training rows are
    its finished prefix."""
    (_, y), (_, y_test) = (load_fashion_mnist(s) for s in SPLITS)
    x, x_test = (_cached(s, size) for s in SPLITS)
    if len(x_test) < len(y_test):
        raise FileNotFoundError(f"only {len(x_test)} test images are cached; run {EXTRACT}")
    return x, y[: len(x)].astype(np.int64), x_test, y_test.astype(np.int64)


def _chunk_path(split: str, size: int, start: int) -> Path:
    return CACHE / "chunks" / f"{size}-{split}-{start:06d}.npy"


def _cached(split: str, size: int) -> np.ndarray:
    """The split's features, or the contiguous prefix of them that direct extraction finished."""
    if feature_path(split, size).exists():
        return np.load(feature_path(split, size))
    parts, start = [], 0
    while _chunk_path(split, size, start).exists():
        parts.append(np.load(_chunk_path(split, size, start)))
        start += len(parts[-1])
    if not parts:
        raise FileNotFoundError(f"no cached features at {feature_path(split, size)}; run {EXTRACT}")
    return np.concatenate(parts)


def _embed_direct(images: np.ndarray, split: str, size: int, batch: int) -> np.ndarray:
    """Chunks of 2,048 images saved as they finish, so a stopped run resumes where it was."""
    from spark_sensitivity.embedders import build_embedder

    embedder = build_embedder("efficientnet-lite0", {"size": size, "batch_size": batch})
    model = embedder.load()
    (CACHE / "chunks").mkdir(parents=True, exist_ok=True)
    for start in range(0, len(images), CHUNK):
        target = _chunk_path(split, size, start)
        if target.exists():
            continue
        values = pa.array([image.tobytes() for image in images[start : start + CHUNK]], pa.binary())
        vectors, reasons = embedder.embed(values, model)
        if reasons.any():
            raise RuntimeError(f"{int((reasons > 0).sum())} images could not be embedded")
        np.save(target, vectors)
        print(f"  {split}: {start + len(values)} / {len(images)}", flush=True)
    return _cached(split, size)


def _embed_spark(images: np.ndarray, size: int, batch: int, work: Path) -> np.ndarray:
    from spark_sensitivity.cli.embed import main as embed_main

    source, out = work / "images", work / "embedded"
    shutil.rmtree(work, ignore_errors=True)
    source.mkdir(parents=True)
    rows = pa.array([image.tobytes() for image in images], pa.binary())
    # 8 files: 8 input partitions, so both task slots stay busy until the end.
    for part, index in enumerate(np.array_split(np.arange(len(images)), 8)):
        table = pa.table({"id": pa.array(index, pa.int64()), "image": rows.take(pa.array(index))})
        pq.write_table(table, source / f"part-{part}.parquet")
    spark_session()  # local[2]; the embed job reuses it
    code = embed_main(
        ["--input", str(source), "--image-col", "image", "--embedder", "efficientnet-lite0",
         "--embed-option", f"size={size}", "--embed-batch-size", str(batch), "--output", str(out)]
    )  # fmt: skip
    if code:
        raise RuntimeError(f"the embed job failed with exit code {code}")
    table = pq.read_table(out).sort_by("id")
    if table.num_rows != len(images):
        raise RuntimeError(f"the embed job wrote {table.num_rows} rows for {len(images)} images")
    flat = table.column("embedding").combine_chunks().flatten().to_numpy()
    return flat.reshape(len(images), -1).astype(np.float32)


def extract(engine: str, size: int, batch: int, limit: int | None) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    report = {"engine": engine, "size": size, "batch": batch}
    for split in ("t10k", "train"):  # the test set first: a stopped run still has all of it
        images, _ = load_fashion_mnist(split)
        images = images[:limit] if limit else images
        started = time.perf_counter()
        if engine == "spark":
            vectors = _embed_spark(images, size, batch, CACHE / f"spark-{split}")
        else:
            vectors = _embed_direct(images, split, size, batch)
        seconds = time.perf_counter() - started
        report[split] = {
            "images": len(images),
            "seconds": round(seconds, 1),
            "per_s": round(len(images) / seconds, 1),
        }
        if not limit and len(vectors) == len(images):
            np.save(feature_path(split, size), vectors)
        print(f"{split}: {len(images)} images in {seconds:.0f} s ({len(images) / seconds:.0f}/s)", flush=True)
    return report


def _fit_logistic(x: np.ndarray, y: np.ndarray, rows: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    scale = standardizer(x[rows])
    model = LogisticRegression(max_iter=3000).fit(scale(x[rows]), y[rows])
    return model, scale


def warmup_losses(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy of a logistic regression trained on 1,000 uniform images (seed 0,
    the rows ``loss_estimation`` uses)."""
    warm = np.random.default_rng(0).choice(len(y), size=WARMUP, replace=False)
    model, scale = _fit_logistic(x, y, warm)
    # From the logits: predict_log_proba takes the log of probabilities that underflow to 0 (an
    # infinite loss) where the model is very sure and wrong, as on 1,280 features of 1,000 images.
    logits = model.decision_function(scale(x))
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return log_norm - logits[np.arange(len(y)), y]


def kmeans_clusters(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each row's k-means cluster (the project's driver engine, k-means|| init, 20 iterations)."""
    order = np.random.default_rng(seed).permutation(len(x))  # the engine seeds on the first rows
    points = np.ascontiguousarray(x[order], dtype=np.float32)
    centers, _, _ = localkmeans.fit(
        points, k, max_iter=20, tol=1e-4, init_mode="k-means||", init_steps=2, seed=seed
    )
    cluster = np.empty(len(x), dtype=np.int64)
    cluster[order] = localkmeans.nearest(points, centers.astype(np.float32))
    return cluster


def cluster_r2(cluster: np.ndarray, loss: np.ndarray) -> float:
    """R^2 of the loss on its cluster means: the share of its variance the clusters explain."""
    sizes = np.bincount(cluster)
    means = np.bincount(cluster, weights=loss) / np.maximum(sizes, 1)
    return float(1 - ((loss - means[cluster]) ** 2).mean() / loss.var())


def analyse(k: int, seeds: int) -> dict:
    x_cnn, y, x_cnn_test, y_test = load_features()
    (pixels, _), (pixels_test, _) = (load_fashion_mnist(s) for s in SPLITS)
    pixels = pixels[: len(y)]  # the cached prefix of the training set, when extraction is unfinished
    both = pca_embed(np.concatenate([pixels, pixels_test]), 50, seed=0)
    cnn_pca = pca_embed_vectors(np.concatenate([x_cnn, x_cnn_test]), 50)
    embeddings = {
        "PCA-50 pixels": (both[: len(y)], both[len(y) :]),
        "PCA-50 CNN": (cnn_pca[: len(y)], cnn_pca[len(y) :]),
        "CNN (1280)": (x_cnn, x_cnn_test),
    }
    report: dict = {"k": k, "seeds": seeds, "train_rows": len(y), "r2": {}, "accuracy": {}}
    losses = {
        "loss of LR on PCA-50 pixels": warmup_losses(embeddings["PCA-50 pixels"][0], y),
        "loss of LR on CNN (1280)": warmup_losses(x_cnn, y),
    }
    report["mean_loss"] = {name: round(float(loss.mean()), 4) for name, loss in losses.items()}
    for loss_name in losses:
        report["r2"][loss_name] = {}
    for name, (train, _) in embeddings.items():
        for seed in range(seeds):
            cluster = kmeans_clusters(train, k, seed)
            for loss_name, loss in losses.items():
                report["r2"][loss_name].setdefault(name, []).append(round(cluster_r2(cluster, loss), 4))
        for loss_name in losses:
            values = report["r2"][loss_name][name]
            print(f"R^2 {loss_name} | clusters on {name}: {np.mean(values):.3f} {values}", flush=True)
    for name, (train, test) in embeddings.items():
        for rows in (1_000, 8_000):
            scores = []
            for seed in range(seeds):
                pick = np.random.default_rng(seed).choice(len(y), size=rows, replace=False)
                model, scale = _fit_logistic(train, y, pick)
                scores.append(round(float(model.score(scale(test), y_test)), 4))
            report["accuracy"][f"{name}, {rows} images"] = scores
            print(f"accuracy {name}, {rows}: {np.mean(scores):.4f} {scores}", flush=True)
    return report


def pca_embed_vectors(x: np.ndarray, components: int, fit_rows: int = 10_000) -> np.ndarray:
    """Vectors projected on the top principal components of a random subset of rows (seed 0)."""
    fit = x[np.random.default_rng(0).choice(len(x), size=min(fit_rows, len(x)), replace=False)]
    fit = fit.astype(np.float64)
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return ((x - mean) @ vt[:components].T).astype(np.float64)


def fashion_cnn(components: int = 50) -> dict[str, np.ndarray]:
    """The CNN representation of the experiments' ``--representation cnn``: the cached 1280-d
    features of train and test, each feature standardized by its mean and spread on the training
    images, projected on their top ``components`` principal components (fitted on 10,000 of the
    70,000 images, seed 0). The same keys as ``benchmarks.common.fashion_pca``."""
    x, y, x_test, y_test = load_features()
    if len(x) < len(y) or len(x) < 60_000:
        raise FileNotFoundError(f"only {len(x)} training images are cached; run {EXTRACT}")
    scale = standardizer(x.astype(np.float64))
    both = pca_embed_vectors(scale(np.concatenate([x, x_test]).astype(np.float64)), components)
    return {"x": both[: len(y)], "y": y, "x_test": both[len(y) :], "y_test": y_test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("extract", help="embed train and test, save runs/features/*.npy")
    run.add_argument("--engine", choices=("spark", "direct"), default="spark")
    run.add_argument("--size", type=int, default=64, help="pixels the images are scaled to (default 64)")
    run.add_argument("--batch", type=int, default=64, help="images per forward pass (default 64)")
    run.add_argument(
        "--limit",
        type=int,
        help="only the first N images of each split (a trial: the .npy files are not written)",
    )
    study = commands.add_parser("analyse", help="R^2 of the loss on clusters; logistic-regression accuracy")
    study.add_argument("--k", type=int, default=100)
    study.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "extract" and args.limit and args.engine == "direct":
        parser.error("--limit is for trial runs of the spark engine; direct extraction resumes on its own")
    if args.command == "extract":
        report = extract(args.engine, args.size, args.batch, args.limit)
    else:
        report = analyse(args.k, args.seeds)
    CACHE.mkdir(parents=True, exist_ok=True)
    name = "analysis.json" if args.command == "analyse" else f"extract-{args.engine}.json"
    (CACHE / name).write_text(json.dumps(report, indent=1))
    print(json.dumps(report), file=sys.stderr)


if __name__ == "__main__":
    main()
