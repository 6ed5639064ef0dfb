"""Clustering-based sensitivity sampling on Spark: pick a small weighted subset that represents the data."""

from spark_sensitivity.estimator import SensitivitySampler, SensitivitySamplerModel

__version__ = "0.1.0"
__all__ = ["SensitivitySampler", "SensitivitySamplerModel", "__version__"]
