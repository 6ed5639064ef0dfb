"""Airflow DAG: the selection job once a day, with SparkSubmitOperator.

Needs Airflow 3 with apache-airflow-providers-apache-spark, and a Spark connection (``spark_default``)
whose host is the cluster's master (yarn, spark://host:7077 or k8s://https://host). The Airflow
worker needs spark-submit on its PATH, the job file and the package zip (see deploy/README.md); the
cluster's Python needs numpy, pyarrow and pandas.

Copy this file into the DAGs folder unchanged; everything that differs between installations is a
parameter:

- Each DAG param's default comes from an environment variable of the Airflow processes (the
  dag processor reads it when it parses this file), else the value shown. ``SPARK_SENSITIVITY_INPUT``
  sets ``input``, ``SPARK_SENSITIVITY_SAMPLE_SIZE`` sets ``sample_size``, and so on. Scheduled runs use
  these defaults; a manual run or ``airflow dags test -c '{"k": 500}'`` can override any of them.
- In ``input`` and ``output``, ``{ds}`` is replaced with the run's logical date (YYYY-MM-DD).
- The connection id, and the task's retries, are read from ``SPARK_SENSITIVITY_CONN_ID`` and
  ``SPARK_SENSITIVITY_RETRIES`` (the operator does not template them).

Each run selects from its logical date's partition of embeddings into that date's output folder;
--overwrite makes a rerun or a backfill replace that date's output whole (only once the new output is
complete), and the fixed seed makes it select the same rows.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param


def setting(name: str, default):
    """The environment variable SPARK_SENSITIVITY_<NAME>, as the type of ``default``; else ``default``."""
    value = os.environ.get(f"SPARK_SENSITIVITY_{name}")
    return default if value in (None, "") else type(default)(value)


def for_date(param: str) -> str:
    """A template: the param's value with {ds} replaced by the logical date."""
    return "{{ params." + param + " | replace('{ds}', ds) }}"


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
            description="The day's input (--input); {ds} is the logical date.",
        ),
        "output": Param(
            setting("OUTPUT", "hdfs:///data/subsets/date={ds}"),
            type="string",
            description="The day's output folder (--output, replaced with --overwrite); {ds} is the logical date.",
        ),
        "k": Param(setting("K", 1000), type="integer", minimum=1, description="Clusters (--k)."),
        "sample_size": Param(
            setting("SAMPLE_SIZE", 100000), type="integer", minimum=1, description="Draws (--sample-size)."
        ),
        "seed": Param(
            setting("SEED", 7), type="integer", description="Seed (--seed): same seed, same subset."
        ),
        "init_mode": Param(
            setting("INIT_MODE", "random"), enum=["random", "k-means||"], description="--init-mode"
        ),
        "job_file": Param(
            setting("JOB_FILE", "/opt/spark-sensitivity/jobs/select_subset.py"),
            type="string",
            description="jobs/select_subset.py where the Airflow worker sees it.",
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
    SparkSubmitOperator(
        task_id="select_subset",
        conn_id=setting("CONN_ID", "spark_default"),
        application="{{ params.job_file }}",
        py_files="{{ params.py_files }}",
        name="spark-sensitivity-select-{{ ds_nodash }}",
        conf={"spark.sql.shuffle.partitions": "{{ params.shuffle_partitions }}"},
        application_args=[
            "--input",
            for_date("input"),
            "--output",
            for_date("output"),
            "--overwrite",
            "--k",
            "{{ params.k }}",
            "--init-mode",
            "{{ params.init_mode }}",
            "--sample-size",
            "{{ params.sample_size }}",
            "--seed",
            "{{ params.seed }}",
        ],
        retries=setting("RETRIES", 1),
        retry_delay=pendulum.duration(minutes=10),
    )
