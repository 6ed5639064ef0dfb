"""Every kind of bad input gets a one-line error naming the problem, and nothing is written."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_sensitivity.cli import main


def _table(path, ids, vectors, **extra):
    columns = {"id": pa.array(ids, pa.int64()), "embedding": pa.array(vectors, pa.list_(pa.float32()))}
    columns.update(extra)
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path / "part-0.parquet")
    return path


def _good_vectors(n, dim=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).tolist()


def _select(tmp_path, table, *extra):
    out = tmp_path / "out"
    args = [
        "select",
        "--input",
        str(table),
        "--k",
        "3",
        "--sample-size",
        "20",
        "--output",
        str(out),
        "--quiet",
    ]
    return main([*args, *extra]), out


def _error_line(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len([line for line in lines if line.startswith("error:")]) == 1
    return next(line for line in lines if line.startswith("error:"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--id-col", "key"], "error: input has no column 'key'"),
        (["--vector-col", "vec"], "error: input has no column 'vec'"),
        (["--k", "500"], "error: k=500 is larger than the 120 valid rows in the k-means fit sample"),
    ],
)
def test_bad_settings(spark, tmp_path, capsys, extra, message):
    table = _table(tmp_path / "in", list(range(120)), _good_vectors(120))
    code, out = _select(tmp_path, table, *extra)
    assert code == 2
    assert _error_line(capsys).startswith(message)
    assert not out.exists()


def test_k_larger_than_distinct_points(spark, tmp_path, capsys):
    table = _table(tmp_path / "in", list(range(60)), [[float(i % 2), 0.0, 1.0] for i in range(60)])
    code, out = _select(tmp_path, table, "--points-per-center", "0")
    assert code == 2
    assert _error_line(capsys).startswith("error: k=3 is larger than the 2 distinct points")
    assert not out.exists()


def test_null_and_duplicated_ids(spark, tmp_path, capsys):
    nulls = _table(tmp_path / "nulls", [None, 1, 2, None] + list(range(3, 60)), _good_vectors(61))
    assert _select(tmp_path, nulls)[0] == 2
    assert _error_line(capsys) == "error: id column 'id' has 2 null values; ids must be unique and non-null"
    dupes = _table(tmp_path / "dupes", [7, 7, 7, 9, 9] + list(range(10, 70)), _good_vectors(65))
    assert _select(tmp_path, dupes)[0] == 2
    line = _error_line(capsys)
    assert line.startswith("error: id column 'id' has 2 duplicated values (e.g. ")
    assert "7 (3 rows)" in line and "9 (2 rows)" in line


@pytest.mark.parametrize("strategy", ["sensitivity", "stratified"])
def test_duplicated_ids_past_a_skipped_id_check_fail_at_the_write(spark, tmp_path, capsys, strategy):
    # --skip-id-check trusts the ids; a duplicated id that gets drawn must still fail the run, with
    # the id named, and publish nothing.
    ids = [i // 2 for i in range(80)]  # every id twice, each time with another embedding
    table = _table(tmp_path / "in", ids, _good_vectors(80))
    code, out = _select(tmp_path, table, "--skip-id-check", "--strategy", strategy)
    assert code == 2
    assert _error_line(capsys).startswith("error: id column 'id' is not unique (e.g. ids ")
    assert not out.exists()


def test_invalid_embeddings_fail_or_are_skipped_and_counted(spark, tmp_path, capsys):
    vectors = _good_vectors(80)
    vectors[3] = None
    vectors[10] = [float("nan"), 1.0, 2.0]
    vectors[11] = [float("inf"), 1.0, 2.0]
    vectors[20] = []
    vectors[30] = [1.0, 2.0]
    table = _table(tmp_path / "in", list(range(80)), vectors)
    code, out = _select(tmp_path, table)
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith(
        "error: embedding column 'embedding' has 5 rows that are null, of the wrong length or not finite (e.g. ids "
    )
    assert "--on-invalid skip" in line
    assert not out.exists()
    code, out = _select(tmp_path, table, "--on-invalid", "skip")
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["invalid_rows"] == 5 and manifest["n"] == 80 and manifest["n_valid"] == 75
    subset = pq.read_table(out / "subset").to_pandas()
    assert not set(subset["id"]) & {3, 10, 11, 20, 30}


def test_wrong_embedding_type(spark, tmp_path, capsys):
    table = _table(tmp_path / "in", [1, 2], [[1.0], [2.0]], label=pa.array([3, 4], pa.int32()))
    code, _ = _select(tmp_path, table, "--vector-col", "label")
    assert code == 2
    assert _error_line(capsys) == (
        "error: embedding column 'label' has type int; expected array<float>, array<double> or an ML Vector"
    )


def test_empty_input(spark, tmp_path, capsys):
    table = _table(tmp_path / "in", [], [])
    code, out = _select(tmp_path, table)
    assert code == 2
    assert _error_line(capsys) == f"error: input {table} has no rows"
    assert not out.exists()


def test_unreadable_and_corrupt_input(spark, tmp_path, capsys):
    code, _ = _select(tmp_path, tmp_path / "missing")
    assert code == 1
    assert "missing" in _error_line(capsys)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "part-0.parquet").write_bytes(b"PAR1 this is not parquet")
    code, out = _select(tmp_path, corrupt)
    assert code == 1
    assert _error_line(capsys).startswith("error: ")
    assert not out.exists()


def test_a_folder_named_with_glob_characters_is_named_with_its_escape(spark, tmp_path, capsys):
    table = _table(tmp_path / "lake" / "in [2026]", list(range(40)), _good_vectors(40))
    code, out = _select(tmp_path, table)
    assert code != 0
    escaped = str(table).replace("[", "\\[").replace("]", "\\]")
    line = _error_line(capsys)
    assert "Spark reads --input as a glob pattern, in which [ ] are special" in line
    assert line.endswith(f"escape each with a backslash: {escaped}")
    assert not out.exists()
    code, out = _select(tmp_path, escaped)
    assert code == 0 and (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["select", "--input", "x", "--sample-size", "3", "--output", "o", "--frobnicate"],
            "unrecognized arguments: --frobnicate",
        ),
        (
            ["select", "--input", "x", "--sample-size", "3", "--output", "o", "--z", "3"],
            "argument --z: invalid choice: 3",
        ),
        (["select", "--input", "x", "--output", "o"], "the following arguments are required: --sample-size"),
    ],
)
def test_bad_flags_exit_2_with_usage(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
