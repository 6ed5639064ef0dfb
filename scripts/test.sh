#!/usr/bin/env bash
# Set-up, then lint and the whole test suite (real local Spark and a real standalone cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
CONNECT_TESTS=(tests/test_estimator.py tests/test_parquet_scan.py tests/test_job.py tests/test_lossaware.py tests/test_refresh.py
  tests/test_bad_input.py tests/test_determinism.py tests/test_sampling.py tests/test_progress.py
  tests/test_target.py)
ruff check .
ruff format --check .
python -m pytest -q -p no:cacheprovider tests "$@"
# The core suite a second time over a local Spark Connect server (Databricks serverless, Spark 4 clients),
# unless particular tests were asked for.
if [ $# -eq 0 ]; then
  SPARK_SENSITIVITY_TEST_CONNECT=1 python -m pytest -q -p no:cacheprovider "${CONNECT_TESTS[@]}"
fi
