"""Interrupting a run: real signals sent to a real select run in a child process.

Ctrl-C (SIGINT to the process group), SIGINT to the driver alone, and SIGTERM, at three points of a
run (after the read, during the write, after clusters/ is staged), on classic Spark and over Spark
Connect. Each case checks the exit code (128 + the signal), the one line on stderr and no traceback,
that nothing new is left next to the output (no staging folder, lock or moved-aside output), and that
an earlier output under --overwrite is intact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CONNECT
from test_safety import digest

from spark_sensitivity.io.publish import MARKER

pytestmark = pytest.mark.skipif(CONNECT, reason="the child processes choose their own session kind")

ROWS, DIM, M = 40_000, 32, 20_000  # a write of about 20,000 rows: seconds, not milliseconds
JAVA_NOTICE = "incubator modules"  # printed by the JVM itself at start-up


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupts") / "input"
    folder.mkdir()
    vectors = np.random.default_rng(3).normal(size=(ROWS, DIM)).astype(np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM).cast(pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": np.arange(ROWS), "embedding": embedding}), folder / "part-0.parquet")
    return folder


class Run:
    """A select run in its own process group, its stderr collected as it comes."""

    def __init__(self, source: Path, output: Path, *extra: str):
        args = ["select", "--input", str(source), "--k", "8", "--strategy", "sensitivity",
                "--sample-size", str(M), "--seed", "5", "--output", str(output), *extra]  # fmt: skip
        self.output = output
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spark_sensitivity", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self._reader.start()

    def staged(self, part: str = "") -> bool:
        return any(
            p.name.startswith(f".{self.output.name}.staging-") and (p / part).exists()
            for p in self.output.parent.iterdir()
        )

    def wait_for(self, ready) -> None:
        """Polls until ``ready()``; fails should the run end first."""
        while not ready():
            assert self.process.poll() is None, "the run ended before the signal:\n" + "".join(self.lines)
            time.sleep(0.01)

    def finish(self, timeout: float = 300) -> tuple[int, list[str]]:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code, [line.rstrip("\n") for line in self.lines if line.strip() and JAVA_NOTICE not in line]


def earlier_output(folder: Path) -> Path:
    """An output of this tool (its commit marker), which --overwrite may replace."""
    folder.mkdir()
    (folder / MARKER).write_text("{}")
    (folder / "manifest.json").write_text('{"m": 1}')
    return folder


def assert_interrupted(run: Run, code: int, lines: list[str], signum: int, before: set[str]) -> None:
    expected = f"interrupted; nothing was published; {run.output} is unchanged"
    assert code == 128 + signum, lines
    assert lines[-1] == expected and sum(line.startswith("interrupted") for line in lines) == 1, lines
    assert not any("Traceback" in line or line.startswith("\tat ") for line in lines), lines
    assert {p.name for p in run.output.parent.iterdir()} == before  # no staging, lock or moved output


@pytest.mark.parametrize(
    "signum, target, when, extra",
    [
        (signal.SIGINT, "group", "read", ()),
        (signal.SIGINT, "driver", "write", ("--quiet",)),
        (signal.SIGTERM, "driver", "clusters", ("--quiet",)),
        (signal.SIGINT, "group", "write", ("--quiet", "--remote", "local[2]")),
    ],
    ids=["ctrl-c-after-read", "sigint-driver-during-write", "sigterm-after-clusters", "ctrl-c-connect-write"],
)
def test_an_interrupted_run_says_so_in_one_line_and_leaves_nothing(
    source, tmp_path, signum, target, when, extra
):
    output = earlier_output(tmp_path / "out")
    kept, before = digest(output), {p.name for p in tmp_path.iterdir()}
    run = Run(source, output, "--overwrite", *extra)
    if when == "read":
        run.wait_for(lambda: any(line.startswith("stage fit") or " stage fit" in line for line in run.lines))
    else:
        run.wait_for(lambda: run.staged("clusters" if when == "clusters" else ""))
    (os.killpg if target == "group" else os.kill)(run.process.pid, signum)
    code, lines = run.finish()
    assert_interrupted(run, code, lines, signum, before)
    assert digest(output) == kept
    if "--quiet" in extra:
        assert len(lines) == 1, lines


def test_an_interrupt_before_any_output_existed(source, tmp_path):
    run = Run(source, tmp_path / "fresh", "--quiet")
    before = {p.name for p in tmp_path.iterdir()}
    run.wait_for(run.staged)
    os.killpg(run.process.pid, signal.SIGINT)
    code, lines = run.finish()
    assert_interrupted(run, code, lines, signal.SIGINT, before)
    assert lines == [f"interrupted; nothing was published; {run.output} is unchanged"]
