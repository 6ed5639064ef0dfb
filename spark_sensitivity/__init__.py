"""Clustering-based sensitivity sampling on Spark: pick a small weighted subset that represents the data.

The package is built in layers; a module imports only from its own layer or the layers below it:

    version     the package version
    settings    every setting of a run, declared once (name, default, choices, help, check)
    core        the algorithm on DataFrames and numpy; no file I/O, no argparse
    io          sessions, file systems, table formats, atomic publishing, redaction, provenance
    embedders   raw rows (text, images) to embeddings on the executors
    ml          the pyspark.ml Estimator/Model, Params and persistence
    workflows   the jobs as functions: select, loss-aware, refresh, dedup, embed, evaluate, plan, report
    cli         the command line, one module per command

``io`` and ``embedders`` sit side by side: neither imports the other. ``tests/test_layers.py``
fails when an import breaks this order, forms a circle, or reaches for another module's private name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spark_sensitivity.version import __version__

if TYPE_CHECKING:
    from spark_sensitivity.ml.estimator import SensitivitySampler
    from spark_sensitivity.ml.model import SensitivitySamplerModel

__all__ = ["SensitivitySampler", "SensitivitySamplerModel", "__version__"]

# Loaded on first use: the Python workers import the package for the numpy kernels alone, and
# pyspark.ml (with pandas) would add half a second to each of them.
_LAZY = {
    "SensitivitySampler": "spark_sensitivity.ml.estimator",
    "SensitivitySamplerModel": "spark_sensitivity.ml.model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spark_sensitivity' has no attribute {name!r}")
