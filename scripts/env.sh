# Sourced by the other scripts: the settings every local Spark run here needs.
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"   # otherwise Spark binds the external interface
export PYSPARK_PYTHON="$PWD/.venv/bin/python"          # executors must run the driver's Python
export PYSPARK_DRIVER_PYTHON="$PWD/.venv/bin/python"
export PATH="$PWD/.venv/bin:$PATH"
