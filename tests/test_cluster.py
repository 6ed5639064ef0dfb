"""The job on a real Spark standalone cluster (a master and two workers on 127.0.0.1), shipped the way
a user ships it to a cluster: the package as a zip with --py-files.

The driver and the executors run a Python that has the dependencies but not this package (see
``cluster.python_without_package``), so every import of spark_sensitivity, on the driver and in the
executors' Python workers, comes from the shipped zip.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
from cluster import StandaloneCluster, free_port, get_json, package_zip, python_without_package, wait_for

from spark_sensitivity.io.datasets import write_gaussian_mixture

ROWS = 100_000
SAMPLE_SIZE = 2000
JOB_ARGS = ["--k", "12", "--sample-size", str(SAMPLE_SIZE), "--seed", "7", "--max-iter", "5"]
JOB_ARGS += ["--strategy", "sensitivity"]  # the draws this test compares across executors
JOB_ARGS += ["--spark-conf", "spark.ui.showConsoleProgress=false"]  # no progress bars in the logs
# Small shuffles: the cluster has two 1-core executors.
CONF = {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"}
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The input table (100k rows x 16 dims in 8 files), the package zip and the cluster's Python."""
    root = tmp_path_factory.mktemp("shipped")
    table = root / "input"
    write_gaussian_mixture(table, n=ROWS, dim=16, clusters=12, seed=3, rows_per_file=ROWS // 8)
    return table, package_zip(root / "spark_sensitivity.zip"), python_without_package(root / "python")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    standalone = StandaloneCluster(tmp_path_factory.mktemp("standalone"), workers=2, cores=1, memory="1g")
    try:
        yield standalone.start()
    finally:
        standalone.stop()


@pytest.fixture(scope="module")
def undisturbed(cluster, shipped, tmp_path_factory):
    """One run of the job on the healthy cluster: the reference for the fault-tolerance test."""
    table, zipped, python = shipped
    out = tmp_path_factory.mktemp("undisturbed") / "selection"
    cluster.submit(
        "driver-undisturbed", ["--input", str(table), "--output", str(out), *JOB_ARGS], python, zipped, CONF
    )
    code = cluster.finish("driver-undisturbed", TIMEOUT_S)
    assert code == 0, cluster.diagnostics()
    return out


def _selection(out) -> tuple[dict, dict]:
    subset = pq.read_table(out / "subset", columns=["id", "count", "weight"]).to_pydict()
    order = np.argsort(subset["id"])
    rows = {key: np.asarray(values)[order] for key, values in subset.items()}
    return rows, json.loads((out / "manifest.json").read_text())


def test_the_cluster_python_cannot_import_the_package_by_itself(shipped):
    _, zipped, python = shipped
    check = "import numpy, pyarrow, pandas, pyspark\ntry:\n import spark_sensitivity\nexcept ImportError:\n print('absent')"
    # Not from the checkout: python -c looks in its working folder first.
    result = subprocess.run(
        [str(python), "-c", check], capture_output=True, text=True, timeout=60, cwd=zipped.parent
    )
    assert result.stdout.strip() == "absent", result.stderr


def test_spark_submit_to_a_standalone_cluster(cluster, undisturbed):
    rows, manifest = _selection(undisturbed)
    assert rows["count"].sum() == SAMPLE_SIZE
    assert len(np.unique(rows["id"])) == len(rows["id"])
    assert abs(rows["weight"].sum() / ROWS - 1) < 0.1
    assert manifest["n"] == ROWS and manifest["m"] == SAMPLE_SIZE and manifest["k"] == 12
    assert sum(pq.read_table(undisturbed / "clusters")["size"].to_pylist()) == ROWS
    # It ran on the cluster: the master lists the finished application, which used both workers' cores.
    apps = cluster.master_state()["completedapps"]
    ours = [a for a in apps if a["name"] == "spark-sensitivity select" and a["state"] == "FINISHED"]
    assert any(a["cores"] == 2 for a in ours), apps


def test_a_worker_killed_mid_job_changes_nothing(cluster, shipped, undisturbed, tmp_path):
    table, zipped, python = shipped
    out, ui_port = tmp_path / "selection", free_port()
    api = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    cluster.submit(
        "driver-disturbed",
        ["--input", str(table), "--output", str(out), *JOB_ARGS],
        python,
        zipped,
        {**CONF, "spark.ui.port": str(ui_port)},
    )

    def busy_worker() -> tuple[str, str] | None:
        """(worker, executor id) of an executor running a task, once the job is under way (reading
        and counting done, the fit started)."""
        for app in get_json(api) or []:
            jobs = get_json(f"{api}/{app['id']}/jobs") or []
            if sum(job["status"] == "SUCCEEDED" for job in jobs) < 5:
                continue
            for executor in get_json(f"{api}/{app['id']}/executors") or []:
                if executor["id"] != "driver" and executor["activeTasks"] > 0:
                    worker = cluster.worker_of(app["id"], executor["id"])
                    if worker:
                        return worker, executor["id"]
        return None

    worker, executor_id = wait_for(busy_worker, 120, "a busy executor", cluster.diagnostics)
    cluster.kill(worker)  # kill -9 the worker, its executor and that executor's Python workers

    code = cluster.finish("driver-disturbed", TIMEOUT_S)
    assert code == 0, cluster.diagnostics()
    assert cluster.master_state()["aliveworkers"] == 1
    assert f"Lost executor {executor_id}" in cluster.log("driver-disturbed"), cluster.diagnostics()

    got, manifest = _selection(out)
    want, reference = _selection(undisturbed)
    np.testing.assert_array_equal(got["id"], want["id"])
    np.testing.assert_array_equal(got["count"], want["count"])
    np.testing.assert_allclose(got["weight"], want["weight"], rtol=1e-12)
    assert manifest["kmeans_cost"] == pytest.approx(reference["kmeans_cost"], rel=1e-12)


def test_local_mode_gives_the_same_subset_as_the_cluster(spark, shipped, undisturbed, tmp_path):
    from spark_sensitivity.cli import main

    table, _, _ = shipped
    out = tmp_path / "local"
    assert main(["select", "--input", str(table), "--output", str(out), *JOB_ARGS, "--quiet"]) == 0
    local, local_manifest = _selection(out)
    remote, remote_manifest = _selection(undisturbed)
    np.testing.assert_array_equal(local["id"], remote["id"])
    np.testing.assert_array_equal(local["count"], remote["count"])
    np.testing.assert_allclose(local["weight"], remote["weight"], rtol=1e-12)
    assert local_manifest["kmeans_cost"] == pytest.approx(remote_manifest["kmeans_cost"], rel=1e-12)


def test_select_with_dedup_on_the_cluster_equals_local_mode(spark, cluster, shipped, tmp_path):
    """The near-duplicates (and so the subset drawn from the kept rows) do not depend on where the
    job runs: two 1-core executors on the cluster, or local mode."""
    from spark_sensitivity.cli import main

    table, zipped, python = shipped
    args = [*JOB_ARGS, "--k", "48", "--dedup-eps", "0.01"]
    remote = tmp_path / "remote"
    cluster.submit(
        "driver-dedup", ["--input", str(table), "--output", str(remote), *args], python, zipped, CONF
    )
    assert cluster.finish("driver-dedup", TIMEOUT_S) == 0, cluster.diagnostics()
    local = tmp_path / "local"
    assert main(["select", "--input", str(table), "--output", str(local), *args, "--quiet"]) == 0
    found = [pq.read_table(out / "duplicates").sort_by("id").to_pydict() for out in (local, remote)]
    assert len(found[0]["id"]) > 100
    assert found[0] == found[1]
    local_subset, _ = _selection(local)
    remote_subset, _ = _selection(remote)
    np.testing.assert_array_equal(local_subset["id"], remote_subset["id"])
