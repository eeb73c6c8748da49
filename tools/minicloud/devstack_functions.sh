#!/bin/bash
#
# tools/minicloud/devstack_functions.sh - the devstack functions that
# nova-xen's devstack plugin (devstack/plugin.sh) calls, for a minicloud
#
# Unlike the stand-ins of tests/devstack/devstack_shims.sh, these do the
# work: the ini functions edit the config files the services read (line by
# line, as devstack's do), pip_install installs into the minicloud's venv,
# openstack is the real client of that venv.  The minicloud's own config
# steps use iniset too, as devstack's lib/* do.
#
# Needs common.sh (MC_VENV, MC_FILES, ...).

# shellcheck disable=SC2034  # the variables are read by the plugin

# What stackrc and lib/* define, as far as the plugin reads it
DEST=$MINICLOUD_DIR
DATA_DIR=$MC_DATA
FILES=$MC_FILES
NOVA_CONF=$MC_ETC/nova/nova.conf
NOVA_CPU_CONF=$MC_ETC/nova/nova-cpu.conf
GLANCE_API_CONF=$MC_ETC/glance/glance-api.conf
# in the Tempest workspace (tools/minicloud/tempest.sh), as devstack's is in
# $TEMPEST_DIR/etc
TEMPEST_CONFIG=$MINICLOUD_DIR/tempest/etc/tempest.conf
PYTHON=$MC_VENV/bin/python3
# stackrc and lib/keystone: the service accounts (bootstrap.py's)
REGION_NAME=RegionOne
KEYSTONE_SERVICE_URI=$MC_KEYSTONE_URL
SERVICE_PASSWORD=$MINICLOUD_PASSWORD
SERVICE_DOMAIN_NAME=Default
SERVICE_PROJECT_NAME=service
# What stack.sh exports for the clients the plugin runs: the admin of its
# clouds.yaml (devstack's is in /etc/openstack, the minicloud's in
# $MINICLOUD_DIR)
export OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml
export OS_CLOUD=devstack-admin

# shellcheck source=tools/devstack_common.sh
source "$MC_REPO/tools/devstack_common.sh"

function echo_summary {
    mc_say "$*"
}

# get_python_exec_prefix - where the services' Python lives
function get_python_exec_prefix {
    echo "$MC_VENV/bin"
}

# pip_install ARGS... - into the minicloud's venv
function pip_install {
    mc_run pip "$MC_VENV/bin/pip" install --disable-pip-version-check "$@"
}

# get_extra_file URL - the local copy of URL, downloaded once into $FILES
function get_extra_file {
    local url=$1 path
    if [[ $url == file://* ]]; then
        echo "${url#file://}"
        return
    fi
    path=$FILES/$(basename "${url%%[?#]*}")
    if [[ ! -s $path ]]; then
        mkdir -p "$FILES"
        curl -fsSL -o "$path.tmp" "$url" >&2 || die $LINENO "cannot download $url"
        mv "$path.tmp" "$path"
    fi
    echo "$path"
}

# openstack ARGS... - the venv's client, as the admin of clouds.yaml
function openstack {
    OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml OS_CLOUD=devstack-admin \
        "$MC_VENV/bin/openstack" "$@"
}

# run_plugin MODE [PHASE] - as devstack's run_plugins: nova-xen's plugin.sh
# sourced from inside a function, with the mode and phase as arguments
function run_plugin {
    # shellcheck source=devstack/plugin.sh
    source "$MC_REPO/devstack/plugin.sh" "$@"
}
