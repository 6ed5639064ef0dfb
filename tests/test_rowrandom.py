import numpy as np

from spark_sensitivity.core.sampling import rowrandom, sample


def test_uniforms_are_open_interval_and_stream_independent():
    hashes = np.random.default_rng(1).integers(-(2**63), 2**63 - 1, size=100_000)
    a = rowrandom.uniforms(hashes, stream=1)
    b = rowrandom.uniforms(hashes, stream=2)
    assert a.min() > 0.0 and a.max() < 1.0
    assert abs(a.mean() - 0.5) < 0.005
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
    np.testing.assert_array_equal(a, rowrandom.uniforms(hashes, stream=1))


def test_poisson_matches_mean_and_variance_on_both_paths():
    hashes = np.random.default_rng(2).integers(-(2**63), 2**63 - 1, size=50_000)
    for rate in (0.02, 1.5, 12.0, 80.0):  # 80 takes the per-row generator path
        counts = rowrandom.poisson(np.full(hashes.size, rate), hashes, stream=5)
        stderr = np.sqrt(rate / hashes.size)
        assert abs(counts.mean() - rate) < 5 * stderr, rate
        assert abs(counts.var() / rate - 1) < 0.05, rate


def test_poisson_count_depends_only_on_the_row():
    hashes = np.arange(1000, dtype=np.int64) * 7919
    rates = np.linspace(0.1, 40, 1000)
    whole = rowrandom.poisson(rates, hashes, stream=3)
    halves = np.concatenate(
        [rowrandom.poisson(rates[:500], hashes[:500], 3), rowrandom.poisson(rates[500:], hashes[500:], 3)]
    )
    np.testing.assert_array_equal(whole, halves)


def test_every_stream_has_its_own_number_and_retries_never_reach_another():
    numbers = list(rowrandom.STREAMS.values())
    assert len(set(numbers)) == len(numbers), rowrandom.STREAMS
    registered = {name: value for name, value in vars(rowrandom).items() if name.startswith("STREAM_")}
    assert sorted(registered.values()) == sorted(numbers), "a STREAM_ constant is missing from STREAMS"
    retries = {s for attempt in range(1, sample.MAX_ATTEMPTS) for s in rowrandom.draw_streams(attempt)}
    assert rowrandom.draw_streams(0) == (rowrandom.STREAM_DRAW_COUNT, rowrandom.STREAM_DRAW_ORDER)
    assert not retries & set(numbers)
    assert len(retries) == 2 * (sample.MAX_ATTEMPTS - 1)
