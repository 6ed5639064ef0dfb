"""Per-row randomness derived from a hash of (id, seed).

Every random choice the pipeline makes for a row (is it in the k-means fit sample, how many times is
it drawn, the order of its draws) is a pure function of the row's id, the run's seed and a stream
number. The result therefore does not depend on how the input is partitioned, on task retries, or on
whether the job runs in local mode or on a cluster.

The row hash is Spark's ``xxhash64(id, seed)`` (computed in the JVM, stable across machines); this
module turns it into independent uniforms with the splitmix64 finaliser.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

# The registry of streams: every use of per-row randomness has its own number, so the same row gets
# unrelated uniforms for each purpose. The numbers of streams that decide a subset are part of what a
# seed means: changing one changes the subsets of earlier seeds.
STREAM_FIT_SAMPLE = 1  # which rows the k-means fit sees
STREAM_DRAW_COUNT = 2  # a row's Poisson number of candidate draws
STREAM_DRAW_ORDER = 3  # the keys that pick m of the candidates
STREAM_BASELINE = 4  # the baselines' uniform and stratified subsets (core.sampling.uniform)
STREAM_STRATIFIED = 5  # the stratified strategy's subsets and the prototypes' tie-breaks
STREAM_REPORT_SAMPLE = 6  # the points the report plots
STREAM_DEDUP_SPLIT = 7  # the rows a giant cluster's second-level k-means is fitted on (core.dedup.search)
STREAM_EMBED_FIT = 11  # the rows an embedder is fitted on (embedders.stage)
STREAM_EVAL_TEST = 12  # the held-out rows of evaluate --label-col (the same for every seed)
# A retry of the draws uses fresh streams: the draw streams plus attempt * DRAW_RETRY_STRIDE.
DRAW_RETRY_STRIDE = 1 << 8
STREAMS = {
    "fit_sample": STREAM_FIT_SAMPLE,
    "draw_count": STREAM_DRAW_COUNT,
    "draw_order": STREAM_DRAW_ORDER,
    "baseline": STREAM_BASELINE,
    "stratified": STREAM_STRATIFIED,
    "report_sample": STREAM_REPORT_SAMPLE,
    "dedup_split": STREAM_DEDUP_SPLIT,
    "embed_fit": STREAM_EMBED_FIT,
    "eval_test": STREAM_EVAL_TEST,
}

_MASK53 = (1 << 53) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def row_hash(id_col: str, seed: int) -> Column:
    """The 64-bit hash of a row's id under ``seed`` (a JVM expression, partition-invariant)."""
    return F.xxhash64(F.col(id_col), F.lit(int(seed)))


def draw_streams(attempt: int) -> tuple[int, int]:
    """The (count, order) streams of a draw attempt: attempt 0 uses the registered ones."""
    shift = attempt * DRAW_RETRY_STRIDE
    return STREAM_DRAW_COUNT + shift, STREAM_DRAW_ORDER + shift


def jvm_uniform(id_col: str, seed: int, stream: int) -> Column:
    """A uniform in [0, 1) per row, computed in the JVM so Spark can filter on it without Python."""
    hashed = F.xxhash64(F.col(id_col), F.lit(int(seed)), F.lit(int(stream)))
    return (hashed.bitwiseAND(F.lit(_MASK53)).cast("double")) / float(1 << 53)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def uniforms(row_hashes: np.ndarray, stream: int, counter: np.ndarray | int = 0) -> np.ndarray:
    """Uniforms in the open interval (0, 1), one per (row hash, stream, counter)."""
    h = np.asarray(row_hashes).astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        key = np.uint64(stream) * _MIX1 + np.asarray(counter, dtype=np.uint64)
    bits = _splitmix64(h ^ _splitmix64(key))
    # 52 bits: (2^52 - 1 + 0.5) / 2^52 = 1 - 2^-53 is a double; with 53 bits the top value rounds to 1.0.
    return ((bits >> np.uint64(12)).astype(np.float64) + 0.5) / float(1 << 52)


# Above this rate inversion needs many steps and exp(-rate) underflows; such rows are rare (at most
# m / rate of them), so each gets its own counter-based generator keyed by its hash.
_INVERSION_MAX_RATE = 30.0
# Inversion stops here: at rate 30, P(X > 120) is about 1e-35, yet a uniform just below 1 can stay
# above a float64 cdf that stalls short of 1. Rows still undecided take the generator path too.
INVERSION_MAX_COUNT = 120


def poisson(rates: np.ndarray, row_hashes: np.ndarray, stream: int) -> np.ndarray:
    """Poisson(rate) counts, one per row, each a pure function of (row hash, stream, rate)."""
    rates = np.asarray(rates, dtype=np.float64)
    u = uniforms(row_hashes, stream)
    counts = np.zeros(rates.shape, dtype=np.int64)
    pmf = np.exp(-np.minimum(rates, _INVERSION_MAX_RATE))
    cdf = pmf.copy()
    small = rates <= _INVERSION_MAX_RATE
    # Inversion: the count is the first k with u <= P(X <= k); the loop touches undecided rows only.
    undecided = np.flatnonzero(small & (u > cdf))
    k = 0
    while undecided.size and k < INVERSION_MAX_COUNT:
        k += 1
        pmf[undecided] *= rates[undecided] / k
        cdf[undecided] += pmf[undecided]
        counts[undecided] = k
        undecided = undecided[u[undecided] > cdf[undecided]]
    generated = ~small
    generated[undecided] = True
    hashes = np.asarray(row_hashes).astype(np.int64).view(np.uint64)
    for i in np.flatnonzero(generated):
        key = int(_splitmix64(np.array([hashes[i] ^ np.uint64(stream)], dtype=np.uint64))[0])
        counts[i] = np.random.Generator(np.random.Philox(key=key)).poisson(rates[i])
    return counts
