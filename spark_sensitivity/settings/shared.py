"""The settings several commands share: input, k-means fit, deduplication, embedding, output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spark_sensitivity.settings.choices import (
    ACCELERATORS,
    CLUSTERING,
    DEDUP,
    DEFAULT_BLOCK_ROWS,
    DEFAULT_K,
    DEFAULT_MAX_CLUSTER_ROWS,
    EMBEDDING,
    ENGINES,
    INIT_MODES,
    INPUT,
    INPUT_FORMATS,
    KEEP_RULES,
    MAX_SEED,
    ON_INVALID,
    OUTPUT,
)
from spark_sensitivity.settings.declaration import setting


@dataclass(kw_only=True)
class InputFields:
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
class ClusteringFields:
    """The k-means fit: on a sample of the rows, on the driver or with MLlib."""

    k: int | None = setting(
        DEFAULT_K,
        "number of k-means clusters",
        group=CLUSTERING,
        kind=int,
        low=1,
        param="k",
    )
    seed: int = setting(
        0,
        "seed of the fit sample, k-means init and tie-breaks",
        group=CLUSTERING,
        kind=int,
        low=0,
        high=MAX_SEED,
        param="seed",
    )
    max_iter: int = setting(
        20, "k-means iterations at most", group=CLUSTERING, kind=int, low=1, param="maxIter"
    )
    tol: float = setting(
        1e-4, "k-means convergence tolerance", group=CLUSTERING, kind=float, low=0, param="tol"
    )
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
        "is small), executors = seeded on the driver from a bounded subsample, then Lloyd iterations "
        "on the executors with the project's kernel, mllib = MLlib's distributed KMeans, auto = the "
        "driver while the sample fits --driver-fit-max-mb and a quarter of the driver's heap, "
        "executors beyond",
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
    accelerator: str = setting(
        "auto",
        "where the nearest-center products run (the driver's k-means fit and each assignment task): "
        "cuda = a GPU through torch, cpu = numpy, auto = a GPU wherever torch is installed and sees "
        "one; either gives the same assignment",
        group=CLUSTERING,
        choices=ACCELERATORS,
        param="accelerator",
    )


@dataclass(kw_only=True)
class DedupFields:
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
        below=True,
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
        "rows compared at once; bounds a task's similarity matrix and candidate pairs",
        group=DEDUP,
        kind=int,
        low=1,
    )
    dedup_max_cluster_rows: int = setting(
        DEFAULT_MAX_CLUSTER_ROWS,
        "a cluster with more rows is split by a second k-means (on the executors) into groups of about "
        "half as many before rows are compared, so a task's memory (its group's kept rows) and time "
        "stay bounded; near-duplicates that land in two groups are missed unless --dedup-neighbors 2",
        group=DEDUP,
        kind=int,
        low=2,
        metavar="ROWS",
    )


@dataclass(kw_only=True)
class RunFields:
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
class EmbeddingFields:
    """The embedder of raw rows (text, images) and its settings."""

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

    @property
    def embedding(self) -> dict[str, Any]:
        """The keyword arguments of ``embed_frame`` that choose and configure the embedder."""
        return {
            "embedder": self.embedder,
            "text_col": self.text_col,
            "image_col": self.image_col,
            "batch_size": self.embed_batch_size,
            "options": dict(self.embed_options),
        }
