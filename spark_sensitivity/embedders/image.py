"""An image embedder for small grayscale images (Fashion-MNIST-like): pixels projected by PCA.

PCA keeps the directions in which the pixels of the data vary most (silhouette, brightness,
texture); the top components are the best linear summary of the images in the least-squares sense,
so Euclidean distances between embeddings approximate distances between the images with the pixel
noise left out, and k-means on them groups similar images. It needs no model, and its fit is one
SVD of a bounded sample on the driver; the projection (mean and components) ships to the executors.
"""

from __future__ import annotations

import importlib.util
import io
from typing import Any

import numpy as np
import pyarrow as pa

from spark_sensitivity.embedders.base import Embedder, Invalid, as_bool, l2_normalize

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_encoded(blob: bytes, height: int, width: int) -> tuple[np.ndarray | None, Invalid | None]:
    """Pixels of an encoded image (PNG, JPEG, ... anything Pillow reads), as grayscale."""
    try:
        from PIL import Image
    except ImportError:  # the driver's error message says Pillow is missing (see ImagePCAEmbedder)
        return None, Invalid.UNDECODABLE
    try:
        with Image.open(io.BytesIO(blob)) as image:
            if image.size != (width, height):
                return None, Invalid.WRONG_SIZE
            return np.asarray(image.convert("L"), dtype=np.float32).ravel(), None
    except Exception:  # any decoder failure means the same for this row: it is not an image
        return None, Invalid.UNDECODABLE


def _decode_bytes(values: pa.Array, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixel bytes (exactly height * width of them) or encoded images."""
    pixels = np.zeros((len(values), height * width), dtype=np.float32)
    reasons = np.zeros(len(values), dtype=np.uint8)
    for row, blob in enumerate(values.to_pylist()):
        if blob is None:
            reasons[row] = Invalid.NULL
        elif len(blob) == height * width and not blob.startswith(_PNG_SIGNATURE):
            pixels[row] = np.frombuffer(blob, dtype=np.uint8)
        else:
            decoded, reason = _decode_encoded(blob, height, width)
            if reason is None:
                pixels[row] = decoded
            else:
                reasons[row] = reason
    return pixels, reasons


def _decode_arrays(values: pa.Array, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel arrays: flat (height * width values) or nested (height rows of width values)."""
    n = len(values)
    outer = values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    if pa.types.is_list(values.type.value_type) or pa.types.is_large_list(values.type.value_type):
        inner = values.flatten()
        inner_lengths = inner.value_lengths().fill_null(-1).to_numpy(zero_copy_only=False)
        owner = np.repeat(np.arange(n), outer)
        ragged = np.zeros(n, dtype=bool)
        ragged[owner[inner_lengths != width]] = True
        lengths = np.bincount(owner, weights=np.maximum(inner_lengths, 0), minlength=n).astype(np.int64)
        fits = (outer == height) & ~ragged
        flat = inner.flatten()
    else:
        lengths = outer
        fits = outer == height * width
        flat = values.flatten()
    flat = flat.to_numpy(zero_copy_only=False).astype(np.float32)  # null pixels become NaN
    size = height * width
    pixels = np.zeros((n, size), dtype=np.float32)
    rows = np.flatnonzero(fits)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    pixels[rows] = flat[starts[rows, None] + np.arange(size)]
    reasons = np.where(fits, 0, Invalid.WRONG_SIZE).astype(np.uint8)
    reasons[np.asarray(values.is_null())] = Invalid.NULL
    unreadable = fits & ~np.isfinite(pixels).all(axis=1)
    reasons[unreadable] = Invalid.UNDECODABLE
    pixels[unreadable] = 0.0
    return pixels, reasons


def decode_images(values: pa.Array, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, height * width) float32 pixels scaled by 1/255, and an :class:`Invalid` code per row."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        pixels, reasons = _decode_bytes(values, height, width)
    else:
        pixels, reasons = _decode_arrays(values, height, width)
    return pixels / 255.0, reasons


class ImagePCAEmbedder(Embedder):
    """Grayscale ``height`` x ``width`` images, projected on the top ``dim`` principal components
    of up to ``fit_rows`` of them.

    The image column may hold raw pixel bytes (exactly height * width, row-major), encoded images
    (PNG, JPEG, ...: needs Pillow), a struct with a ``bytes`` field (the Hugging Face datasets
    layout), or pixel arrays (flat, or nested rows). Pixel values are read on a 0-255 scale; values
    in [0, 1] work as well, as the projection is linear and k-means does not change with the scale.
    """

    input_kind = "image"

    def __init__(
        self,
        height: int | str = 28,
        width: int | str = 28,
        dim: int | str = 32,
        fit_rows: int | str = 10_000,
        normalize: bool | str = False,
    ):
        self.height, self.width, self.dim = int(height), int(width), int(dim)
        self.fit_rows = int(fit_rows)
        self.normalize = as_bool(normalize)
        if min(self.height, self.width, self.dim) < 1:
            raise ValueError("height, width and dim must be >= 1")
        if self.dim > self.height * self.width:
            raise ValueError(f"dim {self.dim} exceeds the {self.height * self.width} pixels of an image")
        if self.fit_rows < self.dim:
            raise ValueError(f"fit_rows must be at least dim ({self.dim}), got {self.fit_rows}")
        self.expects = (
            f"{self.height}x{self.width} grayscale images as raw or encoded (PNG, JPEG) bytes or pixel arrays"
        )
        if importlib.util.find_spec("PIL") is None:
            self.expects += "; encoded images need Pillow, which is not installed: pip install pillow"
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.fitted_rows = 0
        self.explained_variance = 0.0

    def fit(self, sample: pa.Array) -> None:
        pixels, reasons = decode_images(sample, self.height, self.width)
        pixels = pixels[reasons == 0].astype(np.float64)
        if len(pixels) < self.dim:
            raise ValueError(
                f"the projection needs at least dim = {self.dim} valid images in its fit sample, "
                f"found {len(pixels)}"
            )
        mean = pixels.mean(axis=0)
        _, singular, vt = np.linalg.svd(pixels - mean, full_matrices=False)
        components = vt[: self.dim]
        # An SVD fixes each component only up to sign: make the largest entry positive, so the same
        # sample always gives the same embedding.
        signs = np.sign(components[np.arange(self.dim), np.abs(components).argmax(axis=1)])
        self.mean = mean.astype(np.float32)
        self.components = (components * signs[:, None]).astype(np.float32)
        self.fitted_rows = len(pixels)
        energy = singular**2
        self.explained_variance = float(energy[: self.dim].sum() / energy.sum()) if energy.sum() > 0 else 1.0

    def info(self) -> dict[str, Any]:
        return {"fit_rows": self.fitted_rows, "explained_variance": round(self.explained_variance, 4)}

    def embed(self, values: pa.Array, model: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.components is None:
            raise RuntimeError("the image-pca embedder must be fitted on a sample before it embeds")
        pixels, reasons = decode_images(values, self.height, self.width)
        vectors = (pixels - self.mean) @ self.components.T
        return (l2_normalize(vectors) if self.normalize else vectors), reasons
