#!/usr/bin/env bash
# Submit a freshlake batch job with spark-submit: to YARN (the default), or any master.
#
#   deploy/spark-submit.sh JOB [job arguments...]      e.g. JOB=ingest, build-training-set
#
# Environment (defaults are for YARN cluster mode):
#   MASTER        yarn | spark://host:port | local[*]              (default: yarn)
#   DEPLOY_MODE   cluster | client                                 (default: cluster)
#   CONFIG        freshlake config file shipped with the job       (default: conf/cluster.yaml)
#   PACKAGES      Maven coordinates of the Delta and Kafka jars; empty to skip (no Maven access)
#   PYTHON_ENV    a venv-pack archive of the project's environment (YARN: executors use it)
#   SPARK_SUBMIT  the spark-submit to use                          (default: spark-submit on PATH)
#   PYTHON        Python 3.11+ that stages the code zip              (default: python3)
#   EXTRA_ARGS    more spark-submit flags, e.g. "--num-executors 20 --executor-memory 8g"
set -euo pipefail

job=${1:?usage: deploy/spark-submit.sh JOB [job arguments...]}
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
script="$repo/jobs/${job//-/_}.py"
[ -f "$script" ] || { echo "no such job: $script" >&2; exit 2; }

MASTER=${MASTER:-yarn}
DEPLOY_MODE=${DEPLOY_MODE:-cluster}
CONFIG=${CONFIG:-$repo/conf/cluster.yaml}
PACKAGES=${PACKAGES-io.delta:delta-spark_2.13:4.0.0,org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.0}
SPARK_SUBMIT=${SPARK_SUBMIT:-spark-submit}

# The project's code travels as one zip on the executors' PYTHONPATH.
build="$repo/build/deploy"
mkdir -p "$build"
# The zip holds the installed layout, as the wheel does: freshlake/ with features/, jobs/,
# streaming/ and training/ inside it (pyproject.toml's package-dir), so executors import
# freshlake.features etc.
"${PYTHON:-python3}" "$repo/deploy/stage_layout.py" "$build/freshlake.zip"

args=(--master "$MASTER" --deploy-mode "$DEPLOY_MODE" --name "freshlake-$job"
      --py-files "$build/freshlake.zip" --files "$CONFIG"
      --conf spark.sql.session.timeZone=UTC)
[ -n "$PACKAGES" ] && args+=(--packages "$PACKAGES")
if [ -n "${PYTHON_ENV:-}" ]; then
  args+=(--archives "$PYTHON_ENV#environment"
         --conf spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python
         --conf spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python)
fi
# In cluster mode the driver runs on the cluster and finds the config beside it (--files).
config_arg=$CONFIG
[ "$DEPLOY_MODE" = cluster ] && config_arg=$(basename "$CONFIG")

# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
exec "$SPARK_SUBMIT" "${args[@]}" ${EXTRA_ARGS:-} "$script" --config "$config_arg" "$@"
