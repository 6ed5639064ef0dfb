"""Airflow DAG: a curation day once a day (embed, then deduplicate and select), with SparkSubmitOperator.

Needs Airflow 3 with apache-airflow-providers-apache-spark, and a Spark connection (``spark_default``)
whose host is the cluster's master (yarn, spark://host:7077 or k8s://https://host). The Airflow
worker needs spark-submit on its PATH, the job files and the package zip (see deploy/README.md); the
cluster's Python needs numpy, pyarrow and pandas (and the ``text`` extra to embed text).

Copy this file into the DAGs folder unchanged; everything that differs between installations or runs
is a parameter:

- Each DAG param's default comes from an environment variable of the Airflow processes (the
  dag processor reads it when it parses this file), else the value shown. ``SPARK_SENSITIVITY_INPUT``
  sets ``input``, ``SPARK_SENSITIVITY_SAMPLE_SIZE`` sets ``sample_size``, and so on (a list param
  from a shell-quoted string). Scheduled runs use these defaults; a manual run or
  ``airflow dags test -c '{"k": 500}'`` can override any of them.
- ``config`` names a YAML or JSON file of the select command's settings (``--config``: strategy,
  dedup, output format, Iceberg table and catalog...), read by the job's driver; ``args`` adds any
  select flags, ``embed_args`` any embed flags. ``k``, ``sample_size``, ``seed`` and ``init_mode``
  are passed when set (flags override the config file); when null (the default) they come from the
  config file, or without one are 1000, 100000, 7 and random.
- With ``embed`` true the run first embeds ``raw_input`` into ``input`` (jobs/embed.py), then
  selects from ``input``; otherwise the embed task is skipped.
- ``{ds}`` in any path or flag is replaced with the run's logical date (YYYY-MM-DD).
- The connection id, and the tasks' retries, are read from ``SPARK_SENSITIVITY_CONN_ID`` and
  ``SPARK_SENSITIVITY_RETRIES`` (the operator does not template them).

Each run writes its logical date's output with --overwrite (the embeddings too), so a rerun or a
backfill replaces that date's output whole (only once the new output is complete), and a fixed seed
makes it select the same rows.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param, task

# Passed when set; when null, the config file's value, or without one these (the flag's value).
FALLBACKS = {"k": 1000, "sample_size": 100000, "seed": 7, "init_mode": "random"}
EMBED_TASK, SELECT_TASK = "embed", "select_subset"


def setting(name: str, default):
    """The environment variable SPARK_SENSITIVITY_<NAME>, as the type of ``default`` (a list from a
    shell-quoted string); else ``default``."""
    value = os.environ.get(f"SPARK_SENSITIVITY_{name}")
    if value in (None, ""):
        return default
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(default, list):
        return shlex.split(value)
    return value if default is None else type(default)(value)


def optional_int(name: str, minimum: int, description: str) -> Param:
    """A param that may be null (then not passed), its default from SPARK_SENSITIVITY_<NAME>."""
    value = setting(name.upper(), None)
    return Param(
        None if value is None else int(value),
        type=["null", "integer"],
        minimum=minimum,
        description=f"{description}; null: the config file's, else {FALLBACKS[name]}.",
    )


def job_args(params: Mapping[str, Any], ds: str) -> dict[str, list[str] | None]:
    """The embed job's arguments (None when ``embed`` is off) and the select job's, for one date."""

    def day(value: Any) -> str:
        return str(value).replace("{ds}", ds)

    select = ["--input", day(params["input"]), "--output", day(params["output"]), "--overwrite"]
    if params["config"]:
        select += ["--config", day(params["config"])]
    for name, fallback in FALLBACKS.items():
        value = fallback if params[name] is None and not params["config"] else params[name]
        if value is not None:
            select += ["--" + name.replace("_", "-"), str(value)]
    select += [day(arg) for arg in params["args"]]
    if not params["embed"]:
        return {"embed": None, "select": select}
    embed = ["--input", day(params["raw_input"]), "--output", day(params["input"]), "--overwrite"]
    return {"embed": embed + [day(arg) for arg in params["embed_args"]], "select": select}


with DAG(
    dag_id="spark_sensitivity_select",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["spark-sensitivity"],
    doc_md=__doc__,
    params={
        "input": Param(
            setting("INPUT", "hdfs:///data/embeddings/date={ds}"),
            type="string",
            description="The day's embeddings (select's --input; embed's --output when embed is on).",
        ),
        "output": Param(
            setting("OUTPUT", "hdfs:///data/subsets/date={ds}"),
            type="string",
            description="The day's output folder (--output, replaced with --overwrite).",
        ),
        "config": Param(
            setting("CONFIG", ""),
            type="string",
            description="A YAML or JSON file of select settings (--config), as the driver sees it; empty: none.",
        ),
        "args": Param(
            setting("ARGS", []),
            type="array",
            items={"type": "string"},
            description='More select flags, e.g. ["--strategy", "auto", "--dedup-eps", "0.05"].',
        ),
        "k": optional_int("k", 1, "Clusters (--k)"),
        "sample_size": optional_int("sample_size", 1, "Draws (--sample-size)"),
        "seed": optional_int("seed", 0, "Seed (--seed): same seed, same subset"),
        "init_mode": Param(
            setting("INIT_MODE", None),
            type=["null", "string"],
            enum=[None, "random", "k-means||"],
            description="--init-mode; null: the config file's, else random.",
        ),
        "embed": Param(
            setting("EMBED", False), type="boolean", description="Embed raw_input into input first."
        ),
        "raw_input": Param(
            setting("RAW_INPUT", "hdfs:///data/raw/date={ds}"),
            type="string",
            description="The day's raw rows (embed's --input), used when embed is on.",
        ),
        "embed_args": Param(
            setting("EMBED_ARGS", ["--embedder", "sentence-transformers", "--text-col", "text"]),
            type="array",
            items={"type": "string"},
            description="Embed flags (--embedder, --text-col, --keep-col, ...).",
        ),
        "job_file": Param(
            setting("JOB_FILE", "/opt/spark-sensitivity/jobs/select_subset.py"),
            type="string",
            description="jobs/select_subset.py where the Airflow worker sees it.",
        ),
        "embed_job_file": Param(
            setting("EMBED_JOB_FILE", "/opt/spark-sensitivity/jobs/embed.py"),
            type="string",
            description="jobs/embed.py where the Airflow worker sees it.",
        ),
        "py_files": Param(
            setting("PY_FILES", "/opt/spark-sensitivity/dist/spark_sensitivity.zip"),
            type="string",
            description="The package zip shipped with --py-files.",
        ),
        "shuffle_partitions": Param(
            setting("SHUFFLE_PARTITIONS", 400),
            type="integer",
            minimum=1,
            description="spark.sql.shuffle.partitions",
        ),
    },
):

    @task.branch(task_id="plan")
    def plan(params=None, ds=None, ti=None) -> list[str]:
        """Puts each job's arguments in XCom (keys embed, select); skips the embed task when it is off."""
        args = job_args(params, ds)
        for key, value in args.items():
            ti.xcom_push(key=key, value=value)
        return [SELECT_TASK] if args["embed"] is None else [EMBED_TASK, SELECT_TASK]

    planned = plan()
    submit = {
        "conn_id": setting("CONN_ID", "spark_default"),
        "py_files": "{{ params.py_files }}",
        "conf": {"spark.sql.shuffle.partitions": "{{ params.shuffle_partitions }}"},
        "retries": setting("RETRIES", 1),
        "retry_delay": pendulum.duration(minutes=10),
    }
    embed = SparkSubmitOperator(
        task_id=EMBED_TASK,
        application="{{ params.embed_job_file }}",
        name="spark-sensitivity-embed-{{ ds_nodash }}",
        application_args=planned["embed"],
        **submit,
    )
    select = SparkSubmitOperator(
        task_id=SELECT_TASK,
        application="{{ params.job_file }}",
        name="spark-sensitivity-select-{{ ds_nodash }}",
        application_args=planned["select"],
        # After the embed task, or alone when the plan skipped it.
        trigger_rule="none_failed_min_one_success",
        **submit,
    )
    embed >> select
