#!/usr/bin/env bash
# Entrypoint of the job's image (deploy/Dockerfile).
#
# Spark on Kubernetes (spark-submit --master k8s://..., or the Spark operator) starts its pods with
# the arguments "driver ..." and "executor ...", and passes the rest in SPARK_* variables; these two
# cases follow the contract of Spark's own image entrypoint. Anything else runs as given
# (spark-submit ..., spark-sensitivity ..., bash).
set -euo pipefail

case "${1:-}" in
  driver)
    shift
    exec /usr/bin/tini -s -- spark-submit \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    classpath="${SPARK_CLASSPATH:-}:${SPARK_HOME}/jars/*"
    if [[ -n "${SPARK_EXTRA_CLASSPATH:-}" ]]; then
      classpath="${classpath}:${SPARK_EXTRA_CLASSPATH}"
    fi
    if [[ -n "${HADOOP_CONF_DIR:-}" ]]; then
      classpath="${HADOOP_CONF_DIR}:${classpath}"
    fi
    classpath="${SPARK_CONF_DIR:-${SPARK_HOME}/conf}:${classpath}:${SPARK_DIST_CLASSPATH:-}:${PWD}"
    # The driver hands the executor's JVM options over as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
    java_opts=()
    for name in "${!SPARK_JAVA_OPT_@}"; do
      java_opts+=("${!name}")
    done
    exec /usr/bin/tini -s -- java "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" -cp "${classpath}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" \
      --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec "$@"
    ;;
esac
