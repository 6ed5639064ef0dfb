"""Every setting of a run, declared once.

A setting is a field of a config dataclass (:class:`SelectConfig`, :class:`DedupConfig`) whose
metadata holds its help text, its check and, where the pyspark.ml face has one, its Param name. The
command line flags (``--sample-size``), the config-file keys (``sample-size`` or ``sample_size``),
the manifest's ``parameters`` and the Params' defaults and checks are all derived from these fields,
so a new setting is added here and nowhere else. The choices of the settings live here too, and the
modules that implement them import them from here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

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
ENGINES = ("auto", "driver", "mllib")
INIT_MODES = ("k-means||", "random")
ON_INVALID = ("fail", "skip")
REP_WEIGHTS = ("zero", "cluster")
DEFAULT_UNIFORM_SHARE = 0.1
KEEP_RULES = ("farthest", "nearest")
DEFAULT_BLOCK_ROWS = 2048
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


@dataclass(frozen=True)
class Setting:
    """One setting: its field name, default, help and check, and how the CLI and Params name it."""

    name: str
    default: Any
    help: str
    group: str
    kind: type = str  # int, float, str, bool (a switch) or dict (repeatable KEY=VALUE)
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    above: bool = False  # low itself is excluded
    flag: str | None = None  # the flag when it is not --name-with-dashes
    inverted: bool = False  # a switch that sets the setting to False (--skip-id-check)
    param: str | None = None  # the Param of the pyspark.ml face
    required: bool = False
    metavar: str | None = None
    argname: str | None = None  # the argparse name (and config-file key) when not the flag's

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """The argparse attribute the flag fills."""
        return self.argname or self.option.lstrip("-").replace("-", "_")

    def problem(self, value: Any, shown: str | None = None) -> str | None:
        """What is wrong with ``value`` ('must be at least 1, got 0'), or None; ``shown`` is how the
        user wrote the value."""
        if value is None or self.kind in (bool, dict, str) and self.choices is None:
            return None
        if self.choices is not None:
            if value not in self.choices:
                return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.kind is int and value != int(value):
            return f"must be an integer, got {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {shown or value!r}"
        if self.low is not None and (value < self.low or (self.above and value == self.low)):
            return f"must be {'above' if self.above else 'at least'} {self.low}, got {shown or value}"
        if self.high is not None and value > self.high:
            return f"must be at most {self.high}, got {shown or value}"
        return None

    def check(self, value: Any, label: str | None = None) -> Any:
        """``value`` when it is allowed; else ValueError naming the setting (``label`` or its flag)."""
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(f"{label or self.option} {problem}")
        return value

    def parse(self, text: str) -> Any:
        """The value of a command-line or config-file string; ValueError with a short reason."""
        try:
            value = self.kind(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            raise ValueError(f"expected {what}, got {text!r}") from None
        problem = None if self.choices is not None else self.problem(value, text)
        if problem is not None:
            raise ValueError(problem)
        return value


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    group: str,
    kind: type = str,
    **declared: Any,
) -> Any:
    """A config field declaring its setting (the arguments of :class:`Setting` but its name)."""
    required = default is dataclasses.MISSING
    info = {"help": help, "group": group, "kind": kind, "required": required, **declared}
    if kind is dict:
        return field(default_factory=dict, metadata=info)
    return field(default=None if required else default, metadata=info)


def settings_of(config: type | Any) -> dict[str, Setting]:
    """The declared settings of a config class (or instance), by field name, in declaration order."""
    return {
        f.name: Setting(name=f.name, default={} if f.metadata["kind"] is dict else f.default, **f.metadata)
        for f in dataclasses.fields(config)
    }


def check_settings(config: Any) -> None:
    """ValueError naming the first setting of ``config`` whose value is not allowed."""
    for name, declared in settings_of(config).items():
        value = getattr(config, name)
        if declared.required and value is None:
            raise ValueError(f"{declared.option} is required")
        declared.check(value)


def _seed(help: str) -> Any:
    return setting(0, help, group=CLUSTERING, kind=int, low=0, high=MAX_SEED, param="seed")


@dataclass(kw_only=True)
class InputSettings:
    """Where the rows come from and which columns matter."""

    input: str = setting(help="input path, or a catalog table name with --format table", group=INPUT)
    format: str = setting(
        "parquet", "input format (json means JSON lines)", group=INPUT, choices=INPUT_FORMATS
    )
    input_options: dict[str, str] = setting(
        help="a reader option, repeatable (e.g. sep=;, versionAsOf=N for Delta, snapshot-id=N or "
        "as-of-timestamp=MS for Iceberg)",
        group=INPUT,
        kind=dict,
        flag="--input-option",
    )
    id_col: str = setting("id", "unique, non-null row id column", group=INPUT, param="idCol")
    vector_col: str = setting(
        "embedding",
        "embedding column: array<float>, array<double>, an ML Vector, or text like [0.1, 0.2]",
        group=INPUT,
        param="featuresCol",
    )
    on_invalid: str = setting(
        "fail",
        "rows with a null, wrong-length or non-finite embedding: fail the run or skip them; the "
        "manifest counts skipped rows",
        group=INPUT,
        choices=ON_INVALID,
        param="onInvalid",
    )
    check_unique_ids: bool = setting(
        True,
        "do not check that ids are unique before sampling (saves a shuffle of the ids at very large n; "
        "a duplicated id that gets drawn still fails the run)",
        group=INPUT,
        kind=bool,
        flag="--skip-id-check",
        inverted=True,
        param="checkUniqueIds",
    )


@dataclass(kw_only=True)
class ClusteringSettings:
    """The k-means fit: on a sample of the rows, on the driver or with MLlib."""

    k: int | None = setting(
        DEFAULT_K,
        "number of k-means clusters",
        group=CLUSTERING,
        kind=int,
        low=1,
        param="k",
    )
    seed: int = _seed("seed of the fit sample, k-means init and tie-breaks")
    max_iter: int = setting(
        20, "k-means iterations at most", group=CLUSTERING, kind=int, low=1, param="maxIter"
    )
    tol: float = setting(1e-4, "k-means convergence tolerance", group=CLUSTERING, kind=float, low=0, param="tol")
    init_mode: str = setting(
        "k-means||",
        "k-means initialisation (random is cheaper at large k)",
        group=CLUSTERING,
        choices=INIT_MODES,
        param="initMode",
    )
    init_steps: int = setting(2, "k-means|| steps", group=CLUSTERING, kind=int, low=1, param="initSteps")
    fit_fraction: float | None = setting(
        None,
        "fit k-means on this fraction of the rows, in (0, 1]; overrides --points-per-center",
        group=CLUSTERING,
        kind=float,
        low=0,
        high=1,
        above=True,
        param="fitFraction",
    )
    points_per_center: int = setting(
        256,
        "fit k-means on about this many rows per center, then assign all rows; 0 = fit on all rows",
        group=CLUSTERING,
        kind=int,
        low=0,
        param="pointsPerCenter",
    )
    fit_engine: str = setting(
        "auto",
        "where k-means fits its sample: driver = collected and fitted in numpy (fast while the sample "
        "is small), mllib = MLlib's distributed KMeans, auto = the driver while the sample fits "
        "--driver-fit-max-mb and a quarter of the driver's heap",
        group=CLUSTERING,
        choices=ENGINES,
        param="fitEngine",
    )
    driver_fit_max_mb: int = setting(
        512,
        "largest fit sample, in MiB of float32, that --fit-engine auto fits on the driver",
        group=CLUSTERING,
        kind=int,
        low=0,
        param="driverFitMaxMB",
    )


@dataclass(kw_only=True)
class DedupSettings:
    """Near-duplicates inside each k-means cluster (SemDeDup)."""

    dedup_eps: float | None = setting(
        None,
        "rows of one k-means cluster whose cosine similarity is at least 1 - E are near-duplicates; one "
        "of each group is kept; select then draws from the kept rows",
        group=DEDUP,
        kind=float,
        low=0,
        high=1,
        above=True,
        metavar="E",
    )
    dedup_keep: str = setting(
        "farthest",
        "which row of a group is kept: rows are taken farthest from the cluster center first "
        "(SemDeDup's default) or nearest first, and a row is removed when it is that similar to an "
        "earlier kept row",
        group=DEDUP,
        choices=KEEP_RULES,
    )
    dedup_neighbors: int = setting(
        1,
        "2: also compare every kept row with the kept rows of its second-nearest cluster, which finds "
        "most duplicates split across two clusters, for about twice the comparisons",
        group=DEDUP,
        kind=int,
        choices=(1, 2),
    )
    dedup_block_rows: int = setting(
        DEFAULT_BLOCK_ROWS,
        "rows compared at once; bounds a task's similarity matrix",
        group=DEDUP,
        kind=int,
        low=1,
    )


@dataclass(kw_only=True)
class RunSettings:
    """The output folder and the run's identity."""

    output: str = setting(
        help="output folder: its parts appear together or not at all; {run_id} and {date} in it are "
        "replaced by the run id and the UTC date",
        group=OUTPUT,
    )
    run_id: str | None = setting(
        None, "run id recorded in the manifest and used for {run_id} (default: a new one)", group=OUTPUT
    )
    overwrite: bool = setting(
        False,
        "replace an existing output (the old one stays until the new one is complete)",
        group=OUTPUT,
        kind=bool,
    )
    config_file: str | None = setting(
        None,
        "YAML or JSON file of settings, keys named like the flags; flags on the command line override it",
        group=OUTPUT,
        flag="--config",
    )


@dataclass(kw_only=True)
class SelectConfig(InputSettings, ClusteringSettings, RunSettings, DedupSettings):
    """Every setting of one selection run (``spark-sensitivity select``)."""

    catalog_options: dict[str, str] = setting(
        help="a property of the pyiceberg catalog for --format iceberg and --output-format iceberg, "
        "repeatable (e.g. uri=sqlite:////data/catalog.db, warehouse=file:///data/warehouse)",
        group=INPUT,
        kind=dict,
        flag="--catalog-option",
    )
    sample_size: int = setting(
        help="m, the exact number of draws, with replacement; a row drawn c times appears once with "
        "count c",
        group=CLUSTERING,
        kind=int,
        low=1,
        high=MAX_SAMPLE_SIZE,
    )
    k: int | None = setting(
        None,
        f"number of k-means clusters (default: {DEFAULT_K}; the sample size for --strategy "
        "representatives; chosen by --strategy auto)",
        group=CLUSTERING,
        kind=int,
        low=1,
        param="k",
    )
    strategy: str = setting(
        SENSITIVITY,
        "how rows are picked from the clusters: sensitivity (the paper's i.i.d. draws, unbiased), "
        "representatives (the row nearest each center, k = sample size), stratified (a uniform subset "
        "of each cluster, allocated by size), prototypes (per cluster the rows nearest the center, or "
        "the farthest when the sample is at least half the table), loss-aware (the same as --mode "
        f"loss-aware), auto (representatives up to {AUTO_REPRESENTATIVES_MAX_M} rows, stratified "
        "above); see docs/METHOD.md",
        group=CLUSTERING,
        choices=SELECT_STRATEGIES,
        param="strategy",
    )
    seed: int = _seed(
        "seed of the fit sample, k-means init and the draws; the same input and seed give the same "
        "subset, however the input is partitioned"
    )
    z: int = setting(
        2,
        "cost power: 2 = k-means cost ||x-c||^2, 1 = k-median cost ||x-c||",
        group=CLUSTERING,
        kind=int,
        choices=(1, 2),
        param="costPower",
    )
    drop_vector: bool = setting(False, "leave the embedding column out of subset/", group=OUTPUT, kind=bool)
    output_format: str = setting(
        "parquet",
        "format of subset/: parquet, delta (one commit), iceberg (subset/ in Parquet, and one commit "
        "each to the Iceberg tables --output-table and its _clusters), json, csv (embeddings as JSON "
        "text) or orc",
        group=OUTPUT,
        choices=OUTPUT_FORMATS,
    )
    output_table: str | None = setting(
        None,
        "also register subset/ in the catalog under this name, after publishing (an external table "
        "over the published files; an existing table is replaced only with --overwrite); with "
        "--output-format iceberg, the Iceberg table namespace.table",
        group=OUTPUT,
    )
    report: bool = setting(
        False,
        "also write report/index.html with PNG figures: cluster sizes and shares, sensitivity and "
        "weight distributions, a 2-D projection, the k-means cost (needs the 'report' extra)",
        group=OUTPUT,
        kind=bool,
    )
    loss_col: str | None = setting(
        None,
        "with --report: a numeric per-row loss column; the report compares its true mean (one more "
        "pass) with the subset's weighted estimates",
        group=OUTPUT,
    )
    mode: str = setting(
        "model-free",
        "model-free: s_i = v_i / Phi + 1 / n_j. loss-aware: first run writes representatives/ (the row "
        "nearest each center); give the model's loss on them with --rep-losses in a second run with "
        "the same settings to draw with s_i = loss(r_a(i)) + lambda * ||x_i - r_a(i)||^z; subset/ then "
        "holds the representatives and the m draws (column role)",
        group=LOSS_AWARE_GROUP,
        choices=MODES,
    )
    rep_losses: str | None = setting(
        None,
        "loss-aware: table of id and loss covering every row of representatives/",
        group=LOSS_AWARE_GROUP,
    )
    rep_losses_format: str = setting(
        "parquet", "format of --rep-losses", group=LOSS_AWARE_GROUP, choices=INPUT_FORMATS
    )
    rep_loss_col: str = setting("loss", "loss column of --rep-losses", group=LOSS_AWARE_GROUP)
    loss_lambda: float | None = setting(
        None,
        "loss-aware: weight of the distance term (default: balanced, lambda = sum of proxy losses / "
        "sum of distances, so each term carries half of the mass)",
        group=LOSS_AWARE_GROUP,
        kind=float,
        low=0,
        flag="--lambda",
        argname="loss_lambda",
    )
    uniform_share: float = setting(
        DEFAULT_UNIFORM_SHARE,
        "loss-aware: share of the mass spread uniformly over the rows, so every row can be drawn and "
        "weights stay bounded (0 = the paper's rule)",
        group=LOSS_AWARE_GROUP,
        kind=float,
        low=0,
        high=1,
    )
    round1: str | None = setting(
        None,
        "loss-aware round 2: round 1's output folder; its manifest's settings must match this run's "
        "(default: a round-1 manifest.json in the folder holding --rep-losses, when there is one)",
        group=LOSS_AWARE_GROUP,
    )
    rep_weights: str = setting(
        "zero",
        "loss-aware round 2: weight of a representative that was not drawn: zero (the weighted sums "
        "stay unbiased) or cluster (its cluster's size, for training; biased estimates)",
        group=LOSS_AWARE_GROUP,
        choices=REP_WEIGHTS,
    )
    pilot_losses: str | None = setting(
        None,
        "table of id and loss for a uniform random pilot of rows you scored: forecast the RMSE of the "
        "mean loss estimate of sensitivity, stratified and uniform sampling at --sample-size "
        "(loss-aware round 2 forecasts from the representatives' losses without it)",
        group=FORECAST,
    )
    pilot_losses_format: str = setting(
        "parquet", "format of --pilot-losses", group=FORECAST, choices=INPUT_FORMATS
    )
    pilot_loss_col: str = setting("loss", "loss column of --pilot-losses", group=FORECAST)
    embedder: str | None = setting(
        None,
        "embed the rows first: sentence-transformers, hashing, image-pca, efficientnet-lite0, "
        "precomputed, or a class of your own as package.module:ClassName",
        group=EMBEDDING,
    )
    text_col: str | None = setting(None, "text column to embed (string)", group=EMBEDDING)
    image_col: str | None = setting(
        None,
        "image column to embed: raw or encoded image bytes, a struct with a 'bytes' field, or pixel arrays",
        group=EMBEDDING,
    )
    embed_batch_size: int = setting(
        64, "rows per embedder call, e.g. per model forward pass", group=EMBEDDING, kind=int, low=1
    )
    embed_options: dict[str, str] = setting(
        help="an embedder option, repeatable (e.g. model=PATH, dim=128, normalize=false)",
        group=EMBEDDING,
        kind=dict,
        flag="--embed-option",
    )


@dataclass(kw_only=True)
class DedupConfig(InputSettings, ClusteringSettings, RunSettings, DedupSettings):
    """Every setting of one dedup run (``spark-sensitivity dedup``)."""

    dedup_eps: float = setting(
        help="rows of one k-means cluster whose cosine similarity is at least 1 - E are near-duplicates; "
        "one of each group is kept",
        group=DEDUP,
        kind=float,
        low=0,
        high=1,
        above=True,
        metavar="E",
    )


def param_settings() -> dict[str, Setting]:
    """The settings the pyspark.ml face has Params for, by Param name: the shared input and k-means
    settings (k defaults to 100 there), then the selection's own (z, strategy)."""
    found: dict[str, Setting] = {}
    for config in (InputSettings, ClusteringSettings, SelectConfig):
        for declared in settings_of(config).values():
            if declared.param and declared.param not in found:
                found[declared.param] = declared
    return found
