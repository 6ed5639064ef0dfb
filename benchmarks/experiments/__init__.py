"""Quality experiments: what the method's selections are worth (accuracy, estimation error, forecast
coverage, duplicates found). Each module regenerates or feeds a section of docs/RESULTS.md,
docs/FORECAST.md, docs/DEDUP.md or docs/EMBEDDING.md; its docstring names which, and how to run it."""
