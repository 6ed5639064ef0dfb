"""--strategy auto: its frozen rule, the forecast of deterministic subsets, and a run that says what
it chose (manifest, summary, report, dry run)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import main
from spark_sensitivity.cli.app import build_parsers
from spark_sensitivity.core.forecasting import forecast
from spark_sensitivity.core.sampling import strategies
from spark_sensitivity.core.sampling.score import ClusterStats
from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.settings import choices


def _stats(k: int, rows_each: int = 30) -> ClusterStats:
    return ClusterStats(np.full(k, rows_each, dtype=np.int64), np.ones(k))


def test_the_rule_keeps_representatives_for_large_structured_clusters_only():
    # Fashion-MNIST-like: n = 60,000 with m = 100, 300 and 1,000 keeps representatives with k = m.
    for m in (100, 300, 1000):
        choice = strategies.choose_auto(None, m, m, 60_000, _stats(m), 0.9)
        assert (choice.strategy, choice.k) == ("representatives", m)
        assert choice.reason.startswith(f"auto chose representatives with k = {m} because m = {m} <= 1000")
    small = strategies.choose_auto(None, 100, 100, 4_000, _stats(100), 0.9)  # n / m = 40
    assert (small.strategy, small.k) == ("stratified", 100) and "n / m = 40.0 < 50" in small.reason
    noise = strategies.choose_auto(None, 100, 100, 60_000, _stats(100), 0.05)
    assert noise.strategy == "stratified" and "explain 5.0% < 10%" in noise.reason
    above = strategies.choose_auto(None, choices.DEFAULT_K, 3000, 60_000, _stats(100), 0.9)
    assert (above.strategy, above.k) == (
        "stratified",
        choices.DEFAULT_K,
    ) and "m = 3000 > 1000" in above.reason
    given = strategies.choose_auto(50, 50, 300, 60_000, _stats(50), 0.9)
    assert (given.strategy, given.k) == ("stratified", 50) and "k = 50 was given" in given.reason
    # k given above m: stratified cannot give every non-empty cluster a row, sensitivity can draw.
    wide = strategies.choose_auto(500, 500, 300, 60_000, _stats(500), 0.9)
    assert wide.strategy == "sensitivity" and "below the 500 non-empty clusters" in wide.reason
    tiny = strategies.choose_auto(None, choices.DEFAULT_K, 300, 200, _stats(100, 2), 0.9)
    assert tiny.strategy == "sensitivity" and "m exceeds the 200 valid rows" in tiny.reason


def test_the_plan_fits_k_equal_m_only_where_representatives_can_be_chosen():
    assert strategies.plan_auto(None, 40, None) == ("representatives", 40)  # rows unknown: the budget's plan
    assert strategies.plan_auto(None, 40, 2000) == ("representatives", 40)  # 50 rows per representative
    assert strategies.plan_auto(None, 40, 1999) == ("stratified", choices.DEFAULT_K)
    assert strategies.plan_auto(40, 40, 1999) == ("stratified", 40)  # the user's k = m stays
    assert strategies.plan_auto(None, 2000, 10**9) == ("stratified", choices.DEFAULT_K)


def test_with_forecasts_the_lowest_wins_and_unforecastable_ones_are_named():
    forecasts = {"sensitivity": 0.05, "stratified": 0.03, "representatives": 0.2}
    choice = strategies.choose_auto(None, 100, 100, 60_000, _stats(100), 0.9, forecasts)
    assert choice.strategy == "stratified" and "stratified 3.00 %" in choice.reason
    forecasts = {"sensitivity": 0.05, "stratified": None, "representatives": 0.01}
    choice = strategies.choose_auto(None, 100, 100, 60_000, _stats(100), 0.9, forecasts)
    assert choice.strategy == "representatives" and "stratified cannot be forecast" in choice.reason
    none = strategies.choose_auto(None, 100, 100, 60_000, _stats(100), 0.9, dict.fromkeys(forecasts))
    assert none.strategy == "sensitivity"


def test_explained_share_separates_clusters_from_isotropic_noise():
    rng = np.random.default_rng(0)
    blobs = rng.normal(scale=10.0, size=(20, 8))
    labels = rng.integers(0, 20, size=4000)
    points = blobs[labels] + rng.normal(size=(4000, 8))
    centers = np.array([points[labels == j].mean(axis=0) for j in range(20)])
    within = float(((points - centers[labels]) ** 2).sum())
    assert strategies.explained_share(centers, np.bincount(labels), within) > 0.95
    noise = rng.normal(size=(4000, 384))
    seeds = noise[:20]
    nearest = np.argmin(((noise[:, None, :] - seeds[None]) ** 2).sum(axis=2), axis=1)
    centers = np.array([noise[nearest == j].mean(axis=0) for j in range(20)])
    within = float(((noise - centers[nearest]) ** 2).sum())
    assert (
        strategies.explained_share(centers, np.bincount(nearest), within) < choices.AUTO_MIN_EXPLAINED_SHARE
    )


@pytest.fixture(scope="module")
def central():
    """Clusters whose loss grows with the distance to the center: the nearest rows are biased low."""
    rng = np.random.default_rng(3)
    k, n = 40, 20_000
    cluster = rng.integers(0, k, size=n)
    cost = rng.exponential(size=n) * rng.uniform(0.5, 2.0, size=k)[cluster]
    loss = 1.0 + 0.5 * cost + rng.uniform(0.0, 2.0, size=k)[cluster] + 0.3 * rng.normal(size=n)
    sizes = np.bincount(cluster, minlength=k)
    nearest = np.array([np.flatnonzero(cluster == j)[np.argmin(cost[cluster == j])] for j in range(k)])
    true_error = float((sizes * loss[nearest]).sum() / loss.sum() - 1.0)
    fixed = forecast.FixedSubset(
        "representatives", float((sizes * cost[nearest]).sum()), float((sizes**2).sum()), float(cost.sum())
    )
    s = cost / cost.sum() + 1.0 / sizes[cluster]
    return cluster, loss, cost, sizes, s / s.sum(), fixed, true_error


def test_representatives_bias_is_forecast_from_a_pilot(central):
    cluster, loss, cost, sizes, q, fixed, true_error = central
    pilot = np.random.default_rng(1).choice(len(loss), size=600, replace=False)
    result = forecast.from_pilot(
        sizes, cluster[pilot], loss[pilot], q[pilot], 40, seed=2, costs=cost[pilot], fixed=fixed
    )
    reps = result.get("representatives")
    assert true_error < -0.2  # the central rows' loss is well below their clusters' mean
    # The subset's error is the modelled bias plus the representatives' own noise, whose standard
    # deviation is the rest of the forecast RMSE: the bias must be within 3 of them of the truth.
    noise = np.sqrt(reps.relative_rmse**2 - reps.relative_bias**2)
    assert 0 < noise < 0.1 * abs(reps.relative_bias)
    assert abs(reps.relative_bias - true_error) < 3 * noise
    assert reps.low <= reps.relative_rmse <= reps.high
    facts = result.as_dict()
    assert facts["strategy"] == facts["scheme"] == "representatives"
    assert forecast.describe(facts)[-1].startswith("representatives (written): ")


def test_a_pilot_without_rows_sharing_a_cluster_says_the_bias_cannot_be_estimated(central):
    cluster, loss, cost, sizes, q, fixed, _ = central
    one_each = np.array([np.flatnonzero(cluster == j)[0] for j in range(40)])
    result = forecast.from_pilot(
        sizes, cluster[one_each], loss[one_each], q[one_each], 40, rounds=5, costs=cost[one_each], fixed=fixed
    )
    entry = result.as_dict()["representatives"]
    assert entry["relative_rmse"] is None and entry["note"].startswith("cannot be estimated")
    assert "cannot be estimated" in forecast.describe(result.as_dict())[-1]


def test_select_defaults_to_auto_and_help_says_which_strategy_serves_which_goal():
    parser = build_parsers()[1]["select"]
    assert parser.parse_args(["--input", "i", "--output", "o", "--sample-size", "5"]).strategy == "auto"
    assert SensitivitySampler().getStrategy() == "sensitivity"  # the pyspark.ml face is unchanged
    text = " ".join(parser.format_help().split())
    assert "to train or fine-tune a model on the subset, keep the default --strategy auto" in text
    assert "To estimate a mean or a sum over the table" in text
    assert "or with MLlib" not in text and "draw exactly --sample-size rows with replacement" not in text


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("auto") / "mixture"
    write_gaussian_mixture(path, n=1500, dim=4, clusters=5, seed=2)
    return path


def _dry_run(table, capsys, *flags):
    assert main(["select", "--input", str(table), "--output", "unused", "--dry-run", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_dry_run_describes_the_plan_auto_will_run(spark, table, capsys):
    plan = _dry_run(table, capsys, "--sample-size", "20")
    assert plan["strategy_requested"] == "auto" and plan["strategy"] == "representatives" and plan["k"] == 20
    assert plan["auto_plan"].startswith("auto will fit k = m = 20 clusters and choose representatives")
    assert "the row nearest each of the 20 centers" in plan["stages"][3]
    assert plan["suggested"]["k"] == 20
    plan = _dry_run(table, capsys, "--sample-size", "100")  # n / m = 15: k-means fits the default k
    assert plan["strategy"] == "stratified" and plan["k"] == 100
    assert plan["auto_plan"].startswith("auto will choose stratified with k = 100 because n = 1500 < 50 x m")
    assert "stratified, m_j of the 100 rows per cluster" in plan["stages"][3]
    plan = _dry_run(table, capsys, "--sample-size", "100", "--strategy", "sensitivity", "--k", "5")
    assert plan["auto_plan"] is None and "Poisson candidates" in plan["stages"][3]


def test_auto_with_a_pilot_writes_and_forecasts_the_strategy_it_chose(spark, table, tmp_path, capsys):
    ids = np.random.default_rng(0).choice(1500, size=300, replace=False)
    pilot = tmp_path / "pilot.parquet"
    pq.write_table(pa.table({"id": ids, "loss": 1.0 + (ids % 7) * 0.5}), pilot)
    out = tmp_path / "out"
    flags = ["--sample-size", "20", "--seed", "3", "--pilot-losses", str(pilot), "--report"]
    assert main(["select", "--input", str(table), "--output", str(out), *flags]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    used, facts = manifest["strategy_used"], manifest["forecast"]
    assert manifest["strategy_requested"] == "auto" and manifest["k_used"] == manifest["k"] == 20
    assert manifest["auto_reason"].startswith(
        f"auto chose {used} with k = 20 because, with the pilot's losses"
    )
    assert facts["strategy"] == used and facts["scheme"] == used
    candidates = [
        facts[s]["relative_rmse"] for s in ("sensitivity", "stratified", "representatives") if s in facts
    ]
    assert facts[used]["relative_rmse"] == pytest.approx(
        min(v for v in candidates if v is not None), rel=1e-9
    )
    assert "representatives" in manifest["auto_reason"]  # the k = m plan made them a candidate
    printed = capsys.readouterr().out
    assert printed.startswith(f"strategy: {used}, k = 20 (auto chose {used}")
    assert f"{used} (written): " in printed
    page = (out / "report" / "index.html").read_text()
    assert f"{used}, k = 20 (auto chose {used} with k = 20" in page
    assert f"The subset written is {used}" in page


def test_mode_loss_aware_needs_no_strategy_flag(spark, table, tmp_path):
    out = tmp_path / "round1"
    flags = ["--sample-size", "30", "--k", "5", "--mode", "loss-aware", "--quiet"]
    assert main(["select", "--input", str(table), "--output", str(out), *flags]) == 0
    assert len(pq.read_table(out / "representatives")) == 5
