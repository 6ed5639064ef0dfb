"""Speed and memory: the select job against naive Spark, scikit-learn and faiss (``compare``), at 10M
rows (``scale``), jobs and passes per run (``jobs``), kernels (``exactness``, ``gpu_kernel``), the
embed stage (``embed_throughput``) and dedup (``dedup_scale``); they feed docs/PERFORMANCE.md,
docs/DEDUP.md and docs/EMBEDDING.md. ``pipelines``, ``probes``, ``memory`` and ``report`` are the
helpers of ``compare`` (and ``memory`` of ``scale``), not run on their own."""
