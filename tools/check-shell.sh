#!/usr/bin/env bash
# Lint every shell script in the tree with shellcheck: files ending in .sh,
# files whose first line runs a shell, and the devstack plugin's files.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null 2>&1; then
    echo "shellcheck is not installed (apt-get install shellcheck)" >&2
    exit 1
fi
scripts=()
while IFS= read -r path; do
    [ -f "$path" ] || continue
    case "$path" in
        *.sh|devstack/settings|devstack/override-defaults)
            scripts+=("$path") ;;
        *)
            if head -n 1 "$path" 2>/dev/null | grep -qE '^#!.*\b(ba)?sh\b'; then
                scripts+=("$path")
            fi ;;
    esac
done < <(git ls-files -co --exclude-standard)
if [ "${#scripts[@]}" -eq 0 ]; then
    echo "shellcheck: no shell scripts"
    exit 0
fi
shellcheck -x "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean: ${scripts[*]}"
