"""deploy/airflow_dag.py under real Airflow 3 against a real standalone Spark cluster on 127.0.0.1.

Feeds deploy/README.md, section "Run under real Airflow" (the tables of what the runs showed). An
integration test: marked ``integration``, which the default test run leaves out (pyproject.toml's
``addopts``); it installs Airflow and takes 20 to 30 minutes. Run it on purpose, from the repository
root with the project's environment (scripts/env.sh); ``-s`` shows each check as it happens:

    python -m pytest -m integration -s tests/integration/test_airflow.py                 # both parts
    python -m pytest -m integration -s tests/integration/test_airflow.py -k curation     # embed -> dedup -> Iceberg only
    python -m pytest -m integration -s tests/integration/test_airflow.py -k select_days  # the select days only

What it does, all under runs/airflow/ (ignored by git):

1. A virtual environment of its own, runs/airflow/venv, with apache-airflow and
   apache-airflow-providers-apache-spark from the package registry (pinned below: Airflow's
   constraint files live on GitHub, which a machine with only the registry cannot reach). The tasks
   run the spark-submit they find on PATH: this project's pyspark.
2. A fresh AIRFLOW_HOME, ``airflow db migrate``, the DAG file copied unchanged into the DAGs folder;
   its paths come from SPARK_SENSITIVITY_* environment variables, the rest from ``-c`` (DAG params).
3. A standalone Spark cluster (a master and two workers, tests/cluster.py) and the ``spark_default``
   connection to it; the package zip the DAG ships with --py-files; executors and driver run a Python
   without the package installed, so it can only come from the zip. Steps 1 to 3 are the
   module-scoped fixture ``airflow``, shared by the two parts.
4. Part ``select`` (:func:`test_select_days`): date-partitioned embeddings (Gaussian blobs) for three
   consecutive dates, then ``airflow dags test``: each date once (the embed task skipped); one date
   again (a retry: identical ids, counts and weights); a backfill of a date that already has output,
   after its input partition was rewritten (the output is replaced whole); a run whose input
   partition is missing (the task fails, the job's one-line error is in the task log, and every
   output and input is byte for byte as before).
5. Part ``curation`` (:func:`test_curation_days`): date-partitioned raw texts with near-duplicates
   for two dates, and a run conf that turns the embed task on (the default text model,
   all-MiniLM-L6-v2) and gives the select job deploy/select_config.yaml (its /data/ paths moved into
   the run folder): strategy auto, --dedup-eps 0.05, output to an Iceberg table in a SQLite catalog
   that does not exist before the first day. Each day's embeddings, duplicates, subset and Iceberg
   snapshot are checked, and the table is read back with pyiceberg under the catalog's name.

Each part also checks that every spark-submit it made ran as an application of the cluster. A check
that fails does not stop its part: the part's test fails at its end, naming every failed check. The
fixture prints a summary (also written to runs/airflow/run/summary.json) when the module's tests are
done; the Spark cluster and every process it started are stopped then, also on failure or Ctrl-C;
the run folder (logs, data, AIRFLOW_HOME) stays for inspection until the next run replaces it.

``cluster`` is tests/cluster.py, imported as the other tests import it and ``conftest``: tests/ has
no ``__init__.py``, and pytest (its default ``prepend`` import mode) puts tests/, the folder of
tests/conftest.py, on the module path before it collects anything under it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyspark
import pytest
from cluster import StandaloneCluster, package_zip, python_without_package

from spark_sensitivity.io.datasets import write_gaussian_mixture

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

AIRFLOW_VERSION = "3.3.2"
PROVIDER_VERSION = "6.3.4"
DAG_ID = "spark_sensitivity_select"
DATES = ("2026-11-01", "2026-11-02", "2026-11-03")
CONF = {"k": 8, "sample_size": 500}  # DAG params given per run; the rest from the environment
ROWS, DIM, BLOBS = 4000, 16, 6
RUN_TIMEOUT = 900  # seconds for one `airflow dags test`
TEXT_DATES = ("2026-11-04", "2026-11-05")
TEXT_ROWS, DUPLICATE_SHARE = 2000, 0.1
# The curation day's run conf (with the paths added in curation_days); the rest from the config file.
CURATION_CONF = {
    "embed": True,
    "sample_size": 300,
    "embed_args": ["--embedder", "sentence-transformers", "--text-col", "text", "--keep-col", "label"],
    "args": ["--run-id", "curation-{ds}"],
}
TOPICS = {
    "weather": "rain storm cloud wind forecast sunny cold warm snow humid breeze thunder",
    "sports": "match goal team player score coach league season referee stadium tournament win",
    "cooking": "recipe oven flour butter garlic simmer roast sauce onion pepper bake dough",
    "finance": "market stock bond interest rate inflation budget invest profit loan bank tax",
    "travel": "flight hotel passport beach museum train ticket luggage tour island map city",
    "health": "doctor sleep exercise diet vitamin heart clinic fever therapy muscle walk water",
}

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
        pytest.fail(f"installing Airflow failed: {detail}", pytrace=False)
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


def text_corpus(folder: Path, n: int, seed: int) -> list[tuple[int, int]]:
    """Short labelled texts in six topics, a tenth of them near-copies of another row (changed case
    or punctuation); returns the (copy, source) id pairs."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    labels = rng.integers(len(topics), size=n)
    texts = []
    for label in labels:
        words = rng.choice(TOPICS[topics[label]].split(), size=rng.integers(8, 14))
        texts.append(" ".join(words) + rng.choice([".", "!", "?"]))
    copies = rng.choice(n, size=int(n * DUPLICATE_SHARE), replace=False)
    originals = np.setdiff1d(np.arange(n), copies)
    pairs = []
    for i in copies:
        source = int(rng.choice(originals))
        pairs.append((int(i), source))
        text = texts[source]
        texts[i] = [text.upper(), text.rstrip(".!?") + " !", text.capitalize()][int(rng.integers(3))]
        labels[i] = labels[source]
    folder.mkdir(parents=True)
    table = pa.table({"id": np.arange(n, dtype=np.int64), "text": texts, "label": labels.astype(np.int32)})
    pq.write_table(table, folder / "part-00000.parquet")
    return pairs


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


class Run:
    """The run folder, the environment of every Airflow command, and how to call them."""

    def __init__(self, airflow: Path, zip_path: Path, python: Path):
        self.airflow = airflow
        self.home, self.dags, self.data, self.logs = (
            ROOT / name for name in ("airflow-home", "dags", "data", "logs")
        )
        for folder in (self.home, self.dags, self.data, self.logs):
            folder.mkdir(parents=True)
        self.embeddings, self.subsets = self.data / "embeddings", self.data / "subsets"
        shutil.copy(
            REPO / "deploy" / "airflow_dag.py", self.dags / "airflow_dag.py"
        )  # unchanged, as users do
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            PATH=f"{Path(pyspark.__file__).parent / 'bin'}{os.pathsep}{env['PATH']}",  # spark-submit
            SPARK_LOCAL_IP="127.0.0.1",
            PYSPARK_PYTHON=str(python),
            PYSPARK_DRIVER_PYTHON=str(python),
            SPARK_SENSITIVITY_INPUT=f"{self.embeddings}/date={{ds}}",
            SPARK_SENSITIVITY_OUTPUT=f"{self.subsets}/date={{ds}}",
            SPARK_SENSITIVITY_JOB_FILE=str(REPO / "jobs" / "select_subset.py"),
            SPARK_SENSITIVITY_EMBED_JOB_FILE=str(REPO / "jobs" / "embed.py"),
            SPARK_SENSITIVITY_PY_FILES=str(zip_path),
            SPARK_SENSITIVITY_SHUFFLE_PARTITIONS="4",
            SPARK_SENSITIVITY_RETRIES="0",
        )
        self.env = env

    def airflow_cli(self, name: str, *args: str, timeout: float = 300) -> tuple[int, float, str]:
        return run([str(self.airflow), *args], self.logs / f"{name}.log", self.env, timeout)

    def dag_test(self, name: str, date: str, conf: dict | None = None) -> tuple[int, float, str]:
        conf = json.dumps(CONF if conf is None else conf)
        return self.airflow_cli(name, "dags", "test", DAG_ID, date, "-c", conf, timeout=RUN_TIMEOUT)


def select_days(run: Run, checks: Checks) -> int:
    """Part ``select``: the DAG's default shape (no embed task); returns the Spark applications run."""
    for i, date in enumerate(DATES):
        write_gaussian_mixture(
            run.embeddings / f"date={date}", n=ROWS + 100 * i, dim=DIM, clusters=BLOBS, seed=i
        )
    rows = {date: ROWS + 100 * i for i, date in enumerate(DATES)}

    # 1. Three consecutive logical dates.
    first: dict[str, list] = {}
    for date in DATES:
        code, seconds, log = run.dag_test(f"run-{date}", date)
        ok = code == 0 and "DagRun Finished" in log and "state=success" in log
        ok = ok and ran(log, ("plan", "select_subset"))  # embed skipped
        checks.step(f"dags test {date}", ok, f"exit {code}; tasks {task_runs(log)}", seconds)
        ok, detail = published(run.subsets / f"date={date}", run.embeddings / f"date={date}", rows[date])
        checks.step(f"output {date} published whole", ok, detail)
        first[date] = subset_of(run.subsets / f"date={date}") if ok else []
    entries = sorted(path.name for path in run.subsets.iterdir())
    checks.step("one folder per date, nothing else", entries == [f"date={d}" for d in DATES], str(entries))

    # 2. A retry of one date: a new output, the identical subset.
    date = DATES[1]
    manifest_before = (run.subsets / f"date={date}" / "manifest.json").read_text()
    code, seconds, log = run.dag_test(f"retry-{date}", date)
    checks.step(f"retry {date}", code == 0 and "state=success" in log, f"exit {code}", seconds)
    again = subset_of(run.subsets / f"date={date}")
    rewritten = (run.subsets / f"date={date}" / "manifest.json").read_text() != manifest_before
    same = again == first[date] and bool(again)
    checks.step(
        f"retry {date} gives the identical subset",
        same and rewritten,
        f"{len(again)} rows; ids, counts and weights {'equal' if same else 'DIFFER'}; "
        f"output {'republished (new manifest)' if rewritten else 'NOT rewritten'}",
    )

    # 3. A backfill of a date that has output, after its input partition was rewritten.
    date = DATES[0]
    old_files = set(checksums(run.subsets / f"date={date}"))
    shutil.rmtree(run.embeddings / f"date={date}")
    rows[date] = ROWS + 1000
    write_gaussian_mixture(run.embeddings / f"date={date}", n=rows[date], dim=DIM, clusters=BLOBS, seed=99)
    others = {d: checksums(run.subsets / f"date={d}") for d in DATES if d != date}
    code, seconds, log = run.dag_test(f"backfill-{date}", date)
    checks.step(f"backfill {date}", code == 0 and "state=success" in log, f"exit {code}", seconds)
    ok, detail = published(run.subsets / f"date={date}", run.embeddings / f"date={date}", rows[date])
    new_files = set(checksums(run.subsets / f"date={date}"))
    stale = sorted(f for f in old_files & new_files if f.endswith(".parquet"))
    checks.step(
        f"backfill {date} replaced its output whole",
        ok and not stale,
        detail + f"; old part files left: {len(stale)}",
    )
    untouched = all(checksums(run.subsets / f"date={d}") == sums for d, sums in others.items())
    checks.step("backfill left the other dates untouched", untouched, "sha256 of every file")

    # 4. A failed run: the input partition of a date with output is missing.
    date = DATES[2]
    aside = run.data / "aside"
    shutil.move(run.embeddings / f"date={date}", aside)
    before = checksums(run.data)
    code, seconds, log = run.dag_test(f"missing-{date}", date)
    errors = [line for line in log.splitlines() if "] error: " in line or line.startswith("error: ")]
    failed = code != 0 and "state=failed" in log and "Task failed with exception" in log
    checks.step(f"missing input {date}: the task fails", failed, f"exit {code}", seconds)
    checks.step(
        "the job's one-line error is in the task log",
        bool(errors) and f"date={date}" in errors[0],
        errors[0].split("error: ", 1)[1].split(" [airflow.task")[0] if errors else "no 'error:' line",
    )
    checks.step(
        "the failed run changed nothing", checksums(run.data) == before, f"sha256 of {len(before)} files"
    )
    shutil.move(aside, run.embeddings / f"date={date}")

    return 6


def task_runs(log: str) -> dict[str, str]:
    """Each task a `dags test` ran, as "state (seconds)" (a task the plan skipped never starts)."""
    runs, task, started = {}, None, None
    for line in log.splitlines():
        stamp = line[:27]
        if match := re.search(r"\[DAG TEST\] starting task_id=(\w+)", line):
            task, started = match[1], datetime.fromisoformat(stamp)
        elif task and (match := re.search(r"new_state=(\w+)", line)):
            seconds = (datetime.fromisoformat(stamp) - started).total_seconds()
            runs[task] = f"{match[1]} ({seconds:.0f} s)"
    return runs


def ran(log: str, tasks: tuple[str, ...]) -> bool:
    """Exactly these tasks ran, each to success."""
    runs = task_runs(log)
    return sorted(runs) == sorted(tasks) and all(state.startswith("success") for state in runs.values())


def curation_days(run: Run, checks: Checks) -> int:
    """Part ``curation``: embed -> dedup + select (strategy auto) -> an Iceberg table, two days, with
    the shipped config file; returns the Spark applications run."""
    import yaml
    from pyiceberg.catalog.sql import SqlCatalog

    raw, embedded, curated = run.data / "raw", run.data / "embeddings-text", run.data / "curated"
    config = ROOT / "select_config.yaml"
    # The shipped example, its /data/ moved into this run's folder; the catalog does not exist yet.
    config.write_text((REPO / "deploy" / "select_config.yaml").read_text().replace("/data/", f"{run.data}/"))
    settings = yaml.safe_load(config.read_text())
    conf = {
        **CURATION_CONF,
        "raw_input": f"{raw}/date={{ds}}",
        "input": f"{embedded}/date={{ds}}",
        "output": f"{curated}/date={{ds}}",
        "config": str(config),
    }
    checks.step("the run conf", True, json.dumps(conf))
    catalog_options = dict(settings["catalog-option"])
    table_name = settings["output-table"]
    snapshots = []
    for i, date in enumerate(TEXT_DATES):
        pairs = text_corpus(raw / f"date={date}", TEXT_ROWS + 100 * i, seed=20 + i)
        code, seconds, log = run.dag_test(f"curation-{date}", date, conf)
        ok = code == 0 and "state=success" in log and ran(log, ("plan", "embed", "select_subset"))
        checks.step(f"curation dags test {date}", ok, f"exit {code}; tasks {task_runs(log)}", seconds)
        checks.step(*embeddings_check(embedded / f"date={date}", TEXT_ROWS + 100 * i))
        day = (curated / f"date={date}", TEXT_ROWS + 100 * i, pairs, embedded / f"date={date}")
        checks.step(*curated_check(*day, float(settings["dedup-eps"])))
        ok, detail, snapshot = iceberg_check(catalog_options, table_name, curated / f"date={date}", date)
        checks.step(f"Iceberg table {table_name} after {date}", ok, detail)
        snapshots.append(snapshot)
    ok = len(set(snapshots)) == len(TEXT_DATES) and None not in snapshots
    name, properties = catalog_options["name"], {k: v for k, v in catalog_options.items() if k != "name"}
    history = SqlCatalog(name, **properties).load_table(table_name).snapshots() if ok else []
    checks.step(
        "one snapshot per day in the table's history",
        ok and [s.snapshot_id for s in history] == snapshots,
        f"snapshots {[s.snapshot_id for s in history]}",
    )
    return 2 * len(TEXT_DATES)


def embeddings_check(folder: Path, rows: int) -> tuple[str, bool, str]:
    if not (folder / "_PUBLISHED").is_file():
        return f"embed output {folder.name}", False, "no _PUBLISHED marker"
    table = pq.read_table(folder)
    dims = {len(v) for v in table.column("embedding").to_pylist()[:50]}
    ok = table.num_rows == rows and dims == {384} and "label" in table.column_names
    return (
        f"embed output {folder.name}",
        ok,
        f"{table.num_rows} rows, dimension {dims}, columns {table.column_names}",
    )


def curated_check(
    output: Path, rows: int, pairs: list[tuple[int, int]], embeddings: Path, eps: float
) -> tuple[str, bool, str]:
    """The select output: the near-copies written whose cosine similarity is at least 1 - eps (the
    others are not duplicates by the rule) found, the copy or its source removed; the kept rows
    counted in the manifest; exactly m draws."""
    name = f"dedup + select output {output.name}"
    if not (output / "_PUBLISHED").is_file():
        return name, False, "no _PUBLISHED marker"
    manifest = json.loads((output / "manifest.json").read_text())
    removed = set(pq.read_table(output / "duplicates", columns=["id"]).column("id").to_pylist())
    table = pq.read_table(embeddings, columns=["id", "embedding"]).to_pydict()
    vectors = dict(zip(table["id"], (np.asarray(v) for v in table["embedding"]), strict=True))
    close = [(c, s) for c, s in pairs if float(vectors[c] @ vectors[s]) >= 1 - eps]  # unit vectors
    found = sum(c in removed or s in removed for c, s in close)
    draws = sum(pq.read_table(output / "subset", columns=["count"]).column("count").to_pylist())
    strategy = manifest.get("strategy_used") or manifest.get("parameters", {}).get("strategy")
    ok = (
        found >= 0.95 * len(close)
        and draws == CURATION_CONF["sample_size"]
        and manifest["n"] == rows - len(removed)
    )
    detail = (
        f"{len(removed)} rows removed as near-duplicates; of the {len(pairs)} near-copies written, "
        f"{len(close)} have cosine >= {1 - eps:g} and {found} of those were found; n = {manifest['n']} "
        f"kept, {draws} draws, strategy {strategy} with k = {manifest.get('k_used', manifest.get('k'))}; "
        f"timings {manifest.get('timings')}"
    )
    return name, ok, detail


def iceberg_check(options: dict, name: str, output: Path, date: str) -> tuple[bool, str, int | None]:
    """The table read back under the catalog's name holds the day's subset, committed by its run."""
    from pyiceberg.catalog.sql import SqlCatalog

    options = dict(options)
    if not Path(options["uri"].removeprefix("sqlite:///")).is_file():
        return False, f"no catalog at {options['uri']}", None
    catalog = SqlCatalog(options.pop("name"), **options)
    table = catalog.load_table(name)
    rows = table.scan().to_arrow()
    folder = pq.read_table(output / "subset", columns=["id", "count"])
    snapshot = table.current_snapshot()
    run_id = snapshot.summary["spark-sensitivity.run-id"]
    ok = sorted(rows["id"].to_pylist()) == sorted(folder["id"].to_pylist()) and run_id == f"curation-{date}"
    detail = (
        f"catalog {catalog.name!r}: {rows.num_rows} rows, {sum(rows['count'].to_pylist())} draws, "
        f"columns {rows.column_names}, snapshot {snapshot.snapshot_id} of run {run_id}"
    )
    return ok, detail, snapshot.snapshot_id


@dataclass
class Setup:
    """What the parts share: the Airflow commands, the cluster, and every check so far."""

    run: Run
    cluster: StandaloneCluster
    checks: Checks

    def completed_apps(self) -> list[str]:
        return [app["id"] for app in (self.cluster.master_state() or {}).get("completedapps", [])]


def failures_since(checks: Checks, start: int) -> list[str]:
    """The checks recorded since ``start`` that failed ("no check ran" when none was recorded)."""
    rows = checks.rows[start:]
    return [f"{row['step']}: {row['detail']}" for row in rows if not row["ok"]] or (
        [] if rows else ["no check ran"]
    )


def set_up_succeeded(checks: Checks) -> None:
    """Stops the module's tests before they start when a set-up check failed."""
    problems = failures_since(checks, 0)
    if problems:
        pytest.fail("set-up: " + "; ".join(problems), pytrace=False)


@contextlib.contextmanager
def reported(checks: Checks) -> Iterator[None]:
    """An unexpected error is recorded as a failed check (for the summary), then raised."""
    try:
        yield
    except Exception as error:
        checks.step("unexpected error", False, f"{type(error).__name__}: {error}"[:3000])
        raise


def applications_check(setup: Setup, before: list[str], expected: int) -> None:
    """Every spark-submit of a part ran as an application of the standalone cluster, with executors on
    its workers. (The job names its application itself, so the operator's `name` does not show here.)
    The master files an application as completed a moment after its driver stops: waits up to 30 s."""
    deadline = time.monotonic() + 30
    while True:
        apps = [app for app in setup.completed_apps() if app not in before]
        if len(apps) >= expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    executed = {path.name for path in (ROOT / "spark").glob("worker-*/app-*")}
    with_executors = sum(app in executed for app in apps)
    setup.checks.step(
        "each spark-submit ran an application on the cluster",
        len(apps) == expected and with_executors >= expected - 1,
        f"{len(apps)} completed applications ({expected} expected), {with_executors} with executors on the workers",
    )


def summarize(checks: Checks, logs: Path) -> None:
    (ROOT / "summary.json").write_text(json.dumps(checks.rows, indent=1))
    print("\nsummary:")
    for row in checks.rows:
        took = f"{row['seconds']:>6.0f} s" if "seconds" in row else " " * 8
        print(f"  {'ok  ' if row['ok'] else 'FAIL'} {took}  {row['step']}: {row['detail']}")
    print("PASSED" if checks.passed else "FAILED", f"(logs: {logs.relative_to(REPO)})")


@pytest.fixture(scope="module")
def airflow() -> Iterator[Setup]:
    """Airflow installed, a fresh run folder and AIRFLOW_HOME, the standalone cluster started and the
    ``spark_default`` connection to it, the DAG file imported; stopped and summarised at the end."""
    checks = Checks()
    BASE.mkdir(parents=True, exist_ok=True)
    airflow_bin = install_airflow(checks)
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    run_ = Run(
        airflow_bin,
        package_zip(ROOT / "spark_sensitivity.zip"),
        python_without_package(ROOT / "cluster-python"),
    )
    cluster = StandaloneCluster(ROOT / "spark", workers=2, cores=1, memory="1g")
    try:
        with reported(checks):
            code, seconds, log = run_.airflow_cli("db-migrate", "db", "migrate")
            checks.step("airflow db migrate", code == 0, f"exit {code}", seconds)
            set_up_succeeded(checks)
            start = time.monotonic()
            cluster.start()
            checks.step(
                "standalone Spark cluster", True, f"{cluster.url}, 2 workers", time.monotonic() - start
            )
            code, seconds, log = run_.airflow_cli(
                "connection", "connections", "add", "spark_default", "--conn-uri", cluster.url
            )
            checks.step("connection spark_default", code == 0, f"{cluster.url}, exit {code}", seconds)
            code, seconds, log = run_.airflow_cli("dags-list", "dags", "list-import-errors")
            checks.step(
                "the DAG file imports", code == 0 and "airflow_dag.py" not in log, f"exit {code}", seconds
            )
        set_up_succeeded(checks)
        yield Setup(run_, cluster, checks)
    finally:
        cluster.stop()
        summarize(checks, run_.logs)


def test_select_days(airflow: Setup) -> None:
    """Part ``select``: three dates, a retry, a backfill, a failing run (no embed task)."""
    start, before = len(airflow.checks.rows), airflow.completed_apps()
    with reported(airflow.checks):
        applications_check(airflow, before, select_days(airflow.run, airflow.checks))
    problems = failures_since(airflow.checks, start)
    assert not problems, "part select: " + "; ".join(problems)


def test_curation_days(airflow: Setup) -> None:
    """Part ``curation``: embed -> dedup + select (auto) -> an Iceberg table, two days."""
    start, before = len(airflow.checks.rows), airflow.completed_apps()
    with reported(airflow.checks):
        applications_check(airflow, before, curation_days(airflow.run, airflow.checks))
    problems = failures_since(airflow.checks, start)
    assert not problems, "part curation: " + "; ".join(problems)
