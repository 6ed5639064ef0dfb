"""The algorithm on DataFrames and numpy: row randomness, k-means (kernels and engines), assignment,
sensitivity scores, the sampling strategies, loss-aware scoring, forecasts, baselines and
near-duplicate detection. Nothing here reads or writes files or parses command lines."""
