"""The embedder interface, the reasons a row cannot be embedded, and finding an embedder by name."""

from __future__ import annotations

import enum
import importlib
import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

INPUT_KINDS = ("text", "image", "vector")

# Built-in embedders are import paths too: the same loader serves them and user-supplied ones.
BUILTIN_EMBEDDERS = {
    "sentence-transformers": "spark_sensitivity.embedders.text:SentenceTransformerEmbedder",
    "hashing": "spark_sensitivity.embedders.text:HashingEmbedder",
    "image-pca": "spark_sensitivity.embedders.image:ImagePCAEmbedder",
    "efficientnet-lite0": "spark_sensitivity.embedders.cnn:EfficientNetLite0Embedder",
    "precomputed": "spark_sensitivity.embedders.precomputed:PrecomputedEmbedder",
}
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class Invalid(enum.IntEnum):
    """Why a row got no embedding (0 means it got one)."""

    NULL = 1
    EMPTY = 2
    UNDECODABLE = 3
    WRONG_SIZE = 4
    NON_FINITE = 5

    @property
    def label(self) -> str:
        """The words error messages and the ``embed_error`` column use."""
        return {"WRONG_SIZE": "wrong size", "NON_FINITE": "non-finite"}.get(self.name, self.name.lower())


class Embedder(ABC):
    """Turns the values of one input column into vectors, one Arrow batch at a time.

    Life cycle: built on the driver from keyword options (strings when they come from the command
    line, so constructors convert them); when ``fit_rows`` > 0, :meth:`fit` runs once on the
    driver on a bounded sample of the input column; the instance is then pickled to the executors,
    where :meth:`load` runs once per Python worker process and model (its result is cached under
    :meth:`model_key`) and :meth:`embed` once per batch. Keep heavy state (a model) out of the
    instance: return it from ``load``.
    """

    #: Which input column the embedder reads: "text" (string), "image" or "vector".
    input_kind: ClassVar[str] = "text"
    #: What a valid input looks like, for error messages.
    expects: str = "non-empty text"
    #: Rows of the input column :meth:`fit` wants on the driver (0: no fit).
    fit_rows: int = 0
    #: True when a row's cost grows with its text length (a transformer): the stage then range-
    #: partitions the rows by descending length, so a batch holds texts of similar length (little
    #: padding) and the longest partitions start first (no long task left running alone at the end).
    balance_by_length: bool = False

    def fit(self, sample: pa.Array) -> None:
        """Driver side: learn state from at most ``fit_rows`` non-null input values."""
        return None

    def info(self) -> dict[str, Any]:
        """Facts about the fit for the run's manifest (e.g. rows fitted on)."""
        return {}

    def model_key(self) -> Hashable | None:
        """Names the model :meth:`load` returns, so embedders with the same key share a loaded
        model in a worker. None (the default) keys it by this embedding run."""
        return None

    def load(self) -> Any:
        """Executor side, once per Python worker process: load the model :meth:`embed` gets."""
        return None

    @abstractmethod
    def embed(self, values: pa.Array, model: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Vectors of non-null (and, for text, non-blank) input values: a (rows, dim) matrix, or
        the matrix and a uint8 array of :class:`Invalid` codes, 0 for the rows embedded."""


def as_bool(value: bool | str) -> bool:
    """A flag given as a bool or as text from the command line."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def embedder_class(spec: str) -> type[Embedder]:
    """The class for a built-in name or an explicit ``package.module:ClassName`` path.

    Only that module is imported; nothing from the data or the options is evaluated or unpickled.
    """
    path = BUILTIN_EMBEDDERS.get(spec, spec)
    if not _IMPORT_PATH.match(path):
        raise ValueError(
            f"unknown embedder {spec!r}; expected one of {', '.join(BUILTIN_EMBEDDERS)} "
            "or an import path like my_package.my_module:MyEmbedder"
        )
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"embedder {spec!r}: cannot import {module_name} ({error})") from None
    found = getattr(module, class_name, None)
    if not (isinstance(found, type) and issubclass(found, Embedder)):
        raise ValueError(
            f"embedder {spec!r}: {path} is not a subclass of spark_sensitivity.embedders.Embedder"
        )
    if inspect.isabstract(found):
        raise ValueError(f"embedder {spec!r}: {path} does not implement embed()")
    return found


def build_embedder(spec: str, options: dict[str, Any] | None = None) -> Embedder:
    """An embedder instance from its name or import path and its keyword options."""
    cls = embedder_class(spec)
    options = dict(options or {})
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # less self
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    accepted = [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [name for name in options if name not in accepted]
    if unknown and not takes_any:
        raise ValueError(
            f"embedder {spec!r} has no option {unknown[0]!r} (options: {', '.join(accepted) or 'none'})"
        )
    try:
        embedder = cls(**options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"embedder {spec!r}: {error}") from None
    if embedder.input_kind not in INPUT_KINDS:
        raise ValueError(
            f"embedder {spec!r} has input_kind {embedder.input_kind!r}; expected one of {', '.join(INPUT_KINDS)}"
        )
    return embedder
