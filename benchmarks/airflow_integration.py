"""deploy/airflow_dag.py under real Airflow 3 against a real standalone Spark cluster on 127.0.0.1.

Run on purpose, from the repository root with the project's environment (scripts/env.sh); it is NOT
part of .ci/run or scripts/test.sh (it installs Airflow and takes several minutes):

    python benchmarks/airflow_integration.py

What it does, all under runs/airflow/ (ignored by git):

1. A virtual environment of its own, runs/airflow/venv, with apache-airflow and
   apache-airflow-providers-apache-spark from the package registry (pinned below: Airflow's
   constraint files live on GitHub, which a machine with only the registry cannot reach). The task
   runs the spark-submit it finds on PATH: this project's pyspark.
2. A fresh AIRFLOW_HOME, ``airflow db migrate``, the DAG file copied unchanged into the DAGs folder;
   its paths come from SPARK_SENSITIVITY_* environment variables, the sizes from ``-c`` (DAG params).
3. A standalone Spark cluster (a master and two workers, tests/cluster.py) and the ``spark_default``
   connection to it; the package zip the DAG ships with --py-files; executors and driver run a Python
   without the package installed, so it can only come from the zip.
4. Date-partitioned input (Gaussian blobs) for three consecutive dates, then ``airflow dags test``:
   each date once; one date again (a retry: identical ids, counts and weights); a backfill of a date
   that already has output, after its input partition was rewritten (the output is replaced whole);
   a run whose input partition is missing (the task fails, the job's one-line error is in the task
   log, and every output and input is byte for byte as before).

It prints a summary (also written to runs/airflow/run/summary.json) and exits 1 if any check failed.
The Spark cluster and every process it started are stopped at the end, also on failure or Ctrl-C;
the run folder (logs, data, AIRFLOW_HOME) stays for inspection until the next run replaces it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pyspark

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from cluster import StandaloneCluster, package_zip, python_without_package  # noqa: E402

from spark_sensitivity.io.datasets import write_gaussian_mixture  # noqa: E402

AIRFLOW_VERSION = "3.3.2"
PROVIDER_VERSION = "6.3.4"
DAG_ID = "spark_sensitivity_select"
DATES = ("2026-11-01", "2026-11-02", "2026-11-03")
CONF = {"k": 8, "sample_size": 500}  # DAG params given per run; the rest from the environment
ROWS, DIM, BLOBS = 4000, 16, 6
RUN_TIMEOUT = 900  # seconds for one `airflow dags test`

BASE = REPO / "runs" / "airflow"
VENV = BASE / "venv"
ROOT = BASE / "run"


class Checks:
    def __init__(self):
        self.rows: list[dict] = []

    def step(self, name: str, ok: bool, detail: str = "", seconds: float | None = None) -> bool:
        row = {"step": name, "ok": bool(ok), "detail": detail}
        if seconds is not None:
            row["seconds"] = round(seconds, 1)
        self.rows.append(row)
        took = f" ({seconds:.0f} s)" if seconds is not None else ""
        print(f"[{'ok' if ok else 'FAIL'}] {name}{took}: {detail}", flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row["ok"] for row in self.rows)


def run(command: list[str], log: Path, env: dict[str, str], timeout: float) -> tuple[int, float, str]:
    """Runs a command in its own process group, output to ``log``; the group is killed on timeout."""
    start = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
        try:
            code = process.wait(timeout)
        except BaseException:  # a timeout or Ctrl-C: end Airflow and the spark-submit it started
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            raise
    return code, time.monotonic() - start, log.read_text(errors="replace")


def install_airflow(checks: Checks) -> Path:
    airflow = VENV / "bin" / "airflow"
    pins = [
        f"apache-airflow=={AIRFLOW_VERSION}",
        f"apache-airflow-providers-apache-spark=={PROVIDER_VERSION}",
    ]
    start = time.monotonic()
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # Not pyspark: the provider brings pyspark-client (its Spark Connect hook); the task runs the
    # spark-submit found on PATH, here this project's pyspark, as a worker uses its Spark install.
    pip = [str(VENV / "bin" / "pip"), "install", "-q", *pins]
    result = subprocess.run(pip, capture_output=True, text=True)
    versions = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import airflow, airflow.providers.apache.spark as s;"
         "print(airflow.__version__, s.__version__)"],
        capture_output=True, text=True,
    )  # fmt: skip
    ok = result.returncode == 0 and versions.stdout.split() == [AIRFLOW_VERSION, PROVIDER_VERSION]
    detail = (
        f"airflow, provider = {versions.stdout.split()}" if ok else (result.stderr or versions.stderr)[-2000:]
    )
    checks.step("install apache-airflow and the Spark provider", ok, detail, time.monotonic() - start)
    if not ok:
        raise SystemExit(1)
    return airflow


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones too), by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def subset_of(output: Path) -> list[tuple]:
    table = pq.read_table(output / "subset", columns=["id", "count", "weight"]).sort_by("id")
    return list(zip(*(table.column(name).to_pylist() for name in ("id", "count", "weight")), strict=True))


def published(output: Path, input_dir: Path, expect_rows: int) -> tuple[bool, str]:
    """The output is complete: marker, manifest of this input, m draws, a subset of its rows."""
    if not (output / "_PUBLISHED").is_file() or not (output / "manifest.json").is_file():
        return False, f"{output.name}: no _PUBLISHED marker or manifest"
    manifest = json.loads((output / "manifest.json").read_text())
    rows = subset_of(output)
    draws = sum(count for _, count, _ in rows)
    input_ids = set(pq.read_table(input_dir, columns=["id"]).column("id").to_pylist())
    problems = []
    if manifest["parameters"]["input"] != str(input_dir):
        problems.append(f"manifest input {manifest['parameters']['input']}, not the day's")
    if manifest["n"] != expect_rows:
        problems.append(f"manifest n={manifest['n']}, not {expect_rows}")
    if draws != CONF["sample_size"]:
        problems.append(f"{draws} draws, not {CONF['sample_size']}")
    if not {row[0] for row in rows} <= input_ids:
        problems.append("ids outside the day's input")
    weight_sum = sum(weight for _, _, weight in rows)
    detail = f"{len(rows)} distinct rows, {draws} draws, sum of weights {weight_sum:.0f} (n={expect_rows})"
    return not problems, "; ".join(problems) or detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    checks = Checks()
    BASE.mkdir(parents=True, exist_ok=True)
    airflow = install_airflow(checks)

    if ROOT.exists():
        shutil.rmtree(ROOT)
    home, dags, data, logs = ROOT / "airflow-home", ROOT / "dags", ROOT / "data", ROOT / "logs"
    for folder in (home, dags, data, logs):
        folder.mkdir(parents=True)
    embeddings, subsets = data / "embeddings", data / "subsets"
    shutil.copy(REPO / "deploy" / "airflow_dag.py", dags / "airflow_dag.py")  # unchanged, as users do
    zip_path = package_zip(ROOT / "spark_sensitivity.zip")
    python = python_without_package(ROOT / "cluster-python")

    cluster = StandaloneCluster(ROOT / "spark", workers=2, cores=1, memory="1g")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PATH=f"{Path(pyspark.__file__).parent / 'bin'}{os.pathsep}{env['PATH']}",  # spark-submit
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=str(python),
        PYSPARK_DRIVER_PYTHON=str(python),
        SPARK_SENSITIVITY_INPUT=f"{embeddings}/date={{ds}}",
        SPARK_SENSITIVITY_OUTPUT=f"{subsets}/date={{ds}}",
        SPARK_SENSITIVITY_JOB_FILE=str(REPO / "jobs" / "select_subset.py"),
        SPARK_SENSITIVITY_PY_FILES=str(zip_path),
        SPARK_SENSITIVITY_SHUFFLE_PARTITIONS="4",
        SPARK_SENSITIVITY_RETRIES="0",
    )

    def airflow_cli(name: str, *args: str, timeout: float = 300) -> tuple[int, float, str]:
        return run([str(airflow), *args], logs / f"{name}.log", env, timeout)

    def dag_test(name: str, date: str) -> tuple[int, float, str]:
        code, seconds, log = airflow_cli(
            name, "dags", "test", DAG_ID, date, "-c", json.dumps(CONF), timeout=RUN_TIMEOUT
        )
        return code, seconds, log

    try:
        code, seconds, log = airflow_cli("db-migrate", "db", "migrate")
        checks.step("airflow db migrate", code == 0, f"exit {code}", seconds)
        if code:
            return 1
        start = time.monotonic()
        cluster.start()
        checks.step("standalone Spark cluster", True, f"{cluster.url}, 2 workers", time.monotonic() - start)
        code, seconds, log = airflow_cli(
            "connection", "connections", "add", "spark_default", "--conn-uri", cluster.url
        )
        checks.step("connection spark_default", code == 0, f"{cluster.url}, exit {code}", seconds)
        code, seconds, log = airflow_cli("dags-list", "dags", "list-import-errors")
        checks.step(
            "the DAG file imports", code == 0 and "airflow_dag.py" not in log, f"exit {code}", seconds
        )

        for i, date in enumerate(DATES):
            write_gaussian_mixture(
                embeddings / f"date={date}", n=ROWS + 100 * i, dim=DIM, clusters=BLOBS, seed=i
            )
        rows = {date: ROWS + 100 * i for i, date in enumerate(DATES)}

        # 1. Three consecutive logical dates.
        first: dict[str, list] = {}
        for date in DATES:
            code, seconds, log = dag_test(f"run-{date}", date)
            ok = code == 0 and "DagRun Finished" in log and "state=success" in log
            checks.step(f"dags test {date}", ok, f"exit {code}", seconds)
            ok, detail = published(subsets / f"date={date}", embeddings / f"date={date}", rows[date])
            checks.step(f"output {date} published whole", ok, detail)
            first[date] = subset_of(subsets / f"date={date}") if ok else []
        entries = sorted(path.name for path in subsets.iterdir())
        checks.step(
            "one folder per date, nothing else", entries == [f"date={d}" for d in DATES], str(entries)
        )

        # 2. A retry of one date: a new output, the identical subset.
        date = DATES[1]
        manifest_before = (subsets / f"date={date}" / "manifest.json").read_text()
        code, seconds, log = dag_test(f"retry-{date}", date)
        checks.step(f"retry {date}", code == 0 and "state=success" in log, f"exit {code}", seconds)
        again = subset_of(subsets / f"date={date}")
        rewritten = (subsets / f"date={date}" / "manifest.json").read_text() != manifest_before
        same = again == first[date] and bool(again)
        checks.step(
            f"retry {date} gives the identical subset",
            same and rewritten,
            f"{len(again)} rows; ids, counts and weights {'equal' if same else 'DIFFER'}; "
            f"output {'republished (new manifest)' if rewritten else 'NOT rewritten'}",
        )

        # 3. A backfill of a date that has output, after its input partition was rewritten.
        date = DATES[0]
        old_files = set(checksums(subsets / f"date={date}"))
        shutil.rmtree(embeddings / f"date={date}")
        rows[date] = ROWS + 1000
        write_gaussian_mixture(embeddings / f"date={date}", n=rows[date], dim=DIM, clusters=BLOBS, seed=99)
        others = {d: checksums(subsets / f"date={d}") for d in DATES if d != date}
        code, seconds, log = dag_test(f"backfill-{date}", date)
        checks.step(f"backfill {date}", code == 0 and "state=success" in log, f"exit {code}", seconds)
        ok, detail = published(subsets / f"date={date}", embeddings / f"date={date}", rows[date])
        new_files = set(checksums(subsets / f"date={date}"))
        stale = sorted(f for f in old_files & new_files if f.endswith(".parquet"))
        checks.step(
            f"backfill {date} replaced its output whole",
            ok and not stale,
            detail + f"; old part files left: {len(stale)}",
        )
        untouched = all(checksums(subsets / f"date={d}") == sums for d, sums in others.items())
        checks.step("backfill left the other dates untouched", untouched, "sha256 of every file")

        # 4. A failed run: the input partition of a date with output is missing.
        date = DATES[2]
        aside = data / "aside"
        shutil.move(embeddings / f"date={date}", aside)
        before = checksums(data)
        code, seconds, log = dag_test(f"missing-{date}", date)
        errors = [line for line in log.splitlines() if "] error: " in line or line.startswith("error: ")]
        failed = code != 0 and "state=failed" in log and "Task failed with exception" in log
        checks.step(f"missing input {date}: the task fails", failed, f"exit {code}", seconds)
        checks.step(
            "the job's one-line error is in the task log",
            bool(errors) and f"date={date}" in errors[0],
            errors[0].split("error: ", 1)[1].split(" [airflow.task")[0] if errors else "no 'error:' line",
        )
        checks.step(
            "the failed run changed nothing", checksums(data) == before, f"sha256 of {len(before)} files"
        )
        shutil.move(aside, embeddings / f"date={date}")

        # Every run was an application of the standalone cluster, with executors on its workers. (The
        # job names its application itself, so the operator's `name` does not show here.)
        apps = [app["id"] for app in (cluster.master_state() or {}).get("completedapps", [])]
        executed = {path.name for path in (ROOT / "spark").glob("worker-*/app-*")}
        with_executors = sum(app in executed for app in apps)
        checks.step(
            "each dags test ran an application on the cluster",
            len(apps) == 6 and with_executors >= 5,
            f"{len(apps)} completed applications, {with_executors} with executors on the workers",
        )
        return 0 if checks.passed else 1
    except Exception as error:  # noqa: BLE001 - any failure is reported as a failed step
        checks.step("unexpected error", False, f"{type(error).__name__}: {error}"[:3000])
        return 1
    finally:
        cluster.stop()
        (ROOT / "summary.json").write_text(json.dumps(checks.rows, indent=1))
        print("\nsummary:")
        for row in checks.rows:
            took = f"{row['seconds']:>6.0f} s" if "seconds" in row else " " * 8
            print(f"  {'ok  ' if row['ok'] else 'FAIL'} {took}  {row['step']}: {row['detail']}")
        print("PASSED" if checks.passed else "FAILED", f"(logs: {logs.relative_to(REPO)})")


if __name__ == "__main__":
    sys.exit(main())
