"""The forecast: its formulas against brute-force simulation, and the select job's forecast section."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_sensitivity.cli import main
from spark_sensitivity.core.forecasting import forecast
from spark_sensitivity.core.sampling.uniform import allocate
from spark_sensitivity.io.datasets import write_gaussian_mixture

N, DIM, K, M, DRAWS = 6000, 4, 12, 300, 2000


@pytest.fixture(scope="module")
def synthetic():
    """Blobs, a loss that is a smooth function of the embedding plus noise, and the model-free q."""
    rng = np.random.default_rng(5)
    means = rng.normal(scale=4.0, size=(K, DIM))
    cluster = rng.integers(0, K, size=N)
    points = means[cluster] + rng.normal(size=(N, DIM)) * rng.uniform(0.5, 1.5, size=K)[cluster, None]
    loss = np.log1p(np.exp(0.5 * points @ rng.normal(size=DIM))) + 0.5 * rng.exponential(size=N)
    centers = np.array([points[cluster == j].mean(axis=0) for j in range(K)])
    cost = ((points - centers[cluster]) ** 2).sum(axis=1)
    sizes = np.bincount(cluster, minlength=K)
    s = cost / cost.sum() + 1.0 / sizes[cluster]
    return points, cluster, loss, cost, sizes, s / s.sum()


def _realised(loss: np.ndarray, estimates: np.ndarray) -> float:
    return float(np.sqrt(np.mean((estimates / loss.mean() - 1.0) ** 2)))


def _simulate(synthetic, seed: int = 0) -> dict[str, float]:
    """Realised relative RMSE of each scheme over DRAWS seeded draws, as the library draws them."""
    _, cluster, loss, _, sizes, q = synthetic
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(M, q, size=DRAWS)
    sensitivity = (counts * (loss / (M * q))).sum(axis=1) / N
    members = [np.flatnonzero(cluster == j) for j in range(K)]
    quotas = allocate(sizes, M)
    stratified = np.zeros(DRAWS)
    for j, rows in enumerate(members):
        keys = rng.random((DRAWS, len(rows)))
        picked = np.argpartition(keys, quotas[j] - 1, axis=1)[:, : quotas[j]]
        stratified += loss[rows][picked].sum(axis=1) * sizes[j] / quotas[j]
    stratified /= N
    picked = np.argpartition(rng.random((DRAWS, N)), M - 1, axis=1)[:, :M]
    uniform = loss[picked].mean(axis=1)
    return {
        "sensitivity": _realised(loss, sensitivity),
        "stratified": _realised(loss, stratified),
        "uniform": _realised(loss, uniform),
    }


@pytest.fixture(scope="module")
def realised(synthetic):
    return _simulate(synthetic)


def test_exact_formulas_match_brute_force_simulation(synthetic, realised):
    _, cluster, loss, _, sizes, q = synthetic
    within = np.array([loss[cluster == j].var(ddof=1) for j in range(K)])
    exact = {
        "sensitivity": forecast.sensitivity_relative_rmse(float((loss**2 / q).sum()), float(loss.sum()), M),
        "stratified": forecast.stratified_relative_rmse(sizes, within, M, float(loss.mean())),
        "uniform": forecast.uniform_relative_rmse(float(loss.var(ddof=1)), N, M, float(loss.mean())),
    }
    # 2,000 draws estimate an RMSE to about 2-3 % (one standard error); 7 % is a loose bound.
    for scheme, value in exact.items():
        assert value == pytest.approx(realised[scheme], rel=0.07), scheme
    assert exact["stratified"] < 0.5 * exact["uniform"]  # the clusters explain the loss here


def test_pilot_forecast_is_within_15_percent_of_the_realised_rmse(synthetic, realised):
    _, cluster, loss, _, sizes, q = synthetic
    pilot = np.random.default_rng(11).choice(N, size=600, replace=False)
    result = forecast.from_pilot(sizes, cluster[pilot], loss[pilot], q[pilot], M, seed=1)
    assert result.source == "pilot" and result.basis == 600 and result.m == M and result.n == N
    for scheme in forecast.SCHEMES:
        predicted = result.get(scheme)
        assert predicted.relative_rmse == pytest.approx(realised[scheme], rel=0.15), scheme
        assert predicted.low <= predicted.relative_rmse <= predicted.high
        assert predicted.low <= realised[scheme] <= predicted.high, scheme


def test_representatives_forecast_brackets_the_realised_rmse_on_a_smooth_loss(synthetic, realised):
    points, cluster, loss, cost, sizes, q = synthetic
    reps = np.array([np.flatnonzero(cluster == j)[np.argmin(cost[cluster == j])] for j in range(K)])
    spread = np.bincount(cluster, weights=cost, minlength=K) / sizes
    inverse_q = np.bincount(cluster, weights=1.0 / q, minlength=K)
    result = forecast.from_representatives(sizes, loss[reps], points[reps], spread, inverse_q, M, seed=2)
    assert result.source == "representatives" and result.basis == K
    # A model fitted to k = 12 losses: the realised RMSE lies in the 95 % interval, and the point
    # forecast within 15 % for sensitivity and uniform, 40 % for stratified (docs/FORECAST.md).
    for scheme, tolerance in (("sensitivity", 0.15), ("uniform", 0.15), ("stratified", 0.4)):
        predicted = result.get(scheme)
        assert predicted.relative_rmse == pytest.approx(realised[scheme], rel=tolerance), scheme
        assert predicted.low <= realised[scheme] <= predicted.high, scheme


def test_semivariogram_fit_recovers_a_linear_model_and_clips_negative_terms():
    h = np.linspace(0.0, 10.0, 50)
    assert forecast.fit_semivariogram(h, 0.3 + 2.0 * h) == pytest.approx((0.3, 2.0))
    assert forecast.fit_semivariogram(h, 5.0 - 0.1 * h) == pytest.approx((float((5.0 - 0.1 * h).mean()), 0.0))
    c0, c1 = forecast.fit_semivariogram(h, -1.0 + 2.0 * h)
    assert c0 == 0.0 and c1 > 0


def test_neighbour_pairs_link_each_point_to_its_nearest_others():
    points = np.array([[0.0], [1.0], [10.0], [11.5]])
    pairs = forecast.neighbour_pairs(points, neighbours=1)
    assert pairs.tolist() == [[0, 1], [2, 3]]
    assert len(forecast.neighbour_pairs(points[:1])) == 0


def test_stratified_is_none_below_one_draw_per_cluster_and_describe_says_so(synthetic):
    _, cluster, loss, _, sizes, q = synthetic
    result = forecast.from_pilot(sizes, cluster[:200], loss[:200], q[:200], K - 1, rounds=20)
    facts = result.as_dict()
    assert facts["stratified"] == {"relative_rmse": None, "interval_95": [None, None]}
    lines = forecast.describe(facts)
    assert lines[1] == "stratified: n/a (m is below the number of clusters)"
    assert lines[0].startswith("sensitivity: ") and lines[0].endswith(" %)")
    with pytest.raises(ValueError, match="at least 2 rows"):
        forecast.from_pilot(sizes, cluster[:1], loss[:1], q[:1], M)


def test_select_job_writes_the_pilot_forecast(spark, tmp_path, capsys):
    table = tmp_path / "mixture"
    write_gaussian_mixture(table, n=2000, dim=4, clusters=5, seed=2)
    ids = np.random.default_rng(0).choice(2000, size=200, replace=False)
    pilot = tmp_path / "pilot.parquet"
    pq.write_table(pa.table({"id": ids, "score": 1.0 + (ids % 7) * 0.5}), pilot)
    common = ["select", "--input", str(table), "--k", "6", "--sample-size", "100", "--seed", "3"]
    common += ["--strategy", "sensitivity"]
    out = tmp_path / "out"
    flags = ["--pilot-losses", str(pilot), "--pilot-loss-col", "score", "--report"]
    assert main([*common, *flags, "--output", str(out)]) == 0
    facts = json.loads((out / "manifest.json").read_text())["forecast"]
    assert facts["source"] == "pilot" and facts["basis_rows"] == 200 and facts["m"] == 100
    assert facts["sensitivity_rule"] == "model-free"
    for scheme in forecast.SCHEMES:
        low, high = facts[scheme]["interval_95"]
        assert 0 < low <= facts[scheme]["relative_rmse"] <= high
    page = (out / "report" / "index.html").read_text()
    assert "Forecast: error of the mean loss estimate" in page
    shown = forecast.describe(facts)[0].partition(": ")[2]
    assert f'<td id="forecast-sensitivity">{shown}</td>' in page
    printed = capsys.readouterr().out
    assert "forecast RMSE of the mean loss estimate at m = 100" in printed and "uniform: " in printed
    # The loss does not depend on the embedding: stratifying cannot help much (no better than 0.8x).
    assert facts["stratified"]["relative_rmse"] > 0.8 * facts["uniform"]["relative_rmse"]

    code = main([*common, "--pilot-losses", str(pilot), "--output", str(tmp_path / "bad"), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and not (tmp_path / "bad").exists()
    assert error == (
        "error: the pilot loss table has no column 'loss' (columns: id, score); name it with --pilot-loss-col"
    )
    unknown = tmp_path / "unknown.parquet"
    pq.write_table(pa.table({"id": [1, 99999], "loss": [1.0, 2.0]}), unknown)
    assert main([*common, "--pilot-losses", str(unknown), "--output", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "1 of the 2 pilot ids are not rows of the input" in capsys.readouterr().err
