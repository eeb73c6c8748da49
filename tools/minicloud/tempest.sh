#!/bin/bash
#
# tools/minicloud/tempest.sh - real Tempest against the minicloud
#
#     tools/minicloud.sh tempest [--down] [--concurrency N] [--regex REGEX]
#     tox -e tempest [-- the same options]
#
# 1. ``up`` (or the minicloud already running);
# 2. Tempest 47.0.0 and this checkout (the nova_xen_tempest plugin) in a venv
#    of their own, $MINICLOUD_DIR/tempest-venv (Tempest's requirements must
#    not move the services' libraries), and a workspace made by ``tempest
#    init`` in $MINICLOUD_DIR/tempest;
# 3. its etc/tempest.conf written as devstack's lib/tempest writes it
#    (identity v3, the admin of clouds.yaml, dynamic credentials, images,
#    flavors, the shared network, the services there are), then the
#    devstack plugin's ``stack test-config`` phase (the compute features the
#    driver implements, [xenapi] for nova_xen_tempest), then what a
#    local.conf [[test-config]] section would override;
# 4. ``tempest run`` of tempest.api.compute, nova_xen_tempest and, with
#    ML2/OVN, tempest.scenario (Tempest SSHes into the servers over floating
#    IPs: [validation] run_validation = True), minus
#    tools/minicloud/tempest-exclude.txt (one reason per line), only if
#    each suite (each alternative of --regex) has tests to run;
# 5. the counts: passed, failed, skipped, excluded, per suite too, and the
#    wall time; a suite without results fails the run.
#
# Needs common.sh, devstack_functions.sh and the localrc of minicloud.sh.

MC_TEMPEST_VENV=$MINICLOUD_DIR/tempest-venv
MC_TEMPEST_DIR=$MINICLOUD_DIR/tempest
MC_TEMPEST_EXCLUDE=$MC_TOOLS/tempest-exclude.txt
# What runs: Nova's API tests of Tempest and nova-xen's plugin, and with
# ML2/OVN (packets reach the guests) Tempest's scenarios too
MC_TEMPEST_REGEX_API='^(tempest\.api\.compute|nova_xen_tempest)\.'
MC_TEMPEST_REGEX_NETWORK='^(tempest\.api\.compute|tempest\.scenario|nova_xen_tempest)\.'
# the networks and the router tools/minicloud/bootstrap.py makes: servers
# on the private one, floating IPs from the provider one
MC_TEMPEST_PUBLIC_NET=minicloud-net
MC_TEMPEST_PRIVATE_NET=minicloud-private
MC_TEMPEST_PACKAGES=('tempest==47.0.0' 'XenAPI>=24.0.0')
# tempest.conf [compute] build_timeout, as devstack's BUILD_TIMEOUT
MC_TEMPEST_BUILD_TIMEOUT=${MINICLOUD_TEMPEST_BUILD_TIMEOUT:-196}
# The second image ([compute] image_ref_alt): rebuilds change the image
MC_TEMPEST_IMAGE_ALT=nova-xen-blank-alt
# 1 (or True): Tempest's compute volume tests too.  The same regex: they
# are tempest.api.compute's (volumes.*, admin.test_volume*, the
# boot-from-volume and volume-backed server tests), which Tempest skips
# while tempest.conf says there is no Cinder; with 1 it says there is (the
# minicloud's, which must run: MINICLOUD_CINDER), and the tests in
# tools/minicloud/tempest-exclude-volumes.txt are excluded too.  Default 1:
# nova-xen attaches Cinder's iSCSI volumes.
MINICLOUD_VOLUME_TESTS=${MINICLOUD_VOLUME_TESTS:-1}
MC_TEMPEST_EXCLUDE_VOLUMES=$MC_TOOLS/tempest-exclude-volumes.txt
# the volume type of Tempest's multiattach tests ([volume]
# volume_type_multiattach), made by mc_tempest_configure
MC_TEMPEST_MULTIATTACH_TYPE=multiattach


# Install
# -------

# mc_tempest_install - Tempest and nova-xen into $MC_TEMPEST_VENV (once per
# package list); the workspace
function mc_tempest_install {
    local stamp=$MC_TEMPEST_VENV/.minicloud-packages want
    want=$(printf '%s\n' "${MC_TEMPEST_PACKAGES[@]}")
    if [[ ! -x $MC_TEMPEST_VENV/bin/tempest || ! -f $stamp || "$(<"$stamp")" != "$want" ]]; then
        mc_say "installing ${MC_TEMPEST_PACKAGES[*]} into $MC_TEMPEST_VENV"
        if [[ ! -x $MC_TEMPEST_VENV/bin/python3 ]]; then
            mc_run tempest-pip "$MINICLOUD_PYTHON" -m venv "$MC_TEMPEST_VENV"
        fi
        mc_run tempest-pip "$MC_TEMPEST_VENV/bin/pip" install \
            --disable-pip-version-check "${MC_TEMPEST_PACKAGES[@]}"
        echo "$want" > "$stamp"
    fi
    # nova_xen_tempest's entry point (tempest.test_plugins), without Nova:
    # the plugin needs Tempest and XenAPI only.  Editable: Tempest runs the
    # tests of this checkout as it is now, not a copy of an older one.
    local why
    if ! why=$(_mc_tempest_plugin_registered 2>&1); then
        mc_say "registering the nova_xen_tempest plugin with Tempest ($why)"
        mc_run tempest-pip "$MC_TEMPEST_VENV/bin/pip" install \
            --disable-pip-version-check --no-deps -e "$MC_REPO"
        why=$(_mc_tempest_plugin_registered 2>&1) \
            || mc_die "pip install -e $MC_REPO left nova_xen_tempest unregistered in $MC_TEMPEST_VENV: $why"
    fi
    if [[ ! -f $MC_TEMPEST_DIR/.stestr.conf ]]; then
        # (its own workspace registry: ~/.tempest stays untouched)
        mc_run tempest "$MC_TEMPEST_VENV/bin/tempest" init \
            --workspace-path "$MINICLOUD_DIR/tempest-workspace.yaml" \
            "$MC_TEMPEST_DIR"
    fi
}


# _mc_tempest_plugin_registered - Tempest's venv has the nova_xen_tempest
# plugin of this checkout: the entry point setup.cfg declares
# (tempest.test_plugins: nova_xen), which is how Tempest finds plugins, and
# the package it names in $MC_REPO.  From / and with -I (no current
# directory, no PYTHONPATH on sys.path): in the checkout, nova_xen_tempest
# imports whether or not Tempest would see it.  If not, why, on stderr.
function _mc_tempest_plugin_registered {
    (cd / && "$MC_TEMPEST_VENV/bin/python3" -I -c '
import importlib.metadata
import importlib.util
import os
import sys

repo = os.path.realpath(sys.argv[1])
values = [ep.value for ep in importlib.metadata.entry_points(
    group="tempest.test_plugins") if ep.name == "nova_xen"]
if values != ["nova_xen_tempest.plugin:NovaXenTempestPlugin"]:
    sys.exit("entry points nova_xen of tempest.test_plugins: %s" % values)
spec = importlib.util.find_spec("nova_xen_tempest")
where = os.path.realpath(spec.origin) if spec and spec.origin else None
if not where or os.path.commonpath([where, repo]) != repo:
    sys.exit("nova_xen_tempest is %s, not in %s" % (where, repo))
' "$MC_REPO")
}


# Configure
# ---------

# _mc_tempest_value ARGS... - what the admin's openstack client answers,
# -f value
function _mc_tempest_value {
    openstack "$@" -f value
}

# mc_tempest_configure - $TEMPEST_CONFIG from scratch, as devstack:
# lib/tempest's configure_tempest, the plugins' test-config phase, then
# local.conf's [[test-config]]
function mc_tempest_configure {
    local conf=$TEMPEST_CONFIG image alt flavor flavor_alt domain extensions
    local filters service
    local clouds=$MINICLOUD_DIR/clouds.yaml
    mkdir -p "$(dirname "$conf")" "$MC_DATA/tempest"
    rm -f "$conf"

    image=$(_mc_tempest_value image show "$(_nova_xen_image_name)" -c id)
    flavor=$(_mc_tempest_value flavor show m1.nano -c id)
    flavor_alt=$(_mc_tempest_value flavor show m1.tiny -c id)
    domain=$(_mc_tempest_value domain show default -c name)
    extensions=$(_mc_tempest_value extension list --network -c Alias \
        | sort | paste -sd, -)

    # lib/tempest: logging, lock path
    iniset "$conf" DEFAULT debug True
    iniset "$conf" DEFAULT use_stderr False
    iniset "$conf" DEFAULT log_file tempest.log
    iniset "$conf" oslo_concurrency lock_path "$MC_DATA/tempest"

    # Identity v3 only; the admin of clouds.yaml (devstack-admin)
    iniset "$conf" identity uri_v3 "$(_mc_cloud_auth "$clouds" auth_url)"
    iniset "$conf" identity auth_version v3
    iniset "$conf" identity region RegionOne
    iniset "$conf" identity-feature-enabled api_v2 False
    iniset "$conf" auth admin_username "$(_mc_cloud_auth "$clouds" username)"
    iniset "$conf" auth admin_project_name "$(_mc_cloud_auth "$clouds" project_name)"
    iniset "$conf" auth admin_password "$(_mc_cloud_auth "$clouds" password)"
    iniset "$conf" auth admin_domain_name "$domain"
    iniset "$conf" auth use_dynamic_credentials True
    iniset "$conf" auth tempest_roles member
    # No network, subnet and router per test class (time): servers get the
    # shared networks instead (_mc_tempest_validation)
    iniset "$conf" auth create_isolated_networks False

    # Compute
    iniset "$conf" compute build_timeout "$MC_TEMPEST_BUILD_TIMEOUT"
    iniset "$conf" compute image_ref "$image"
    iniset "$conf" compute image_ref_alt "$image"
    iniset "$conf" compute flavor_ref "$flavor"
    iniset "$conf" compute flavor_ref_alt "$flavor_alt"
    # the shared network tools/minicloud/bootstrap.py creates
    iniset "$conf" compute fixed_network_name minicloud-net
    iniset "$conf" compute max_microversion latest
    iniset "$conf" compute-feature-enabled hostname_fqdn_sanitization True
    # nova.conf's [filter_scheduler]enabled_filters (devstack's, which
    # mc_configure_nova sets)
    filters=$(iniget "$NOVA_CONF" filter_scheduler enabled_filters)
    iniset "$conf" compute-feature-enabled scheduler_enabled_filters \
        "${filters:-$MC_NOVA_FILTERS}"

    # Network: one shared flat network, no floating IPs, no metadata
    # agent; with ML2/OVN, _mc_tempest_validation adds the router's side
    iniset "$conf" network project_networks_reachable False
    iniset "$conf" network shared_physical_network True
    iniset "$conf" network-feature-enabled api_extensions "$extensions"
    iniset "$conf" network-feature-enabled floating_ips False
    iniset "$conf" network-feature-enabled port_security True

    # Volumes: no Cinder, or the minicloud's (mc_tempest_volumes)
    iniset "$conf" volume-feature-enabled backup False
    iniset "$conf" volume-feature-enabled snapshot False
    iniset "$conf" volume-feature-enabled clone False

    # What runs here (TEMPEST_SERVICES)
    for service in nova glance neutron; do
        iniset "$conf" service_available "$service" True
    done
    for service in cinder swift horizon; do
        iniset "$conf" service_available "$service" False
    done
    if mc_tempest_volumes; then
        _mc_tempest_cinder "$conf"
    fi

    # The plugins' phase: the driver's features, the test image, [xenapi]
    local ENABLED_SERVICES=$ENABLED_SERVICES,tempest
    if ! (run_plugin stack test-config) >> "$MC_LOG/plugin.log" 2>&1; then
        mc_log_tail plugin
        mc_die "the devstack plugin's test-config phase failed"
    fi

    # local.conf's [[test-config|$TEMPEST_CONFIG]], as devstack's
    # devstack-tempest job writes it: the number of compute hosts (Tempest
    # runs its multi-node and migration tests from 2)
    iniset "$conf" compute min_compute_nodes "${#MC_COMPUTES[@]}"
    # and, for nova_xen_tempest, every pool a nova-compute manages
    _mc_tempest_pools "$conf"
    # and how Tempest reaches the servers
    _mc_tempest_validation "$conf"
    # and a second image, so that rebuilds change the image
    if ! alt=$(_mc_tempest_value image show "$MC_TEMPEST_IMAGE_ALT" -c id \
            2>/dev/null); then
        alt=$(_mc_tempest_value image create "$MC_TEMPEST_IMAGE_ALT" --public \
            --disk-format "$NOVA_XEN_IMAGE_DISK_FORMAT" --container-format bare \
            --file "$(_nova_xen_image_file)" -c id)
    fi
    iniset "$conf" compute image_ref_alt "$alt"
    mc_say "tempest.conf: $conf"
}

# mc_tempest_regex - what runs by default: with ML2/OVN the guests answer
# on the network, so Tempest's scenarios run too
function mc_tempest_regex {
    if mc_ovn_enabled; then
        echo "$MC_TEMPEST_REGEX_NETWORK"
    else
        echo "$MC_TEMPEST_REGEX_API"
    fi
}

# _mc_tempest_validation CONF - local.conf's [[test-config]] for the
# network.  With ML2/OVN, xapisim's guests boot like cloud images (config
# drive, DHCP, dropbear) and Tempest SSHes into them as devstack's jobs do:
# a keypair, a floating IP of the external provider network (the root
# namespace, where Tempest runs, holds its gateway address), the server on
# the private network behind the admin's router, as
# create_isolated_networks=False asks.  No metadata service: the config
# drive carries the key.  With the noagent fallback nothing carries a
# packet: no validation, said once.
function _mc_tempest_validation {
    local conf=$1 public
    if ! mc_ovn_enabled; then
        mc_say "MINICLOUD_NEUTRON=$MINICLOUD_NEUTRON carries no packet: Tempest runs without validation (no SSH into servers) and without tempest.scenario"
        return 0
    fi
    public=$(_mc_tempest_value network show "$MC_TEMPEST_PUBLIC_NET" -c id) \
        || mc_die "network $MC_TEMPEST_PUBLIC_NET not found: tools/minicloud.sh up makes it"
    _mc_tempest_value network show "$MC_TEMPEST_PRIVATE_NET" -c id >/dev/null \
        || mc_die "network $MC_TEMPEST_PRIVATE_NET not found: tools/minicloud.sh up makes it"
    iniset "$conf" validation run_validation True
    iniset "$conf" validation connect_method floating
    iniset "$conf" validation auth_method keypair
    iniset "$conf" validation image_ssh_user root
    iniset "$conf" validation image_alt_ssh_user root
    iniset "$conf" validation ssh_timeout "$MC_TEMPEST_BUILD_TIMEOUT"
    iniset "$conf" compute fixed_network_name "$MC_TEMPEST_PRIVATE_NET"
    iniset "$conf" compute-feature-enabled metadata_service False
    iniset "$conf" network public_network_id "$public"
    iniset "$conf" network floating_network_name "$MC_TEMPEST_PUBLIC_NET"
    iniset "$conf" network shared_physical_network False
    iniset "$conf" network-feature-enabled floating_ips True
}

# mc_tempest_volumes - the run includes the compute volume tests
# (MINICLOUD_VOLUME_TESTS)
function mc_tempest_volumes {
    [[ ${MINICLOUD_VOLUME_TESTS,,} =~ ^(1|true|yes)$ ]]
}

# _mc_tempest_cinder CONF - the minicloud's Cinder, as lib/tempest writes
# it for a Cinder with the LVM driver and tgt: snapshots and clones (the
# file-backed backend copies files), no backup service; a volume type for
# the multiattach tests (whether they run is the driver's
# volume_multiattach, from the plugin's test-config phase)
function _mc_tempest_cinder {
    local conf=$1
    if ! mc_pid c-api >/dev/null; then
        mc_die "MINICLOUD_VOLUME_TESTS=$MINICLOUD_VOLUME_TESTS, but the minicloud runs no Cinder: $0 down; MINICLOUD_CINDER=True $0 up"
    fi
    iniset "$conf" service_available cinder True
    iniset "$conf" volume-feature-enabled snapshot True
    iniset "$conf" volume-feature-enabled clone True
    iniset "$conf" volume backend_names "$MC_CINDER_BACKEND"
    iniset "$conf" volume storage_protocol iSCSI
    iniset "$conf" volume vendor_name nova-xen
    if ! _mc_tempest_value volume type show "$MC_TEMPEST_MULTIATTACH_TYPE" \
            -c id >/dev/null 2>&1; then
        openstack volume type create "$MC_TEMPEST_MULTIATTACH_TYPE" \
            --property multiattach='<is> True' >/dev/null
    fi
    iniset "$conf" volume volume_type_multiattach "$MC_TEMPEST_MULTIATTACH_TYPE"
}

# mc_tempest_exclude_file - the exclude list of the run: tempest-exclude.txt,
# and with the volume tests tempest-exclude-volumes.txt too (both, one
# file, in the workspace)
function mc_tempest_exclude_file {
    local combined=$MC_TEMPEST_DIR/exclude.txt
    if ! mc_tempest_volumes; then
        echo "$MC_TEMPEST_EXCLUDE"
        return 0
    fi
    cat "$MC_TEMPEST_EXCLUDE" "$MC_TEMPEST_EXCLUDE_VOLUMES" > "$combined"
    echo "$combined"
}

# _mc_tempest_pools CONF - [xenapi]connection_url: the plugin's phase wrote
# the first pool's master; with computes in several pools, nova_xen_tempest
# must look at each pool (if it can: a list of masters)
function _mc_tempest_pools {
    local masters
    masters=$(awk '!seen[$6]++ { print $6 }' "$MC_COMPUTE_TABLE" | paste -sd, -)
    if [[ $masters != *,* ]]; then
        return 0
    fi
    if _mc_tempest_plugin_lists_pools; then
        iniset "$1" xenapi connection_url "$masters"
    else
        mc_say "WARNING: the computes manage hosts of several pools ($masters), but this nova_xen_tempest reads one pool master from [xenapi]connection_url: its tests fail for servers outside $(iniget "$1" xenapi connection_url)"
    fi
}

# _mc_tempest_plugin_lists_pools - nova_xen_tempest, as Tempest's venv has
# it, takes several pool masters in [xenapi]connection_url (a ListOpt)
function _mc_tempest_plugin_lists_pools {
    (cd / && "$MC_TEMPEST_VENV/bin/python3" -c '
import sys
from oslo_config import cfg
from nova_xen_tempest import config
opts = [o for o in config.XenapiGroup if o.name == "connection_url"]
sys.exit(0 if opts and isinstance(opts[0], cfg.ListOpt) else 1)') \
        >/dev/null 2>&1
}

# _mc_cloud_auth CLOUDS_YAML KEY - auth KEY of cloud devstack-admin
function _mc_cloud_auth {
    "$MC_VENV/bin/python3" -c 'import sys, yaml
with open(sys.argv[1]) as f:
    print(yaml.safe_load(f)["clouds"]["devstack-admin"]["auth"][sys.argv[2]])' \
        "$1" "$2"
}


# Run
# ---

# mc_tempest_list REGEX LISTED - the tests of REGEX into LISTED (the
# selection before the exclude list, one test id a line), as Tempest sees
# them; stops if a suite of REGEX (each of its alternatives:
# tempest.api.compute, nova_xen_tempest) has none left to run
function mc_tempest_list {
    (cd "$MC_TEMPEST_DIR" && "$MC_TEMPEST_VENV/bin/tempest" run \
        --config-file "$TEMPEST_CONFIG" --list-tests --regex "$1") \
        > "$2" 2>> "$MC_LOG/tempest.log" \
        || mc_die "tempest run --list-tests failed (log: $MC_LOG/tempest.log)"
    "$MC_TEMPEST_VENV/bin/python3" "$MC_TOOLS/tempest_summary.py" --check \
        --regex "$1" "$2" "$MC_TEMPEST_EXCLUDE" \
        || mc_die "tempest run not started: a part of --regex $1 has no test to run (above); a run without it would look like a pass"
}

# mc_tempest_summary REGEX LISTED SECONDS - the counts of the last run
# (LISTED: as mc_tempest_list wrote it); fails if a suite of REGEX has no
# result
function mc_tempest_summary {
    (cd "$MC_TEMPEST_DIR" && "$MC_TEMPEST_VENV/bin/stestr" last --subunit) \
        | "$MC_TEMPEST_VENV/bin/subunit2csv" --no-passthrough \
        | "$MC_TEMPEST_VENV/bin/python3" "$MC_TOOLS/tempest_summary.py" \
        --regex "$1" "$2" "$MC_TEMPEST_EXCLUDE" "$3"
}

# mc_tempest [--down] [--concurrency N] [--regex REGEX] - the whole thing
function mc_tempest {
    local down=False concurrency=${MINICLOUD_TEMPEST_CONCURRENCY:-2}
    local regex started=$SECONDS run_started rc=0
    local listed
    regex=$(mc_tempest_regex)
    while [[ $# -gt 0 ]]; do
        case $1 in
            --down) down=True ;;
            --concurrency) concurrency=$2; shift ;;
            --regex) regex=$2; shift ;;
            *) mc_die "tempest: unknown option $1 (--down, --concurrency N, --regex REGEX)" ;;
        esac
        shift
    done

    if ! mc_pid n-api >/dev/null; then
        "$MC_MAIN_DIR/minicloud.sh" up
    fi
    mc_status > /dev/null || mc_die "the minicloud is not healthy: $0 status; $0 down; $0 up"
    mc_tempest_install
    mc_tempest_configure
    # the exclude list of this run (the functions below read it)
    local exclude
    exclude=$(mc_tempest_exclude_file)
    local MC_TEMPEST_EXCLUDE=$exclude

    listed=$MC_TEMPEST_DIR/selected.txt
    mc_tempest_list "$regex" "$listed"
    if mc_tempest_volumes; then
        mc_say "with the compute volume tests (MINICLOUD_VOLUME_TESTS=$MINICLOUD_VOLUME_TESTS)"
    fi
    mc_say "tempest run: $regex minus $MC_TEMPEST_EXCLUDE, concurrency $concurrency"
    run_started=$SECONDS
    # (without the caller's ssh-agent: paramiko offers its keys first, and
    # dropbear closes after a few refused ones)
    (cd "$MC_TEMPEST_DIR" && env -u SSH_AUTH_SOCK \
        "$MC_TEMPEST_VENV/bin/tempest" run \
        --config-file "$TEMPEST_CONFIG" --regex "$regex" \
        --exclude-list "$MC_TEMPEST_EXCLUDE" --concurrency "$concurrency") \
        || rc=$?
    # a suite without results fails the run, whatever Tempest answered
    if ! mc_tempest_summary "$regex" "$listed" "$((SECONDS - run_started))" \
            && [[ $rc -eq 0 ]]; then
        rc=1
    fi
    mc_say "tempest.log: $MC_TEMPEST_DIR/tempest.log; services' logs: $MC_LOG"
    if [[ $down == True ]]; then
        "$MC_MAIN_DIR/minicloud.sh" down
    fi
    mc_say "tempest done in $((SECONDS - started)) s, exit status $rc"
    return $rc
}
