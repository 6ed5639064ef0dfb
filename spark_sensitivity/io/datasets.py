"""Data sets the project ships or finds offline, written as Parquet tables of id + embedding.

- Fashion-MNIST (the real 60,000 training images, from the Debian package dataset-fashion-mnist):
  pixels scaled to [0, 1] and projected on their top principal components. PCA keeps the directions
  of largest pixel variance (silhouette, brightness, texture), so Euclidean distance in that space
  groups similar garments: a simple, model-free embedding that k-means can cluster meaningfully.
- A Gaussian mixture with imbalanced clusters, for tests and benchmarks of any size.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FASHION_MNIST_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        _, dtype_code, ndim = struct.unpack(">HBB", handle.read(4))
        if dtype_code != 0x08:
            raise ValueError(f"{path}: only unsigned-byte IDX files are supported")
        shape = struct.unpack(">" + "I" * ndim, handle.read(4 * ndim))
        return np.frombuffer(handle.read(), dtype=np.uint8).reshape(shape)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) of Fashion-MNIST's 'train' or 't10k' split."""
    images = FASHION_MNIST_DIR / f"{split}-images-idx3-ubyte.gz"
    labels = FASHION_MNIST_DIR / f"{split}-labels-idx1-ubyte.gz"
    if not images.exists():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {FASHION_MNIST_DIR}; install the Debian package "
            "dataset-fashion-mnist or set FASHION_MNIST_DIR"
        )
    return read_idx(images), read_idx(labels)


def pca_embed(images: np.ndarray, components: int, seed: int = 0, fit_rows: int = 10_000) -> np.ndarray:
    """Pixels in [0, 1] projected on the top principal components of a random subset of rows."""
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    fit = pixels[rng.choice(len(pixels), size=min(fit_rows, len(pixels)), replace=False)]
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return (pixels - mean) @ vt[:components].T


def _embedding_array(vectors: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(pa.list_(pa.float32()))


def write_fashion_mnist(path: str | Path, components: int = 32) -> int:
    """Writes Fashion-MNIST train as Parquet: id, label, label_name, embedding. Returns the row count."""
    images, labels = load_fashion_mnist("train")
    vectors = pca_embed(images, components)
    table = pa.table(
        {
            "id": pa.array(np.arange(len(labels), dtype=np.int64)),
            "label": pa.array(labels.astype(np.int32)),
            "label_name": pa.array([FASHION_MNIST_LABELS[i] for i in labels]),
            "embedding": _embedding_array(vectors),
        }
    )
    Path(path).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, Path(path) / "part-00000.parquet")
    return len(labels)


def write_gaussian_mixture(
    path: str | Path,
    n: int,
    dim: int,
    clusters: int,
    seed: int = 0,
    rows_per_file: int = 250_000,
) -> None:
    """Writes n rows (id, component, embedding) from an imbalanced Gaussian mixture.

    Component weights follow a Zipf-like law (1/rank), centers are spread with scale 4 and each
    component has its own spread, so clusters differ in size and cost.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(clusters, dim)).astype(np.float32)
    spreads = rng.uniform(0.5, 2.0, size=clusters).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1)
    weights /= weights.sum()
    Path(path).mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, n, rows_per_file)):
        rows = min(rows_per_file, n - start)
        component = rng.choice(clusters, size=rows, p=weights)
        noise = rng.standard_normal((rows, dim), dtype=np.float32)
        vectors = centers[component] + noise * spreads[component, None]
        table = pa.table(
            {
                "id": pa.array(np.arange(start, start + rows, dtype=np.int64)),
                "component": pa.array(component.astype(np.int32)),
                "embedding": _embedding_array(vectors),
            }
        )
        pq.write_table(table, Path(path) / f"part-{part:05d}.parquet")
