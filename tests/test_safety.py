"""Never lose a user's data: what --overwrite may replace, publishing under faults and races, dead runs.

Every case checks the exit code, the one error line, and checksums of the input and of any earlier
output. Runs go through the real CLI on the real local file system; the fault cases run the job in
a child process and kill it with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CONNECT

from spark_sensitivity.cli import main
from spark_sensitivity.io.publish import MARKER, AtomicOutput, Owner, PublishError

M = 30


def digest(path: Path) -> dict[str, str]:
    """Every file and folder under ``path`` (or the file itself) with a checksum of its bytes."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    found = {}
    for root, dirs, files in os.walk(path):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), path) + "/"] = "dir"
        for name in files:
            full = os.path.join(root, name)
            found[os.path.relpath(full, path)] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
    return found


def write_input(path: Path, n: int = 400, dim: int = 4, seed: int = 0, column: str = "embedding") -> Path:
    vectors = np.random.default_rng(seed).normal(size=(n, dim))
    path.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {"id": pa.array(range(n), pa.int64()), column: pa.array(vectors.tolist(), pa.list_(pa.float32()))}
    )
    pq.write_table(table, path / "part-0.parquet")
    return path


def select_args(source: Path, output: Path | str, *extra: str) -> list[str]:
    return ["select", "--input", str(source), "--k", "4", "--sample-size", str(M), "--output", str(output),
            "--quiet", *extra]  # fmt: skip


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    return errors[0]


def leftovers(output: Path) -> list[str]:
    """Staging folders, moved-aside outputs and locks next to ``output``."""
    return sorted(p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}."))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_input(tmp_path_factory.mktemp("safety") / "input")


@pytest.fixture
def earlier(spark, source, tmp_path):
    """An output of this tool, published by an earlier run."""
    output = tmp_path / "out"
    assert main(select_args(source, output, "--seed", "1")) == 0
    return output


# What --overwrite may replace.


@pytest.mark.parametrize("where", ["input", "parent", "inside"])
def test_output_never_overlaps_the_input(spark, tmp_path, capsys, where):
    data = tmp_path / "data"
    table = write_input(data / "table")
    (data / "notes.txt").write_text("a sibling file of the user's\n")
    output = {"input": table, "parent": data, "inside": table / "out"}[where]
    before = digest(data)
    assert main(select_args(table, output, "--overwrite")) == 2
    expected = {"input": "is the input", "parent": "contains the input", "inside": "is inside the input"}
    assert expected[where] in error_line(capsys)
    assert digest(data) == before


def test_a_file_or_a_foreign_folder_is_never_replaced(spark, source, tmp_path, capsys):
    file = tmp_path / "report.txt"
    file.write_text("not ours\n")
    assert main(select_args(source, file, "--overwrite")) == 2
    assert "is a file, not a folder written by spark-sensitivity" in error_line(capsys)
    assert file.read_text() == "not ours\n"

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1,2\n")
    before = digest(foreign)
    assert main(select_args(source, foreign, "--overwrite")) == 2
    assert "is not an output of spark-sensitivity" in error_line(capsys)
    assert digest(foreign) == before and leftovers(foreign) == []


def test_overwrite_replaces_an_earlier_output_whole(spark, source, earlier, capsys):
    first = json.loads((earlier / "manifest.json").read_text())["run_id"]
    assert main(select_args(source, earlier, "--overwrite", "--seed", "2")) == 0
    manifest = json.loads((earlier / "manifest.json").read_text())
    assert manifest["run_id"] != first and manifest["parameters"]["seed"] == 2
    assert (earlier / MARKER).exists() and leftovers(earlier) == []
    assert main(select_args(source, earlier)) == 2
    assert "already exists; pass --overwrite" in error_line(capsys)


@pytest.mark.parametrize("barrier", ["bind mount", "immutable"])
def test_an_output_that_cannot_be_moved_stays_whole(spark, source, earlier, capsys, barrier):
    before = digest(earlier)
    command = (
        ["mount", "--bind", str(earlier), str(earlier)]
        if barrier == "bind mount"
        else ["chattr", "+i", str(earlier)]
    )
    undo = ["umount", str(earlier)] if barrier == "bind mount" else ["chattr", "-i", str(earlier)]
    made = subprocess.run(command, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this machine refuses {' '.join(command[:2])}: {made.stderr.strip()}")
    try:
        assert main(select_args(source, earlier, "--overwrite", "--seed", "3")) == 1
        line = error_line(capsys)
        assert "could not move the old output" in line and "unchanged" in line
        assert digest(earlier) == before
    finally:
        subprocess.run(undo, check=True)
    assert leftovers(earlier) == []


# Publishing races, at the level of the publisher.


def _staged(destination: Path, content: str, overwrite: bool) -> AtomicOutput:
    out = AtomicOutput(None, str(destination), overwrite)
    out.write_text("part/data.txt", content)
    out.write_json("manifest.json", {"content": content})
    return out


def _publish_together(outputs: list[AtomicOutput]) -> list[BaseException | None]:
    results: list[BaseException | None] = [None] * len(outputs)
    start = threading.Barrier(len(outputs))

    def run(i: int) -> None:
        start.wait()
        try:
            outputs[i].publish()
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            results[i] = error
            outputs[i].abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(outputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_publishers_give_one_whole_output(tmp_path):
    destination = tmp_path / "out"
    outputs = [_staged(destination, f"run {i}", overwrite=False) for i in range(4)]
    results = _publish_together(outputs)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, FileExistsError) for r in results if r is not None)
    winner = json.loads((destination / "manifest.json").read_text())["content"]
    assert (destination / "part" / "data.txt").read_text() == winner
    assert sorted(p.name for p in destination.iterdir()) == [MARKER, "manifest.json", "part"]
    assert leftovers(destination) == []

    replacing = [_staged(destination, f"again {i}", overwrite=True) for i in range(3)]
    assert _publish_together(replacing) == [None, None, None]  # one after the other, each whole
    last = json.loads((destination / "manifest.json").read_text())["content"]
    assert last.startswith("again") and (destination / "part" / "data.txt").read_text() == last
    assert leftovers(destination) == []


def test_a_run_that_lost_the_race_fails_and_leaves_the_winner_whole(tmp_path):
    destination = tmp_path / "out"
    slow = _staged(destination, "slow", overwrite=False)
    slow.check_destination()  # nothing there yet
    _staged(destination, "fast", overwrite=False).publish()
    with pytest.raises(FileExistsError, match="already exists"):
        slow.publish()
    slow.abort()
    assert (destination / "part" / "data.txt").read_text() == "fast"
    assert not (destination / Path(slow.staging).name).exists() and leftovers(destination) == []


def test_dead_runs_are_tidied_and_a_half_swapped_output_is_put_back(tmp_path):
    destination = tmp_path / "out"
    _staged(destination, "old", overwrite=False).publish()
    dead = Owner(Owner.current().host, dead_pid(), "feedbeef0000")
    staging = tmp_path / f".out.staging-{dead.tag}"
    (staging / "subset").mkdir(parents=True)
    (tmp_path / ".out.lock").write_text(json.dumps({"owner": dead.tag}))
    # A run killed between moving the old output aside and moving its own in:
    os.rename(destination, tmp_path / f".out.replaced-{dead.tag}")

    AtomicOutput(None, str(destination), overwrite=True).check_destination()
    assert (destination / "part" / "data.txt").read_text() == "old"
    assert leftovers(destination) == []


def test_a_live_run_keeps_its_staging_folder(tmp_path):
    destination = tmp_path / "out"
    live = _staged(destination, "in progress", overwrite=False)
    AtomicOutput(None, str(destination), overwrite=False).check_destination()
    assert Path(live.staging).exists()
    live.publish()
    assert (destination / "part" / "data.txt").read_text() == "in progress"


def test_publishing_without_staged_files_is_an_error(tmp_path):
    with pytest.raises(PublishError, match="nothing was staged"):
        AtomicOutput(None, str(tmp_path / "out"), overwrite=False).publish()
    with pytest.raises(ValueError, match="must name a folder"):
        AtomicOutput(None, "/", overwrite=True)


# The job killed at each stage, then run again.


# The job in a child process: over Connect it would start a second local server on the same port.
child_jobs = pytest.mark.skipif(CONNECT, reason="child processes start classic sessions")


def _job(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "spark_sensitivity", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the kill takes the JVM and workers too
    )


def _kill_when(job: subprocess.Popen, marker: str) -> bool:
    for line in job.stderr:
        if marker in line:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
            return True
    job.wait()
    return False


# The log line that opens each stage.
STAGE_MARKERS = {
    "read": "sample size",
    "fit": "stage read:",
    "assign": "stage k-means:",
    "sample": "stage assign+reduce:",
    "write": "stage sample:",
    "publish": "stage write:",
}


@child_jobs
def test_a_job_killed_at_any_stage_loses_nothing_and_a_rerun_succeeds(spark, source, earlier):
    args = [a for a in select_args(source, earlier, "--overwrite", "--seed", "4") if a != "--quiet"]
    input_before, output_before = digest(source), digest(earlier)
    for stage, marker in STAGE_MARKERS.items():
        assert _kill_when(_job(args), marker), f"the job never reached {stage}"
        assert digest(source) == input_before, stage
        if stage != "publish":  # killed mid-swap, the old output may sit aside until the next run
            assert digest(earlier) == output_before, stage
        rerun = _job([*args[:-1], str(10 + len(stage))])
        _, err = rerun.communicate()
        assert rerun.returncode == 0, err[-2000:]
        assert leftovers(earlier) == [] and (earlier / MARKER).exists(), stage
        output_before = digest(earlier)


@child_jobs
def test_two_concurrent_jobs_end_with_one_whole_output(spark, source, tmp_path):
    output = tmp_path / "race"
    jobs = [_job(select_args(source, output, "--seed", str(seed))) for seed in (5, 6)]
    results = [(job.wait(), job.stderr.read()) for job in jobs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "already exists" in loser
    manifest = json.loads((output / "manifest.json").read_text())
    subset = pq.read_table(output / "subset")
    assert sum(subset.column("count").to_pylist()) == M and manifest["m"] == M
    assert leftovers(output) == []


@child_jobs
def test_quiet_prints_the_error_line_only(tmp_path):
    job = _job(select_args(tmp_path / "missing", tmp_path / "out"))
    _, err = job.communicate()
    lines = [line for line in err.splitlines() if line.strip() and "incubator modules" not in line]
    assert job.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:"), err


@child_jobs
def test_an_existing_output_is_refused_before_spark_starts(source, earlier):
    job = _job([a for a in select_args(source, earlier) if a != "--quiet"])
    _, err = job.communicate()
    assert job.returncode == 2 and "already exists" in err
    assert "log4j" not in err and "incubator" not in err  # no JVM was started


# Clear errors, early.


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", str(2**63)], "argument --seed: must be at most 9223372036854775807"),
        (["--seed", "-1"], "argument --seed: must be at least 0"),
        (["--sample-size", "1e10"], "argument --sample-size: expected an integer, got '1e10'"),
        (["--sample-size", "10000001"], "argument --sample-size: must be at most 10000000"),
        (["--k", "0"], "argument --k: must be at least 1"),
        (["--max-iter", "0"], "argument --max-iter: must be at least 1"),
        (["--tol", "nan"], "argument --tol: expected a finite number"),
        (["--fit-fraction", "0"], "argument --fit-fraction: must be above 0"),
        (["--uniform-share", "1"], "argument --uniform-share: must be below 1"),
        (["--points-per-center", "-1"], "argument --points-per-center: must be at least 0"),
    ],
)
def test_bad_numbers_fail_at_parse_time(source, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*select_args(source, tmp_path / "out"), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--input", "t", "--seeds", "0"], "argument --seeds: must be at least 1"),
        (["evaluate", "--input", "t", "--k", "0"], "argument --k: must be at least 1"),
        (["evaluate", "--input", "t", "--test-share", "1"], "argument --test-share: must be in (0, 1)"),
        (["evaluate", "--input", "t", "--scheme", "nope"], "argument --scheme: invalid choice: 'nope'"),
        (
            ["evaluate", "--input", "t", "--sample-sizes", "0,10"],
            "argument --sample-sizes: must be at least 1",
        ),
        (["refresh", "--max-cost-drift", "0"], "argument --max-cost-drift: must be above 0"),
        (["refresh", "--seed", "-1"], "argument --seed: must be at least 0"),
        (["embed", "--embed-batch-size", "0"], "argument --embed-batch-size: must be at least 1"),
        (
            ["embed", "--input", "t", "--embedder", "hashing"],
            "the following arguments are required: --output",
        ),
        (["evaluate"], "the following arguments are required: --input"),
    ],
)
def test_every_command_checks_its_declared_settings_at_parse_time(capsys, argv, message):
    """refresh, embed and evaluate build their flags from declared settings, with the same checks."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_config_value_of_the_wrong_type_names_the_key_and_the_file(source, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text('k: "ten"\n')
    with pytest.raises(SystemExit) as exit_info:
        main([*select_args(source, tmp_path / "out"), "--config", str(config)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"config file {config}: k: expected an integer, got 'ten'" in err


def test_run_ids_name_a_folder_inside_the_template(spark, source, tmp_path, capsys):
    template = str(tmp_path / "runs" / "{run_id}")
    assert main([*select_args(source, template), "--run-id", "../escape"]) == 2
    assert "--run-id '../escape' must be letters" in error_line(capsys)
    assert not (tmp_path / "escape").exists()
    airflow = "scheduled__2026-01-01T00:00:00+00:00"
    assert main([*select_args(source, template), "--run-id", airflow]) == 0
    folder = tmp_path / "runs" / "scheduled__2026-01-01T00-00-00+00-00"
    assert json.loads((folder / "manifest.json").read_text())["run_id"] == airflow


@pytest.mark.parametrize("name", ["run[1]", "a{0}", "b*"])
def test_glob_characters_in_the_output_path(spark, source, tmp_path, name):
    output = tmp_path / name
    assert main(select_args(source, output)) == 0
    assert sum(pq.read_table(output / "subset").column("count").to_pylist()) == M
    assert main(select_args(source, output, "--overwrite", "--seed", "9")) == 0
    assert leftovers(output) == []


def test_an_input_with_only_a_success_marker(spark, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "_SUCCESS").write_text("")
    assert main(select_args(empty, tmp_path / "out")) == 2
    assert f"input {empty} holds no parquet data files" in error_line(capsys)


def test_a_column_name_with_a_dot(spark, tmp_path, capsys):
    table = write_input(tmp_path / "dotted", column="emb.v")
    assert main([*select_args(table, tmp_path / "out"), "--vector-col", "emb.v"]) == 2
    assert "column 'emb.v' has a '.' in its name" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_the_report_reads_a_csv_subset(spark, source, tmp_path):
    output = tmp_path / "out"
    assert main([*select_args(source, output), "--output-format", "csv", "--report"]) == 0
    assert (output / "report" / "index.html").exists() and (output / "subset").is_dir()


# Refresh: one run's model and subset, never the same rows twice, never an earlier output changed.


def test_refresh_refuses_mixed_runs_and_rows_read_before(spark, source, earlier, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(select_args(source, other, "--seed", "8")) == 0
    fresh = write_input(tmp_path / "fresh", n=50, seed=3)
    before = digest(earlier)

    def refresh(model: Path, previous: Path, new: Path) -> int:
        return main(["refresh", "--model", str(model), "--previous-subset", str(previous), "--new-input",
                     str(new), "--output", str(tmp_path / "refreshed"), "--quiet"])  # fmt: skip

    assert refresh(earlier / "model", other / "subset", fresh) == 2
    assert "come from different runs" in error_line(capsys)
    # ids 0-49 are rows of the original input, most of them never drawn
    assert refresh(earlier / "model", earlier / "subset", fresh) == 2
    assert "new rows have ids that the earlier input" in error_line(capsys)
    assert refresh(earlier / "model", earlier / "subset", source) == 2
    assert "was already read by an earlier run" in error_line(capsys)
    assert not (tmp_path / "refreshed").exists() and digest(earlier) == before

    shifted = tmp_path / "shifted"
    shutil.copytree(fresh, shifted)
    table = pq.read_table(shifted / "part-0.parquet")
    ids = pa.array([i + 10_000 for i in table.column("id").to_pylist()], pa.int64())
    pq.write_table(table.set_column(0, "id", ids), shifted / "part-0.parquet")
    assert refresh(earlier / "model", earlier / "subset", shifted) == 0
    manifest = json.loads((tmp_path / "refreshed" / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [str(source), str(shifted)]
    assert manifest["earlier_inputs_unchecked"] == [] and digest(earlier) == before
