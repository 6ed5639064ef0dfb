"""The embedding stage: raw rows (text, images, vectors) to embeddings, on the executors.

Built-in embedders: ``sentence-transformers`` (needs the ``text`` extra), ``hashing`` (text, no
model), ``image-pca`` (small grayscale images), ``efficientnet-lite0`` (images through a pretrained
network; needs the ``cnn`` extra) and ``precomputed`` (an existing vector column).
Any subclass of :class:`Embedder` can be named by its import path, ``package.module:ClassName``.
"""

from spark_sensitivity.embedders.base import BUILTIN_EMBEDDERS, Embedder, Invalid, build_embedder
from spark_sensitivity.embedders.job import (
    add_embed_arguments,
    add_embed_job_arguments,
    embed_arguments,
    run_embed_job,
)
from spark_sensitivity.embedders.stage import ERROR_COL, EmbedCounts, EmbedReport, embed_frame
from spark_sensitivity.embedders.worker import worker_stats

__all__ = [
    "BUILTIN_EMBEDDERS",
    "ERROR_COL",
    "EmbedCounts",
    "EmbedReport",
    "Embedder",
    "Invalid",
    "add_embed_arguments",
    "add_embed_job_arguments",
    "build_embedder",
    "embed_arguments",
    "embed_frame",
    "run_embed_job",
    "worker_stats",
]
