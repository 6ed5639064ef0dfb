#!/usr/bin/env bash
# Set-up, then lint and the whole test suite (real local Spark and a real standalone cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
ruff check .
ruff format --check .
exec python -m pytest -q -p no:cacheprovider tests "$@"
