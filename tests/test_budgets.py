"""Several sample sizes from one fit: --sample-size 100,400 writes one subset table with a
sample_size column, each size checked and named in the manifest, the summary and the dry run."""

import json

import pyarrow.parquet as pq
import pytest

from spark_sensitivity.cli import main
from spark_sensitivity.cli.app import build_parsers
from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.settings import SelectConfig, settings_of


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("budgets") / "mixture"
    write_gaussian_mixture(path, n=3000, dim=8, clusters=6, seed=4)
    return path


def _parse(*flags: str):
    select = build_parsers()[1]["select"]
    return select.parse_args(["--input", "in", "--output", "out", *flags])


def test_sample_size_takes_a_comma_separated_list_sorted_and_checked():
    assert _parse("--sample-size", "400,100, 1600").sample_size == (100, 400, 1600)
    assert _parse("--sample-size", "40").sample_size == 40
    assert SelectConfig(input="a", output="b", sample_size=(10, 20)).budgets() == (10, 20)
    declared = settings_of(SelectConfig)["sample_size"]
    for text, problem in (("100,100", "lists a value twice"), ("100,0", "at least 1"), ("100,x", "integer")):
        with pytest.raises(ValueError, match=problem):
            declared.parse(text)
    with pytest.raises(ValueError, match="at most 10000000"):
        declared.check((5, 10**8))
    with pytest.raises(ValueError, match="takes at most 20 values"):
        declared.parse(",".join(str(m) for m in range(1, 22)))
    with pytest.raises(ValueError, match="takes 1 to 20 values, got 21"):
        declared.check(tuple(range(1, 22)))


def test_a_config_file_may_list_the_sizes(table, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"input: {table}\noutput: unused\nsample-size: [200, 50]\nk: 10\n")
    assert main(["select", "--config", str(config), "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["m"] == [50, 200] and plan["k"] == 10
    assert [stage.split(":")[0] for stage in plan["stages"]].count("sample") == 2


def test_representatives_and_loss_aware_refuse_several_sizes(table, tmp_path, capsys):
    base = ["select", "--input", str(table), "--sample-size", "20,40"]
    out = tmp_path / "refused"
    assert main([*base, "--output", str(out), "--strategy", "representatives"]) == 2
    assert "would need a fit each" in capsys.readouterr().err
    assert main([*base, "--output", str(out), "--mode", "loss-aware"]) == 2
    assert "--mode loss-aware takes one --sample-size" in capsys.readouterr().err
    assert not out.exists()


def test_several_sizes_share_one_fit_and_each_part_is_exact(spark, table, tmp_path, capsys):
    out = tmp_path / "budgets"
    flags = ["--sample-size", "30,120,480", "--k", "30", "--strategy", "stratified", "--seed", "3"]
    assert main(["select", "--input", str(table), "--output", str(out), *flags]) == 0
    summary = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["m"] == [30, 120, 480] and manifest["k"] == 30
    parts = manifest["subsets"]
    assert [part["sample_size"] for part in parts] == [30, 120, 480]
    subset = pq.read_table(out / "subset").to_pandas()
    for part in parts:
        rows = subset[subset["sample_size"] == part["sample_size"]]
        assert part["strategy_used"] == "stratified" and part["k_used"] == 30
        assert len(rows) == part["subset_rows"] == part["sample_size"]  # stratified: distinct rows
        assert rows["id"].is_unique
        # Every size's weights sum to n: each part stands for the whole table on its own.
        assert rows["weight"].sum() == pytest.approx(manifest["n_valid"], rel=1e-9)
        assert part["sum_of_weights"] == pytest.approx(manifest["n_valid"], rel=1e-9)
        assert f"sample size {part['sample_size']}: strategy: stratified, k = 30" in summary
    assert manifest["subset_rows"] == len(subset) == 630

    # The same fit and seed as a run of one size: the same rows for that size.
    single = tmp_path / "single"
    one = ["--sample-size", "120", "--k", "30", "--strategy", "stratified", "--seed", "3"]
    assert main(["select", "--input", str(table), "--output", str(single), *one]) == 0
    alone = pq.read_table(single / "subset").to_pandas()
    shared = subset[subset["sample_size"] == 120]
    assert sorted(alone["id"]) == sorted(shared["id"])
    assert "sample_size" not in alone.columns


def test_auto_draws_representatives_at_the_smallest_size_and_says_why_for_the_others(
    spark, table, tmp_path, capsys
):
    out = tmp_path / "auto"
    flags = ["--sample-size", "20,60", "--seed", "1", "--report"]
    assert main(["select", "--input", str(table), "--output", str(out), *flags]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    small, large = manifest["subsets"]
    assert manifest["k"] == 20 and small["k_used"] == large["k_used"] == 20
    assert small["strategy_used"] == "representatives"
    assert large["strategy_used"] == "stratified"
    assert "one fit, shared by all its sample sizes, has k = 20" in large["auto_reason"]
    subset = pq.read_table(out / "subset").to_pandas()
    assert (subset["sample_size"] == 20).sum() == 20 and (subset["sample_size"] == 60).sum() == 60
    page = (out / "report" / "index.html").read_text()
    assert "for sample size 60, the largest of this run&#x27;s (20, 60)" in page or (
        "for sample size 60, the largest of this run's (20, 60)" in page
    )


def test_refresh_refuses_a_subset_of_several_sizes(spark, table, tmp_path, capsys):
    out = tmp_path / "several"
    flags = ["--sample-size", "30,60", "--k", "10", "--strategy", "sensitivity"]
    assert main(["select", "--input", str(table), "--output", str(out), *flags]) == 0
    capsys.readouterr()
    refreshed = tmp_path / "refreshed"
    command = ["refresh", "--model", str(out / "model"), "--previous-subset", str(out / "subset")]
    assert main([*command, "--new-input", str(table), "--output", str(refreshed)]) == 2
    assert "holds several sample sizes" in capsys.readouterr().err
    assert not refreshed.exists()


def test_an_input_column_named_sample_size_is_refused_with_several_sizes(spark, table, tmp_path, capsys):
    clashing = tmp_path / "clashing"
    spark.read.parquet(str(table)).selectExpr("*", "1 AS sample_size").write.parquet(str(clashing))
    out = tmp_path / "clash"
    flags = ["--sample-size", "30,60", "--k", "10"]
    assert main(["select", "--input", str(clashing), "--output", str(out), *flags]) == 2
    assert "has a column 'sample_size'" in capsys.readouterr().err
    assert not out.exists()
