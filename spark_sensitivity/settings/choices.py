"""The choices and limits of the settings; the modules that implement them import them from here."""

# Spark hashes the seed as a signed 64-bit literal; numpy wants it non-negative.
MAX_SEED = 2**63 - 1
# Draw counts and indexes are 32-bit integers in the subset's schema.
# The most draws one run makes: the draw materialises about m candidate draws and keeps the m with
# the smallest keys in ONE task, so its memory grows with m whatever the number of rows (2^31 - 1
# draws from 3 rows once grew a Python worker to 21 GB). Refused when the flags are parsed.
MAX_SAMPLE_SIZE = 10_000_000

# Sampling strategies (spark_sensitivity.core.sampling.strategies implements them).
SENSITIVITY = "sensitivity"
REPRESENTATIVES = "representatives"
STRATIFIED = "stratified"
PROTOTYPES = "prototypes"
AUTO = "auto"
LOSS_AWARE = "loss-aware"
STRATEGIES = (SENSITIVITY, REPRESENTATIVES, STRATIFIED, PROTOTYPES, AUTO)
SELECT_STRATEGIES = (*STRATEGIES, LOSS_AWARE)
DEFAULT_K = 100

# The rule of --strategy auto (docs/METHOD.md, "auto"). FROZEN on 2026-12-02, before any out-of-sample
# evaluation (docs/RESULTS.md): change these only with a new out-of-sample measurement.
#
# Before the fit auto plans representatives with k = m when k is not given (or equals m),
# m <= AUTO_REPRESENTATIVES_MAX_M and the table has at least AUTO_MIN_ROWS_PER_REPRESENTATIVE * m
# rows, else stratified with the given k (or DEFAULT_K). Without a pilot, after the fit it
# keeps representatives only when each one stands for a large, structured cluster:
#   n / m >= AUTO_MIN_ROWS_PER_REPRESENTATIVE   and   between-cluster share >= AUTO_MIN_EXPLAINED_SHARE
# (the share of the embeddings' spread around their mean that the centers explain); otherwise it
# draws stratified from the same k = m clusters (sensitivity when m exceeds n or the non-empty
# clusters). With --pilot-losses it picks, among the strategies
# the fit allows, the one whose forecast RMSE of the mean loss is lowest.
#
# Largest budget measured to gain with representatives (RESULTS.md (c): +7 points at 100, +2 at 300,
# level at 1,000 on Fashion-MNIST); k-means with k = m also gets costly beyond it.
AUTO_REPRESENTATIVES_MAX_M = 1000
# Rows per representative below which a representative is little more typical than a random row of
# its small cluster: Fashion-MNIST gained at n / m = 600 and 200 and was level at 60.
AUTO_MIN_ROWS_PER_REPRESENTATIVE = 50
# Below this share the clusters describe hardly any structure (isotropic noise), so the most
# central row stands for nothing in particular.
AUTO_MIN_EXPLAINED_SHARE = 0.1
AUTO_RULE_FROZEN = "2026-12-02"

MODES = ("model-free", "loss-aware")
ENGINES = ("auto", "driver", "executors", "mllib")
ACCELERATORS = ("auto", "cpu", "cuda")
ASSIGN_READERS = ("auto", "spark", "pyarrow")
INIT_MODES = ("k-means||", "random")
ON_INVALID = ("fail", "skip")
REP_WEIGHTS = ("zero", "cluster")
DEFAULT_UNIFORM_SHARE = 0.1
KEEP_RULES = ("farthest", "nearest")
DEFAULT_BLOCK_ROWS = 2048
# Dedup splits a cluster above this many rows: at d = 384 a group's kept rows then take at most
# about 90 MiB (float64 and a float32 copy), and its comparisons about 8e12 multiply-adds.
DEFAULT_MAX_CLUSTER_ROWS = 20_000
INPUT_FORMATS = ("parquet", "json", "csv", "orc", "delta", "iceberg", "table")
OUTPUT_FORMATS = ("parquet", "delta", "iceberg", "json", "csv", "orc")

# Argument groups of the command line, in the order --help shows them.
INPUT = "input"
CLUSTERING = "clustering and sampling"
OUTPUT = "output"
LOSS_AWARE_GROUP = "loss-aware mode (the paper's two rounds)"
FORECAST = "forecast (manifest, report and summary)"
EMBEDDING = "embedding"
TARGET = "target-matched selection"
DEDUP = "semantic deduplication"

# refresh: the formats of the subset it extends, and when it advises a full re-fit.
SUBSET_FORMATS = ("parquet", "delta")
MAX_COST_DRIFT = 1.5
# evaluate: the schemes of a loss run, and the defaults that differ by mode (a label run fits
# k-means per seed and budget, a loss run once).
EVALUATE_SCHEMES = ("model-free", "loss-aware", "stratified", "uniform")
LOSS_SEEDS, LABEL_SEEDS, LOSS_K = 100, 10, 100
SAMPLING = "sampling"
EVALUATION = "evaluation"
