"""The choices and limits of the settings; the modules that implement them import them from here."""

# Spark hashes the seed as a signed 64-bit literal; numpy wants it non-negative.
MAX_SEED = 2**63 - 1
# Draw counts and indexes are 32-bit integers in the subset's schema.
MAX_SAMPLE_SIZE = 2**31 - 1

# Sampling strategies (spark_sensitivity.core.strategies implements them).
SENSITIVITY = "sensitivity"
REPRESENTATIVES = "representatives"
STRATIFIED = "stratified"
PROTOTYPES = "prototypes"
AUTO = "auto"
LOSS_AWARE = "loss-aware"
STRATEGIES = (SENSITIVITY, REPRESENTATIVES, STRATIFIED, PROTOTYPES, AUTO)
SELECT_STRATEGIES = (*STRATEGIES, LOSS_AWARE)
DEFAULT_K = 100
# auto: the k = m representatives up to this many draws (docs/RESULTS.md), stratified above.
AUTO_REPRESENTATIVES_MAX_M = 1000

MODES = ("model-free", "loss-aware")
ENGINES = ("auto", "driver", "executors", "mllib")
ACCELERATORS = ("auto", "cpu", "cuda")
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
DEDUP = "semantic deduplication"
