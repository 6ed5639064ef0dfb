"""The embedding stage: raw rows (text, images, vectors) to embeddings, on the executors.

Built-in embedders: ``sentence-transformers`` (needs the ``text`` extra), ``hashing`` (text, no
model), ``image-pca`` (small grayscale images), ``efficientnet-lite0`` (images through a pretrained
network; needs the ``cnn`` extra) and ``precomputed`` (an existing vector column).
Any subclass of :class:`Embedder` can be named by its import path, ``package.module:ClassName``.
"""

from spark_sensitivity.embedders.base import BUILTIN_EMBEDDERS, Embedder, Invalid, build_embedder
from spark_sensitivity.embedders.stage import ERROR_COL, EmbedCounts, EmbedReport, embed_frame
from spark_sensitivity.embedders.worker import worker_stats

__all__ = [
    "BUILTIN_EMBEDDERS",
    "ERROR_COL",
    "EmbedCounts",
    "EmbedReport",
    "Embedder",
    "Invalid",
    "build_embedder",
    "embed_frame",
    "worker_stats",
]
