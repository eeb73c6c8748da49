#!/usr/bin/env bash
# Lint the devstack plugin with bashate, as devstack lints its own code
# (devstack's tox.ini: bashate -v -iE006 -eE005,E042): the files devstack
# sources (devstack/plugin.sh, settings, override-defaults), the plugin's
# other shell files, the devstack stand-ins of tests/devstack and the
# minicloud (tools/minicloud.sh, tools/minicloud/*.sh), which sources
# the plugin as devstack does.
# tools/check-shell.sh runs shellcheck on the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bashate >/dev/null 2>&1; then
    echo "bashate is not installed (pip install bashate)" >&2
    exit 1
fi
files=(devstack/plugin.sh devstack/settings devstack/override-defaults)
while IFS= read -r path; do
    [ -f "$path" ] && files+=("$path")
done < <(git ls-files -co --exclude-standard -- 'devstack/*.sh' \
             'tests/devstack/*.sh' tools/minicloud.sh 'tools/minicloud/*.sh' \
             | grep -v '^devstack/plugin\.sh$' || true)
bashate -v -iE006 -eE005,E042 "${files[@]}"
echo "bashate: ${#files[@]} files clean: ${files[*]}"
