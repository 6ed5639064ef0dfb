"""The configs of the commands: every setting of one select run and of one dedup run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spark_sensitivity.settings.choices import (
    ASSIGN_READERS,
    AUTO,
    AUTO_REPRESENTATIVES_MAX_M,
    CLUSTERING,
    DEFAULT_K,
    DEFAULT_UNIFORM_SHARE,
    EVALUATE_SCHEMES,
    EVALUATION,
    FORECAST,
    INPUT,
    INPUT_FORMATS,
    LABEL_SEEDS,
    LOSS_AWARE,
    LOSS_AWARE_GROUP,
    LOSS_K,
    LOSS_SEEDS,
    MAX_COST_DRIFT,
    MAX_SAMPLE_SIZE,
    MAX_SEED,
    MODES,
    OUTPUT,
    OUTPUT_FORMATS,
    REP_WEIGHTS,
    SAMPLING,
    SELECT_STRATEGIES,
    SENSITIVITY,
    SUBSET_FORMATS,
    TARGET,
)
from spark_sensitivity.settings.declaration import Setting, restated, setting, settings_of
from spark_sensitivity.settings.shared import (
    ClusteringFields,
    DedupFields,
    EmbeddingFields,
    InputFields,
    RunFields,
)


@dataclass(kw_only=True)
class SelectConfig(InputFields, ClusteringFields, RunFields, DedupFields, EmbeddingFields):
    """Every setting of one selection run (``spark-sensitivity select``)."""

    catalog_options: dict[str, str] = setting(
        help="a property of the pyiceberg catalog for --format iceberg and --output-format iceberg, "
        "repeatable (e.g. uri=sqlite:////data/catalog.db, warehouse=file:///data/warehouse)",
        group=INPUT,
        kind=dict,
        flag="--catalog-option",
    )
    assign_reader: str = setting(
        "auto",
        "how the pass that assigns every row reads the embeddings: pyarrow = each task reads its "
        "share of the Parquet files itself, so the embeddings never pass through the JVM; spark = "
        "Spark's scan; auto = pyarrow when the input is a plain read of Parquet files on the local "
        "file system (no filter, no computed column, no whitening), spark otherwise; either gives "
        "the same assignment",
        group=CLUSTERING,
        choices=ASSIGN_READERS,
        param="assignReader",
    )
    sample_size: int | tuple[int, ...] = setting(
        help="m, the number of rows to pick: exact draws with replacement for sensitivity (a row drawn "
        "c times appears once with count c), distinct rows for the other strategies. Several sizes, "
        "comma-separated (100,400,1600), are drawn from one k-means fit into one subset/ table with a "
        "sample_size column (not with representatives or --mode loss-aware)",
        group=CLUSTERING,
        kind=int,
        low=1,
        high=MAX_SAMPLE_SIZE,
        several=True,
        metavar="M[,M...]",
    )
    k: int | None = restated(
        ClusteringFields,
        "k",
        None,
        f"number of k-means clusters (default: {DEFAULT_K}; the sample size for --strategy "
        "representatives; chosen by --strategy auto)",
    )
    strategy: str = setting(
        AUTO,
        "how rows are picked from the clusters. To train a model: auto (default; representatives, the "
        f"row nearest each center with k = sample size, up to {AUTO_REPRESENTATIVES_MAX_M} rows when "
        "each stands for a large, structured cluster, else stratified; with --pilot-losses the strategy "
        "with the lowest forecast error; the run says what it chose and why). To estimate a mean or a "
        "sum: sensitivity (the paper's i.i.d. draws with replacement, unbiased) or stratified (a "
        "uniform subset of each cluster without replacement, allocated by size, unbiased). Also "
        "representatives, prototypes (per cluster the rows nearest the center, or the farthest when "
        "the sample is at least half the table) and loss-aware (the same as --mode loss-aware); see "
        "docs/METHOD.md",
        group=CLUSTERING,
        choices=SELECT_STRATEGIES,
        param="strategy",
    )
    seed: int = restated(
        ClusteringFields,
        "seed",
        0,
        "seed of the fit sample, k-means init and the draws; the same input and seed give the same "
        "subset, however the input is partitioned",
    )
    z: int = setting(
        2,
        "cost power: 2 = k-means cost ||x-c||^2, 1 = k-median cost ||x-c||",
        group=CLUSTERING,
        kind=int,
        choices=(1, 2),
        param="costPower",
    )
    whiten: bool = setting(
        False,
        "multiply the embeddings by (G/n)^-1/2, G their uncentred Gram matrix over n rows (one more "
        "pass), before k-means and scoring, so distances are the ones least squares sees: for selecting "
        "rows [A b] (with an intercept column) for a least-squares fit; subset/ keeps the original "
        "embeddings; not with --mode loss-aware",
        group=CLUSTERING,
        kind=bool,
        param="whiten",
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
    report_col: str | None = setting(
        None,
        "with --report: a column shown beside each cluster's example rows (a text, a label, a file "
        "name; default: --text-col when the run embeds text)",
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
        metavar="LAMBDA",
    )
    uniform_share: float = setting(
        DEFAULT_UNIFORM_SHARE,
        "loss-aware: share of the mass spread uniformly over the rows, so every row can be drawn and "
        "weights stay bounded (0 = the paper's rule; below 1)",
        group=LOSS_AWARE_GROUP,
        kind=float,
        low=0,
        high=1,
        below=True,
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
        "(loss-aware round 2 forecasts from the representatives' losses without it); a few hundred "
        "rows give the point forecast, 2,000 or more keep the 95 % interval honest for a heavy-tailed "
        "loss (docs/FORECAST.md)",
        group=FORECAST,
    )
    pilot_losses_format: str = setting(
        "parquet", "format of --pilot-losses", group=FORECAST, choices=INPUT_FORMATS
    )
    pilot_loss_col: str = setting("loss", "loss column of --pilot-losses", group=FORECAST)
    target: str | None = setting(
        None,
        "rows of what the subset should look like (a few hundred to a few thousand: your domain, "
        "your product's traffic): they are assigned to the clusters fitted on --input, the draws "
        "follow their cluster shares (uniform within each cluster; by sensitivity with --strategy "
        "sensitivity) and sum(weight * f) / sum(weight) estimates their mean of f; with --embedder "
        "they are embedded as the input is",
        group=TARGET,
    )
    target_format: str = setting("parquet", "format of --target", group=TARGET, choices=INPUT_FORMATS)
    target_options: dict[str, str] = setting(
        help="a reader option for --target, repeatable", group=TARGET, kind=dict, flag="--target-option"
    )
    target_vector_col: str | None = setting(
        None, "embedding column of --target (default: --vector-col)", group=TARGET
    )

    def budgets(self) -> tuple[int, ...]:
        """The sample sizes of the run, ascending (one unless --sample-size lists several)."""
        size = self.sample_size
        return tuple(size) if isinstance(size, (tuple, list)) else (size,)


@dataclass(kw_only=True)
class DedupConfig(InputFields, ClusteringFields, RunFields, DedupFields):
    """Every setting of one dedup run (``spark-sensitivity dedup``)."""

    dedup_eps: float = restated(
        DedupFields,
        "dedup_eps",
        dataclasses.MISSING,
        "rows of one k-means cluster whose cosine similarity is at least 1 - E are near-duplicates; "
        "one of each group is kept",
    )


def param_settings() -> dict[str, Setting]:
    """The settings the pyspark.ml face has Params for, by Param name: the shared input and k-means
    settings (k defaults to 100 there), then the selection's own (z, strategy)."""
    found: dict[str, Setting] = {}
    for config in (InputFields, ClusteringFields, SelectConfig):
        for declared in settings_of(config).values():
            if declared.param and declared.param not in found:
                found[declared.param] = declared
    # The select command defaults to auto; the pyspark.ml face keeps the paper's i.i.d. draws.
    found["strategy"] = dataclasses.replace(found["strategy"], default=SENSITIVITY)
    return found


@dataclass(kw_only=True)
class EmbedConfig(EmbeddingFields):
    """Every setting of one embed run (``spark-sensitivity embed``)."""

    input: str = restated(
        InputFields, "input", dataclasses.MISSING, "input path, or a catalog table name with --format table"
    )
    format: str = restated(InputFields, "format", "parquet", "input format")
    input_options: dict[str, str] = restated(InputFields, "input_options", help="a reader option, repeatable")
    id_col: str = restated(InputFields, "id_col", "id", "unique, non-null row id column")
    embedder: str = restated(
        EmbeddingFields,
        "embedder",
        dataclasses.MISSING,
        "sentence-transformers, hashing, image-pca, efficientnet-lite0, precomputed, or a class of your "
        "own as package.module:ClassName",
    )
    output: str = restated(
        RunFields,
        "output",
        dataclasses.MISSING,
        "output folder: a Parquet table of id + embedding, complete or absent",
    )
    vector_col: str = restated(
        InputFields, "vector_col", "embedding", "name of the embedding column written", OUTPUT
    )
    keep_cols: list[str] = setting(
        help="an input column to copy into the output (e.g. a label), repeatable",
        group=OUTPUT,
        kind=list,
        flag="--keep-col",
        metavar="COLUMN",
    )
    on_invalid: str = restated(
        InputFields,
        "on_invalid",
        "fail",
        "rows that cannot be embedded (null or blank text, undecodable or wrongly sized images): fail the "
        "run or leave them out; the manifest counts them by reason",
        OUTPUT,
    )
    overwrite: bool = restated(RunFields, "overwrite", False, "replace an existing output")


@dataclass(kw_only=True)
class RefreshConfig:
    """Every setting of one refresh run (``spark-sensitivity refresh``): a saved model, the previous
    subset, and the newly appended rows only."""

    model: str = setting(help="model/ folder of the previous select or refresh output", group=INPUT)
    new_input: str = setting(
        help="the appended rows only: a path, or a catalog table name with --format table", group=INPUT
    )
    format: str = restated(InputFields, "format", "parquet", "format of --new-input")
    input_options: dict[str, str] = restated(
        InputFields,
        "input_options",
        help="a reader option for --new-input, repeatable (versionAsOf=N for a Delta table)",
    )
    previous_subset: str = setting(
        help="subset/ of the previous select or refresh output, or the subset's Delta table", group=INPUT
    )
    subset_format: str = setting(
        "parquet",
        "format of OUTPUT/subset, the previous and the new draws: parquet or delta (a new table in one "
        "commit); the previous output is never modified",
        group=INPUT,
        choices=SUBSET_FORMATS,
    )
    skip_earlier_id_check: bool = setting(
        False,
        "do not check the new ids against the inputs earlier runs read (recorded in the manifest next "
        "to --model); the check reads only their id column",
        group=INPUT,
        kind=bool,
    )
    skip_unreadable_earlier_inputs: bool = setting(
        False,
        "refresh even when an earlier run's input cannot be read (moved, deleted, recorded as a "
        "relative path by an earlier version): its ids go unchecked, so new rows it already holds "
        "would be counted twice; the manifest lists it under earlier_inputs_unchecked",
        group=INPUT,
        kind=bool,
    )
    sample_size: int | None = setting(
        None,
        "draws from the new rows (default: the previous draws times the new rows' share of the "
        f"sensitivity mass, as one sample of the whole table would place them); at most "
        f"{MAX_SAMPLE_SIZE:,}, as the draw holds about that many candidates in one task's memory",
        group=SAMPLING,
        kind=int,
        low=1,
        high=MAX_SAMPLE_SIZE,
    )
    seed: int = restated(ClusteringFields, "seed", 0, "seed of the new draws", SAMPLING)
    on_invalid: str | None = restated(
        InputFields,
        "on_invalid",
        None,
        "new rows with a null, wrong-length, NaN or infinite embedding: fail (naming the count and "
        "example ids) or skip them, left out of the new stratum (default: the select run's setting)",
        SAMPLING,
    )
    max_cost_drift: float = setting(
        MAX_COST_DRIFT,
        "advise a full re-fit when the new rows' mean cost under the saved centers exceeds the old "
        "rows' by this factor",
        group=SAMPLING,
        kind=float,
        low=0,
        above=True,
    )
    output: str = restated(
        RunFields,
        "output",
        dataclasses.MISSING,
        "output folder: model/, subset/ and manifest.json appear together or not at all",
    )
    overwrite: bool = restated(RunFields, "overwrite", False, "replace an existing output")
    config_file: str | None = restated(
        RunFields,
        "config_file",
        None,
        "YAML or JSON file of settings, keys named like the flags; flags on the command line override it",
    )


@dataclass(kw_only=True)
class EvaluateConfig:
    """Every setting of one evaluation (``spark-sensitivity evaluate``): how well each scheme
    estimates the mean of a per-row loss, or (``label_col``) whether a classifier trained on the
    strategy's subset beats one trained on a uniform subset of the same size. ``seeds``, ``k`` and
    ``schemes`` left unset take their mode's default (:meth:`resolved`)."""

    input: str = restated(
        InputFields, "input", dataclasses.MISSING, "table with an id, an embedding and a loss for every row"
    )
    format: str = restated(InputFields, "format", "parquet", "input format")
    id_col: str = restated(InputFields, "id_col", "id", "unique row id column")
    vector_col: str = restated(InputFields, "vector_col", "embedding", "embedding column")
    loss_col: str = setting("loss", "per-row loss column", group=INPUT)
    label_col: str | None = setting(
        None,
        "class label column (integers or strings): instead of loss estimation, train a logistic "
        "regression on each --strategy subset and on uniform subsets of the same size and compare "
        "their accuracy on held-out rows",
        group=INPUT,
    )
    test_share: float = setting(
        0.2,
        "with --label-col: share of rows held out for testing, chosen by a hash of the id, the same for "
        "every seed",
        group=EVALUATION,
        kind=float,
        low=0,
        high=1,
        above=True,
        below=True,
    )
    strategy: str = setting(
        AUTO,
        "with --label-col: the select strategy to evaluate",
        group=EVALUATION,
        choices=tuple(s for s in SELECT_STRATEGIES if s != LOSS_AWARE),
    )
    schemes: list[str] = setting(
        help="selection scheme to evaluate, repeatable (default: model-free and loss-aware)",
        group=EVALUATION,
        kind=list,
        choices=EVALUATE_SCHEMES,
        flag="--scheme",
    )
    sample_sizes: tuple[int, ...] = setting(
        (100, 1000),
        "comma-separated m values",
        group=EVALUATION,
        kind=int,
        low=1,
        high=MAX_SAMPLE_SIZE,
        several=True,
        metavar="M[,M...]",
    )
    seeds: int | None = setting(
        None,
        f"repetitions per sample size (default: {LOSS_SEEDS}; {LABEL_SEEDS} with --label-col)",
        group=EVALUATION,
        kind=int,
        low=1,
    )
    first_seed: int = setting(
        0, "seeds are first-seed, first-seed+1, ...", group=EVALUATION, kind=int, low=0, high=MAX_SEED - 10**6
    )
    k: int | None = restated(
        ClusteringFields,
        "k",
        None,
        f"k-means clusters (default: {LOSS_K}; with --label-col, as select chooses for --strategy)",
        EVALUATION,
    )
    z: int = restated(SelectConfig, "z", 2, "cost power", EVALUATION)
    lam: float | None = restated(
        SelectConfig,
        "loss_lambda",
        None,
        "loss-aware: weight of the distance term (default: balanced, both terms carry half the mass)",
        EVALUATION,
    )
    uniform_share: float = restated(
        SelectConfig,
        "uniform_share",
        DEFAULT_UNIFORM_SHARE,
        "loss-aware: share of the sampling mass spread uniformly (0 = the paper's rule)",
        EVALUATION,
    )
    max_iter: int = restated(ClusteringFields, "max_iter", 20, "k-means iterations at most", EVALUATION)
    points_per_center: int = restated(
        ClusteringFields, "points_per_center", 256, "k-means fit rows per center", EVALUATION
    )
    output: str | None = restated(
        RunFields, "output", None, "folder for evaluation.json (written atomically)"
    )
    overwrite: bool = restated(RunFields, "overwrite", False, "replace an existing output")

    def resolved(self) -> EvaluateConfig:
        """The config with each unset setting at its mode's default, the sample sizes a tuple."""
        labels = self.label_col is not None
        sizes = self.sample_sizes
        return dataclasses.replace(
            self,
            seeds=self.seeds or (LABEL_SEEDS if labels else LOSS_SEEDS),
            k=self.k if self.k is not None or labels else LOSS_K,
            schemes=list(self.schemes) or ["model-free", "loss-aware"],
            sample_sizes=tuple(sizes) if isinstance(sizes, (tuple, list)) else (sizes,),
        )


def setting_flags() -> dict[str, str]:
    """Each setting's command-line flag, by Param name and by field name (``fitFraction`` and
    ``fit_fraction`` -> ``--fit-fraction``): how the command line names the settings a library error
    names."""
    flags: dict[str, str] = {}
    for config in (SelectConfig, DedupConfig, EmbedConfig, RefreshConfig, EvaluateConfig):
        for declared in settings_of(config).values():
            flags.setdefault(declared.name, declared.option)
            if declared.param:
                flags.setdefault(declared.param, declared.option)
    return flags
