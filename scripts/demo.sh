#!/usr/bin/env bash
# Set-up, then the selection job on the embedded default data set (Fashion-MNIST, 60,000 images).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec spark-sensitivity demo "$@"
