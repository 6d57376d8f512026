#!/usr/bin/env bash
# Main job: imagine and rank pushes in the simulated scene with the embedded world model.
#   bash scripts/demo.sh [demo options]   # see: bash scripts/demo.sh --help
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
exec python -m kinemask_ros.demo "$@"
