#!/usr/bin/env bash
# Lint every shell script in the tree with shellcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null 2>&1; then
    echo "shellcheck is not installed (apt-get install shellcheck)" >&2
    exit 1
fi
mapfile -t scripts < <(git ls-files -co --exclude-standard | grep -E '\.sh$|^\.ci/run$' || true)
if [ "${#scripts[@]}" -eq 0 ]; then
    echo "no shell scripts"
    exit 0
fi
shellcheck "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
