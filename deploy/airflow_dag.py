"""Airflow DAG: the selection job once a day, with SparkSubmitOperator.

Needs Airflow 3 with apache-airflow-providers-apache-spark, and a Spark connection ``spark_default``
whose host is the cluster's master (yarn, spark://host:7077 or k8s://https://host). The Airflow
worker needs spark-submit, the job file and the package zip (see deploy/README.md); the cluster's
Python needs numpy, pyarrow and pandas.

Each run selects from that day's partition of embeddings into that day's output folder; --overwrite
makes a rerun or a backfill replace its day's output, and the fixed seed makes it select the same rows.
"""

from __future__ import annotations

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG

with DAG(
    dag_id="spark_sensitivity_select",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["spark-sensitivity"],
    doc_md=__doc__,
):
    SparkSubmitOperator(
        task_id="select_subset",
        conn_id="spark_default",
        application="/opt/spark-sensitivity/jobs/select_subset.py",
        py_files="/opt/spark-sensitivity/dist/spark_sensitivity.zip",
        name="spark-sensitivity-select-{{ ds_nodash }}",
        conf={"spark.sql.shuffle.partitions": "400"},
        application_args=[
            "--input",
            "hdfs:///data/embeddings/date={{ ds }}",
            "--output",
            "hdfs:///data/subsets/date={{ ds }}",
            "--overwrite",
            "--k",
            "1000",
            "--init-mode",
            "random",
            "--sample-size",
            "100000",
            "--seed",
            "7",
        ],
        retries=1,
        retry_delay=pendulum.duration(minutes=10),
    )
