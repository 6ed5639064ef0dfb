"""The pyspark.ml face: the ``SensitivitySampler`` Estimator, its Model, Params and persistence."""
