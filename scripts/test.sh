#!/usr/bin/env bash
# Whole test suite: set up (fast when already done), then pytest over tests/.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -x -k ros  # extra arguments go to pytest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
# A DDS domain of its own for this run, so concurrent runs on one machine do not see each other
# (tests that start nodes pick their own domain ids on top of this).
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}"

set +e
python -m pytest -q tests "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
fi
exit "$rc"
