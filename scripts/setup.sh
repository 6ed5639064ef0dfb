#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (as root, or with sudo), into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
# The report test opens the HTML report in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# torch first, pinned: the CPU build of 2.13.0 (an unpinned torch would pull a multi-GB CUDA build).
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[spark,connect,test,report,delta,iceberg,text,image,cnn${EXTRAS:+,$EXTRAS}]"
# A class-data-sharing archive of the classes a select run loads, once per .venv: a fresh
# spark-sensitivity process's JVM maps them instead of loading each again (docs/PERFORMANCE.md).
[ -f .venv/share/spark-sensitivity/spark-classes.jsa ] || .venv/bin/python scripts/class_archive.py
