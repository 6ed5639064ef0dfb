"""The configs of the commands: every setting of one select run and of one dedup run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from spark_sensitivity.settings.choices import (
    AUTO,
    AUTO_REPRESENTATIVES_MAX_M,
    CLUSTERING,
    DEFAULT_K,
    DEFAULT_UNIFORM_SHARE,
    EMBEDDING,
    FORECAST,
    INPUT,
    INPUT_FORMATS,
    LOSS_AWARE_GROUP,
    MAX_SAMPLE_SIZE,
    MODES,
    OUTPUT,
    OUTPUT_FORMATS,
    REP_WEIGHTS,
    SELECT_STRATEGIES,
    SENSITIVITY,
    TARGET,
)
from spark_sensitivity.settings.declaration import Setting, restated, setting, settings_of
from spark_sensitivity.settings.shared import (
    ClusteringFields,
    DedupFields,
    InputFields,
    RunFields,
)


@dataclass(kw_only=True)
class SelectConfig(InputFields, ClusteringFields, RunFields, DedupFields):
    """Every setting of one selection run (``spark-sensitivity select``)."""

    catalog_options: dict[str, str] = setting(
        help="a property of the pyiceberg catalog for --format iceberg and --output-format iceberg, "
        "repeatable (e.g. uri=sqlite:////data/catalog.db, warehouse=file:///data/warehouse)",
        group=INPUT,
        kind=dict,
        flag="--catalog-option",
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


def setting_flags() -> dict[str, str]:
    """Each setting's command-line flag, by Param name and by field name (``fitFraction`` and
    ``fit_fraction`` -> ``--fit-fraction``): how the command line names the settings a library error
    names."""
    flags: dict[str, str] = {}
    for config in (SelectConfig, DedupConfig):
        for declared in settings_of(config).values():
            flags.setdefault(declared.name, declared.option)
            if declared.param:
                flags.setdefault(declared.param, declared.option)
    return flags
