#!/usr/bin/env bash
# The selection job on YARN (Amazon EMR, Google Dataproc, any Hadoop cluster), with spark-submit.
# Run it on the cluster's primary node, or wherever spark-submit and HADOOP_CONF_DIR reach the cluster:
#
#   INPUT=s3://bucket/embeddings OUTPUT=hdfs:///subsets/2026-11-01 bash deploy/submit_yarn.sh [job flags]
#
# Settings (environment): INPUT and OUTPUT (required); K (1000), SAMPLE_SIZE (100000), SEED (7);
# DEPLOY_MODE (cluster: the driver runs in YARN too); EXECUTOR_CORES (4), EXECUTOR_MEMORY (8g);
# PYTHON_ENV: a packed Python environment (venv-pack or conda-pack .tar.gz) with numpy, pyarrow and
# pandas, for clusters whose Python lacks them; PRINT_ONLY=1 prints the command instead of running it.
# Flags after the script's name go to the job (e.g. --drop-vector --format json).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${INPUT:?set INPUT to the table of embeddings (a path, or a table name with --format table)}"
: "${OUTPUT:?set OUTPUT to the output folder}"
deploy_mode="${DEPLOY_MODE:-cluster}"

# The package travels with the job as a zip on the driver's and the executors' PYTHONPATH.
build="$(mktemp -d)"
trap 'rm -rf "${build}"' EXIT
python3 - "${repo}" "${build}/spark_sensitivity.zip" <<'PY'
import sys
import zipfile
from pathlib import Path

repo, dest = Path(sys.argv[1]), sys.argv[2]
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
    for path in sorted((repo / "spark_sensitivity").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            archive.write(path, path.relative_to(repo))
PY

cmd=(
  spark-submit
  --master yarn
  --deploy-mode "${deploy_mode}"
  --name spark-sensitivity-select
  --executor-cores "${EXECUTOR_CORES:-4}"
  --executor-memory "${EXECUTOR_MEMORY:-8g}"
  --py-files "${build}/spark_sensitivity.zip"
)
if [[ -n "${PYTHON_ENV:-}" ]]; then
  # YARN unpacks the archive as ./environment in every container, the driver's too in cluster mode.
  cmd+=(--archives "${PYTHON_ENV}#environment" --conf spark.pyspark.python=./environment/bin/python)
  if [[ "${deploy_mode}" == client ]]; then
    cmd+=(--conf spark.pyspark.driver.python=python3)
  fi
fi
cmd+=(
  "${repo}/jobs/select_subset.py"
  --input "${INPUT}"
  --output "${OUTPUT}"
  --k "${K:-1000}"
  --sample-size "${SAMPLE_SIZE:-100000}"
  --seed "${SEED:-7}"
  "$@"
)

if [[ "${PRINT_ONLY:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"
  printf '\n'
else
  "${cmd[@]}"
fi
