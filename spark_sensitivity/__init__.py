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

from spark_sensitivity.ml.estimator import SensitivitySampler, SensitivitySamplerModel
from spark_sensitivity.version import __version__

__all__ = ["SensitivitySampler", "SensitivitySamplerModel", "__version__"]
