#!/bin/bash
#
# Stand-ins for the parts of devstack that nova-xen's plugin uses, for
# tests/devstack.  Sourced in place of devstack's ``functions`` and
# ``lib/*``: the ini functions really edit files (as devstack's do, line by
# line, keeping everything else), the rest records what was asked in
# $SHIM_LOG, one shell-quoted command per line, instead of doing it.
#
# Needs SHIM_ROOT (a scratch directory) and SHIM_LOG.

# shellcheck disable=SC2034  # the variables are read by the plugin

: "${SHIM_ROOT:?}" "${SHIM_LOG:?}"

# What lib/* and stackrc define
DEST=${DEST:-$SHIM_ROOT/opt/stack}
DATA_DIR=${DATA_DIR:-$DEST/data}
FILES=${FILES:-$SHIM_ROOT/devstack/files}
NOVA_CONF=$SHIM_ROOT/etc/nova/nova.conf
NOVA_CPU_CONF=$SHIM_ROOT/etc/nova/nova-cpu.conf
GLANCE_API_CONF=$SHIM_ROOT/etc/glance/glance-api.conf
TEMPEST_CONFIG=$SHIM_ROOT/opt/stack/tempest/etc/tempest.conf
ENABLED_SERVICES=${ENABLED_SERVICES:-}
PYTHON=${PYTHON:-python3}
# stackrc and lib/keystone: the service accounts
REGION_NAME=${REGION_NAME:-RegionOne}
KEYSTONE_SERVICE_URI=${KEYSTONE_SERVICE_URI:-http://203.0.113.10/identity}
SERVICE_PASSWORD=${SERVICE_PASSWORD:-service-pw}
SERVICE_DOMAIN_NAME=${SERVICE_DOMAIN_NAME:-Default}
SERVICE_PROJECT_NAME=${SERVICE_PROJECT_NAME:-service}

# shellcheck source=tools/devstack_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/devstack_common.sh"

# _shim_record NAME ARGS... - one line in $SHIM_LOG
function _shim_record {
    {
        printf '%s' "$1"
        shift
        if [[ $# -gt 0 ]]; then
            printf ' %q' "$@"
        fi
        printf '\n'
    } >> "$SHIM_LOG"
}

function echo_summary {
    echo "SUMMARY: $*"
}

function get_python_exec_prefix {
    echo "${SHIM_PYTHON_PREFIX:-/usr/local/bin}"
}

function pip_install {
    _shim_record pip_install "$@"
}

function setup_develop {
    _shim_record setup_develop "$@"
}

# get_extra_file URL - the local copy of URL (file:// as is; else a
# stand-in "download" into $FILES)
function get_extra_file {
    _shim_record get_extra_file "$@"
    local url=$1
    if [[ $url == file://* ]]; then
        echo "${url#file://}"
        return
    fi
    local path
    path=$FILES/$(basename "$url")
    mkdir -p "$FILES"
    [[ -f $path ]] || echo "downloaded from $url" > "$path"
    echo "$path"
}

# openstack - records every call; "image create NAME" registers NAME in a
# stand-in Glance, "image show NAME" finds it (or fails as the client does)
function openstack {
    _shim_record openstack "$@"
    local images=$SHIM_ROOT/glance-images
    mkdir -p "$images"
    if [[ "$1 $2" == "image create" ]]; then
        echo "image-id-of-$3" > "$images/$3"
        echo "created $3"
    elif [[ "$1 $2" == "image show" ]]; then
        if [[ ! -f "$images/$3" ]]; then
            echo "No Image found for $3" >&2
            return 1
        fi
        cat "$images/$3"
    fi
}

# run_plugin MODE [PHASE] - as devstack's run_plugins: source plugin.sh from
# inside a function, with the mode and phase as positional arguments
function run_plugin {
    # shellcheck source=devstack/plugin.sh
    source "$SHIM_PLUGIN_DIR/plugin.sh" "$@"
}
