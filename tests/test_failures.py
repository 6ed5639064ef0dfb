"""Quiet runs and readable failures.

A --quiet run prints nothing on a real console run (no Spark progress bars); a failure inside Spark
prints one line naming the problem and where the full trace was saved, and the trace reaches the
console only with --verbose. The one-line messages name the thing at fault: a corrupt or truncated
Parquet file, the embedding length expected, an --output that is a symbolic link, an output parent
that is a file, a reader filter that leaves no file, a k larger than the rows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CONNECT

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import main
from spark_sensitivity.settings import SettingError

JAVA_NOTICE = "incubator modules"  # printed by the JVM itself at start-up
child_jobs = pytest.mark.skipif(CONNECT, reason="the child processes start classic sessions")


def write_table(folder: Path, rows: int, dim: int, first_id: int = 0, name: str = "part-0.parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.random.default_rng(first_id).normal(size=(rows, dim)).astype(np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim).cast(pa.list_(pa.float32()))
    ids = pa.array(range(first_id, first_id + rows), pa.int64())
    pq.write_table(pa.table({"id": ids, "embedding": embedding}), folder / name)
    return folder


def with_corrupt_file(folder: Path, truncate: bool = False) -> Path:
    """A good Parquet file and a second one that is truncated or not Parquet at all."""
    write_table(folder, 200, 4)
    bad = write_table(folder, 200, 4, first_id=1000, name="part-1.parquet") / "part-1.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2] if truncate else b"PAR1 not parquet PAR1")
    return folder


def select(source: Path, output: Path, *extra: str) -> list[str]:
    return [
        "select",
        "--input",
        str(source),
        "--k",
        "3",
        "--sample-size",
        "20",
        "--output",
        str(output),
        *extra,
    ]


def run_child(args: list[str]) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "spark_sensitivity", *args], capture_output=True, text=True, timeout=600
    )
    return done.returncode, [
        line for line in done.stderr.splitlines() if line.strip() and JAVA_NOTICE not in line
    ]


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@child_jobs
def test_a_quiet_run_prints_nothing_not_even_progress_bars(tmp_path):
    # 60,000 x 64 rows: its read, fit and assignment stages last seconds, which shows Spark's bars.
    source = write_table(tmp_path / "input", 60_000, 64)
    code, lines = run_child(select(source, tmp_path / "out", "--quiet", "--k", "20"))
    assert code == 0 and lines == [], lines
    assert (tmp_path / "out" / "manifest.json").exists()


@child_jobs
def test_a_failure_inside_spark_is_one_line_and_the_trace_is_saved(tmp_path):
    source = with_corrupt_file(tmp_path / "input")
    code, lines = run_child(select(source, tmp_path / "out"))
    assert code == 1
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert not any(" WARN " in line or " ERROR " in line or line.startswith("\tat ") for line in lines), lines
    found = re.fullmatch(
        r"error: cannot read the input file \S*part-1\.parquet: .* \(the full trace is in (.+)\)", errors[0]
    )
    assert found, errors[0]
    trace = Path(found.group(1))
    try:
        text = trace.read_text()
        assert "Traceback" in text and "\tat org.apache.spark" in text and "FAILED_READ_FILE" in text
    finally:
        trace.unlink()
    assert not (tmp_path / "out").exists()


@child_jobs
def test_verbose_puts_the_trace_on_the_console(tmp_path):
    source = with_corrupt_file(tmp_path / "input")
    code, lines = run_child(select(source, tmp_path / "out", "--verbose"))
    assert code == 1
    assert any(line.startswith("Traceback") for line in lines)
    assert any(line.startswith("\tat org.apache.spark") for line in lines)


@pytest.mark.parametrize("truncate", [False, True], ids=["not-parquet", "truncated"])
def test_a_corrupt_parquet_file_is_named(spark, tmp_path, capsys, truncate):
    source = with_corrupt_file(tmp_path / "input", truncate)
    assert main(select(source, tmp_path / "out", "--quiet")) == 1
    line = error_line(capsys)
    assert re.match(r"error: cannot read the input file \S*/input/part-1\.parquet: ", line), line
    Path(line.rsplit("the full trace is in ", 1)[1].rstrip(")")).unlink()


def test_mixed_embedding_lengths_name_the_expected_length(spark, tmp_path, capsys):
    source = write_table(tmp_path / "input", 200, 4)
    write_table(source, 100, 5, first_id=1000, name="part-1.parquet")
    assert main(select(source, tmp_path / "out", "--quiet")) == 2
    line = error_line(capsys)
    assert "has 100 rows that are null, of the wrong length or not finite (e.g. ids 1000" in line
    assert "each must hold 4 finite numbers" in line


def test_an_output_that_is_a_symlink_is_named_so(spark, tmp_path, capsys):
    source = write_table(tmp_path / "input", 60, 4)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out")
    assert main(select(source, tmp_path / "out", "--quiet", "--overwrite")) == 2
    line = error_line(capsys)
    assert line.startswith(
        f"error: output {tmp_path / 'out'} is a symbolic link (to {tmp_path / 'elsewhere'})"
    )
    assert os.listdir(tmp_path / "elsewhere") == [] and os.path.islink(tmp_path / "out")


def test_an_output_parent_that_is_a_file_is_named(spark, tmp_path, capsys):
    source = write_table(tmp_path / "input", 60, 4)
    (tmp_path / "plain").write_text("not a folder")
    assert main(select(source, tmp_path / "plain" / "out", "--quiet")) == 2
    assert error_line(capsys) == f"error: {tmp_path / 'plain'} is a file, not a folder"
    assert (tmp_path / "plain").read_text() == "not a folder"


def test_a_reader_filter_that_leaves_no_file_is_named(spark, tmp_path, capsys):
    source = write_table(tmp_path / "input", 60, 4)
    assert (
        main(select(source, tmp_path / "out", "--quiet", "--input-option", "pathGlobFilter=*.nomatch")) == 2
    )
    assert error_line(capsys) == (
        f"error: input {source} holds no parquet data files (none passes --input-option pathGlobFilter=*.nomatch)"
    )


def test_k_above_the_row_count_advises_a_lower_k(spark, tmp_path, capsys):
    source = write_table(tmp_path / "input", 3, 4)
    assert main(select(source, tmp_path / "out", "--quiet", "--k", "10")) == 2
    line = error_line(capsys)
    assert line.startswith(
        "error: k=10 is larger than the 3 valid rows in the k-means fit sample; lower --k to at most 3"
    )
    assert "raise --fit-fraction" not in line
    # The library names the settings as its callers set them: the Params.
    with pytest.raises(SettingError) as raised:
        SensitivitySampler(k=10).fit(spark.read.parquet(str(source)))
    assert str(raised.value).startswith(
        "k=10 is larger than the 3 valid rows in the k-means fit sample; lower k to at most 3 (a fitFraction"
    )


@pytest.mark.parametrize("column", ["embedding", "id"])
def test_files_of_mixed_types_are_named_with_the_column(spark, tmp_path, capsys, column):
    # float vs double embeddings, string vs long ids (int vs long ids are widened and read fine).
    source = write_table(tmp_path / "input", 200, 4)
    vectors = np.random.default_rng(5).normal(size=(100, 4))
    other = {
        "id": pa.array([str(i) for i in range(1000, 1100)])
        if column == "id"
        else pa.array(range(1000, 1100), pa.int64()),
        "embedding": pa.array(
            vectors.tolist(), pa.list_(pa.float64() if column == "embedding" else pa.float32())
        ),
    }
    pq.write_table(pa.table(other), source / "part-1.parquet")
    assert main(select(source, tmp_path / "out", "--quiet")) == 1
    line = error_line(capsys)
    assert re.match(r"error: cannot read the input file \S*/input/part-1\.parquet: .*" + column, line), line
    Path(line.rsplit("the full trace is in ", 1)[1].rstrip(")")).unlink()
    assert not (tmp_path / "out").exists()


def test_a_crashed_python_worker_is_named_with_the_likely_cause(spark):
    # A real worker death (the process exits under a task, as when the OOM killer ends it).
    from spark_sensitivity.cli.app import _spark_error_line

    def die(batches):
        os._exit(1)
        yield from batches

    with pytest.raises(Exception) as raised:
        spark.range(4).mapInArrow(die, "id long").collect()
    line = _spark_error_line(raised.value)
    assert line.startswith("a Python worker crashed, most likely out of memory")
    assert "--dedup-max-cluster-rows" in line and "\n" not in line


def test_a_lost_jvm_is_one_line_naming_the_out_of_memory_its_log_holds(tmp_path):
    # What a 4 GB driver ran into deduplicating 1,000,000 x 384 rows: the JVM died of heap
    # exhaustion and py4j's next call was refused. The line names it from the JVM's own log.
    from spark_sensitivity.cli.app import jvm_stopped_line

    log = tmp_path / "run.log"
    log.write_text(
        "26/12/02 17:41:03 ERROR Executor: Exception in task 5.0\njava.lang.OutOfMemoryError: Java heap space\n"
    )
    refused = ConnectionRefusedError(111, "Connection refused")
    line = jvm_stopped_line(refused, log)
    assert line.startswith(
        "the Spark JVM stopped, out of memory (java.lang.OutOfMemoryError: Java heap space)"
    )
    assert "spark.driver.memory" in line and "\n" not in line
    assert jvm_stopped_line(refused, tmp_path / "absent.log").startswith("the Spark JVM stopped, most likely")
    assert jvm_stopped_line(ValueError("bad input"), log) is None
