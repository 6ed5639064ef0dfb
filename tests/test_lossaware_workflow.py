"""The loss-aware workflow through the CLI: what round 1 hands the user, and round 2's checks."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_sensitivity.cli import main
from spark_sensitivity.io.datasets import write_gaussian_mixture

K, M = 5, 60


@pytest.fixture(scope="module")
def round1(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("workflow")
    table = base / "mixture"
    write_gaussian_mixture(table, n=1500, dim=3, clusters=4, seed=4)
    common = [
        "select",
        "--input",
        str(table),
        "--k",
        str(K),
        "--sample-size",
        str(M),
        "--seed",
        "3",
        "--quiet",
    ]
    first = base / "round1"
    assert main([*common, "--mode", "loss-aware", "--output", str(first)]) == 0
    reps = pq.read_table(first / "representatives").to_pandas()
    # The user scores the representatives from their own columns: here a loss from the component.
    losses = pa.table({"id": reps.id.to_numpy(), "loss": 1.0 + reps.component.to_numpy() * 0.5})
    pq.write_table(losses, first / "losses.parquet")  # next to round 1's manifest: found there
    pq.write_table(losses, base / "losses.parquet")  # elsewhere: needs --round1 to be compared
    return base, common, first, reps


def test_representatives_carry_the_input_columns(round1):
    base, _, first, reps = round1
    assert list(reps.columns) == ["id", "cluster_id", "distance", "component", "embedding"]
    assert len(reps) == K and sorted(reps.cluster_id) == list(range(K))
    source = pq.read_table(base / "mixture").to_pandas().set_index("id")
    assert (source.component[reps.id].to_numpy() == reps.component.to_numpy()).all()
    np.testing.assert_allclose(np.stack(source.embedding[reps.id]), np.stack(reps.embedding))
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["round_settings"]["seed"] == 3 and manifest["round_settings"]["k"] == K


def test_a_wrong_loss_column_names_the_columns_and_the_flag(round1, capsys):
    base, common, first, _ = round1
    flags = ["--mode", "loss-aware", "--rep-losses", str(first / "losses.parquet"), "--rep-loss-col", "score"]
    assert main([*common, *flags, "--output", str(base / "x")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the representatives' loss table has no column 'score' (columns: id, loss); "
        "name it with --rep-loss-col"
    )
    assert not (base / "x").exists()


def test_changed_settings_are_named(round1, capsys):
    base, common, first, _ = round1
    next_to_round1 = ["--mode", "loss-aware", "--rep-losses", str(first / "losses.parquet")]
    changed = [*common[:-3], "--seed", "4", "--quiet", "--max-iter", "7"]
    assert main([*changed, *next_to_round1, "--output", str(base / "x")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: settings changed since loss-aware round 1 ({first}/manifest.json): ")
    assert "--seed 3 -> 4; --max-iter 20 -> 7;" in error and len(error.splitlines()) == 1

    elsewhere = ["--mode", "loss-aware", "--rep-losses", str(base / "losses.parquet"), "--round1", str(first)]
    more_clusters = [c if c != str(K) else str(K + 1) for c in common]
    assert main([*more_clusters, *elsewhere, "--output", str(base / "x")]) == 2
    assert f"--k {K} -> {K + 1}" in capsys.readouterr().err
    no_round1 = base / "not_a_round"
    no_round1.mkdir()
    assert main([*common, *elsewhere[:4], "--round1", str(no_round1), "--output", str(base / "x")]) == 2
    assert "has no manifest.json of a loss-aware round 1" in capsys.readouterr().err
    # An output inside an earlier round's folder would change that output: refused.
    assert main([*common, *elsewhere[:4], "--round1", str(first), "--output", str(first / "x")]) == 2
    assert "is inside the input" in capsys.readouterr().err


def test_changed_input_data_is_detected_by_the_representatives(round1, spark, capsys):
    base, common, first, _ = round1
    table = base / "changing"
    shutil.copytree(base / "mixture", table)
    flags = [*common[:1], "--input", str(table), *common[3:], "--mode", "loss-aware"]
    assert main([*flags, "--output", str(base / "changing-round1")]) == 0
    shutil.rmtree(table)
    write_gaussian_mixture(table, n=1500, dim=3, clusters=4, seed=9)
    losses = ["--rep-losses", str(base / "losses.parquet"), "--round1", str(base / "changing-round1")]
    assert main([*flags, *losses, "--output", str(base / "x")]) == 2
    error = capsys.readouterr().err.strip()
    assert "the representatives differ from round 1's" in error and "the input changed since round 1" in error


def test_round2_weights_forecast_and_representative_weights(round1, capsys):
    base, common, first, reps = round1
    flags = [*common, "--mode", "loss-aware", "--rep-losses", str(first / "losses.parquet")]
    pilot = base / "pilot.parquet"
    ids = np.random.default_rng(1).choice(1500, size=300, replace=False)
    pq.write_table(pa.table({"id": ids, "loss": 1.0 + (ids % 4) * 0.5}), pilot)
    assert main([*flags, "--pilot-losses", str(pilot), "--output", str(base / "zero")]) == 0
    assert main([*flags, "--rep-weights", "cluster", "--drop-vector", "--output", str(base / "cluster")]) == 0

    zero = pq.read_table(base / "zero" / "subset").to_pandas().set_index("id").sort_index()
    cluster = pq.read_table(base / "cluster" / "subset").to_pandas().set_index("id").sort_index()
    sizes = pq.read_table(base / "cluster" / "clusters").to_pandas().set_index("cluster_id")["size"]
    assert (zero.index == cluster.index).all() and zero["count"].sum() == M
    is_rep = zero.role == "representative"
    assert set(zero.index[is_rep]) == set(reps.id)
    assert (zero.weight[is_rep & (zero["count"] == 0)] == 0).all()
    extra = cluster.weight - zero.weight
    np.testing.assert_allclose(extra[is_rep], sizes[zero.cluster_id[is_rep]].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(extra[~is_rep], 0.0, atol=1e-12)
    assert "embedding" not in pq.read_table(base / "cluster" / "representatives").column_names

    with_pilot = json.loads((base / "zero" / "manifest.json").read_text())
    from_reps = json.loads((base / "cluster" / "manifest.json").read_text())
    assert (
        with_pilot["forecast"]["source"] == "pilot"
        and with_pilot["forecast"]["sensitivity_rule"] == "loss-aware"
    )
    assert from_reps["forecast"]["source"] == "representatives" and from_reps["forecast"]["basis_rows"] == K
    assert from_reps["loss_aware"]["rep_weights"] == "cluster"
    for scheme in ("sensitivity", "stratified", "uniform"):
        value = from_reps["forecast"][scheme]["relative_rmse"]
        assert value is not None and value > 0
