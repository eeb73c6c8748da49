#!/bin/bash
#
# tools/minicloud.sh - a real OpenStack on loopback whose nova-compute
# drives a simulated XCP-ng pool (xapisim) through nova-xen
#
#     tools/minicloud.sh up        install (first time), start, bootstrap
#     tools/minicloud.sh status    each service: pid, and whether it answers
#     tools/minicloud.sh smoke     a server on each nova-compute, checked in
#                                  xapisim, live-migrated, deleted; UEFI
#                                  Secure Boot + vTPM, PCI and vGPU servers
#     tools/minicloud.sh tempest   up, then Tempest's compute API tests and
#                                  nova_xen_tempest (tools/minicloud/tempest.sh)
#     tools/minicloud.sh down      stop what ``up`` started
#
# What devstack would do, without devstack: MariaDB, RabbitMQ and memcached
# from Debian's packages; Keystone, Placement, Glance, Neutron and Nova
# from PyPI into one venv; Neutron runs ML2/OVN (tools/minicloud/ovn.sh:
# OVN central, xapisim's hosts with real dom0 networks, an ovn-controller
# in each compute's dom0, Geneve between them, a flat provider network;
# MINICLOUD_NEUTRON=noagent falls back to an agentless test driver,
# tools/minicloud/neutron_noagent, that sets every port ACTIVE); nova-xen's own devstack plugin (devstack/plugin.sh)
# sourced phase by phase with devstack's functions supplied by
# tools/minicloud/devstack_functions.sh, so that the plugin installs
# nova-xen, configures nova-compute and Glance and uploads the test image.
# Three nova-computes, each its own process with its own config overlay,
# manage two hosts of one xapisim pool and one host of a second pool
# (MINICLOUD_COMPUTES), so that servers live-migrate inside a pool and
# across pools.  Cinder (MINICLOUD_CINDER, on by default): cinder-api,
# -scheduler and -volume from PyPI, one file-backed backend exported over
# iSCSI by a tgtd of the minicloud's own (tools/minicloud/cinder.sh); Nova
# sends it service tokens.  The pools of MINICLOUD_SECUREBOOT_POOLS get
# their Secure Boot certificates, the host of MINICLOUD_DEVICE_HOST a NIC
# and a GPU that Nova passes through (tools/minicloud/infra.sh).
#
# Everything (venv, configs, data, logs, pid files) is under MINICLOUD_DIR,
# by default .minicloud/ in this checkout.  ``up`` starts from empty
# databases each time, as stack.sh does; the venv stays.  Settings are in
# tools/minicloud/common.sh (MINICLOUD_* environment variables).  Run as
# root (apt-get, and the services run as root).

set -o errexit -o nounset -o pipefail

MC_MAIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/minicloud/common.sh
source "$MC_MAIN_DIR/minicloud/common.sh"
# shellcheck source=tools/minicloud/devstack_functions.sh
source "$MC_MAIN_DIR/minicloud/devstack_functions.sh"
# shellcheck source=tools/minicloud/infra.sh
source "$MC_MAIN_DIR/minicloud/infra.sh"
# shellcheck source=tools/minicloud/openstack.sh
source "$MC_MAIN_DIR/minicloud/openstack.sh"
# shellcheck source=tools/minicloud/ovn.sh
source "$MC_MAIN_DIR/minicloud/ovn.sh"
# shellcheck source=tools/minicloud/cinder.sh
source "$MC_MAIN_DIR/minicloud/cinder.sh"
# shellcheck source=tools/minicloud/tempest.sh
source "$MC_MAIN_DIR/minicloud/tempest.sh"

# The networks ``up`` creates, for ``smoke``: minicloud-net's subnet
# (flat on the provider LAN, the root namespace holds its gateway with
# ML2/OVN: TEST-NET-2, routed nowhere, what xapisim calls its provider
# LAN; never 192.0.2.0/24, xapisim's underlay); with ML2/OVN,
# minicloud-private's (Geneve, behind minicloud-router)
MC_SUBNET_CIDR=${MINICLOUD_SUBNET_CIDR:-198.51.100.0/24}
MC_PRIVATE_CIDR=${MINICLOUD_PRIVATE_CIDR:-10.30.0.0/23}


# The local.conf of this "devstack"
# ---------------------------------

# shellcheck disable=SC2034  # read by devstack/plugin.sh and settings
function mc_localrc {
    ENABLED_SERVICES=key,mysql,rabbit,placement-api,g-api,q-svc,n-api,n-cond,n-sch,n-novnc,n-cpu
    if mc_cinder_enabled; then
        ENABLED_SERVICES+=,c-api,c-sch,c-vol
    fi
    XENAPI_CONNECTION_URL=$MC_XAPI_URL
    XENAPI_USER=$MC_XAPI_USER
    XENAPI_PASSWORD=$MINICLOUD_PASSWORD
    NOVA_XEN_DIR=$MC_REPO
    # several compute hosts, which the driver can move servers between
    # (lib/tempest's variables; the plugin's test-config phase reads them)
    if [[ ${#MC_COMPUTES[@]} -ge 2 ]]; then
        LIVE_MIGRATION_AVAILABLE=True
        USE_BLOCK_MIGRATION_FOR_LIVE_MIGRATION=True
        LIVE_MIGRATE_BACK_AND_FORTH=True
    fi
    VIRT_DRIVER=${VIRT_DRIVER:-libvirt}     # stackrc's default
    # shellcheck source=devstack/override-defaults
    source "$MC_REPO/devstack/override-defaults"
    # shellcheck source=devstack/settings
    source "$MC_REPO/devstack/settings"
}


# Commands
# --------

# mc_running - the services whose pid is alive, one per line
function mc_running {
    local name
    for name in "${MC_SERVICES[@]}"; do
        if mc_pid "$name" >/dev/null; then
            echo "$name"
        fi
    done
}

# _mc_bg NAME FUNCTION - FUNCTION in the background; its pid in MC_JOBS
declare -A MC_JOBS=()
function _mc_bg {
    "$2" &
    MC_JOBS[$1]=$!
}

# _mc_join NAME... - wait for those background steps; stop if one failed
function _mc_join {
    local name
    for name in "$@"; do
        if ! wait "${MC_JOBS[$name]}"; then
            mc_die "$name failed (see above)"
        fi
        unset "MC_JOBS[$name]"
    done
}

function mc_up {
    local running started=$SECONDS
    running=$(mc_running | tr '\n' ' ')
    if [[ -n $running ]]; then
        mc_say "already running: $running(see: $0 status; stop with: $0 down)"
        return 0
    fi
    if [[ $EUID -ne 0 ]]; then
        mc_die "run as root: up installs Debian packages, and MariaDB and RabbitMQ run as root here"
    fi
    if [[ ! $MINICLOUD_NEUTRON =~ ^(ovn|noagent)$ ]]; then
        mc_die "MINICLOUD_NEUTRON is ovn (ML2/OVN, the default) or noagent (the agentless test driver), not $MINICLOUD_NEUTRON"
    fi
    mc_check_computes
    mc_check_ports
    if mc_ovn_enabled; then
        mc_ovn_root_link_check
    fi
    mc_say "up: everything in $MINICLOUD_DIR"
    # from scratch, as stack.sh: only the venv and the image cache stay
    rm -rf "$MC_ETC" "$MC_DATA" "$MC_LOG" "$MC_RUN" "$MINICLOUD_DIR/xapisim.json"
    mkdir -p "$MC_ETC" "$MC_DATA" "$MC_LOG" "$MC_RUN" "$MC_FILES"
    mc_set_computes     # (MINICLOUD_COMPUTES: no compute table yet)

    mc_localrc
    run_plugin stack pre-install

    # Install
    mc_install_apt
    mc_install_venv
    if mc_cinder_enabled; then
        mc_install_cinder
    fi
    run_plugin stack install
    if ! mc_ovn_enabled; then
        mc_install_noagent_driver
    fi
    mc_say "installed ($((SECONDS - started)) s)"

    # The infrastructure, while the services are configured
    mc_start_mysql
    mc_start_rabbit
    mc_start_memcached
    mc_start_xapisim
    if mc_ovn_enabled; then
        mc_start_ovn_central
    fi

    mc_configure_keystone
    mc_configure_placement
    mc_configure_glance
    mc_configure_neutron
    mc_configure_nova
    if mc_cinder_enabled; then
        mc_configure_cinder
        mc_start_tgtd
    fi
    run_plugin stack post-config
    mc_configure_nova_compute
    mc_write_clouds_yaml

    # Databases: schemas in parallel
    mc_init_mysql
    mc_say "MariaDB is up; creating the schemas"
    _mc_bg keystone mc_init_keystone
    _mc_bg placement mc_init_placement
    _mc_bg glance mc_init_glance
    _mc_bg neutron mc_init_neutron
    _mc_bg nova mc_init_nova
    if mc_cinder_enabled; then
        _mc_bg cinder mc_init_cinder
    fi
    _mc_join keystone
    mc_start_keystone
    _mc_join placement glance neutron nova
    if mc_cinder_enabled; then
        _mc_join cinder
    fi
    mc_say "schemas created ($((SECONDS - started)) s)"

    mc_wait_rabbit
    mc_wait memcached "port $MC_PORT_MEMCACHED" mc_tcp_open "$MC_PORT_MEMCACHED"
    mc_wait_xapisim
    mc_secureboot_certs
    # each nova-compute's overlay: the hosts' uuids are xapisim's
    mc_configure_computes
    if mc_ovn_enabled; then
        # a chassis in each compute's dom0, before Neutron binds ports
        mc_start_ovn_controllers
        mc_start_dom0_glance
        mc_say "OVN: northd, and a chassis for each of ${MC_COMPUTES[*]}"
        mc_ovn_root_link
    fi
    mc_start_placement
    mc_start_glance
    mc_start_neutron
    mc_start_nova_api
    if mc_cinder_enabled; then
        mc_start_cinder
    fi

    mc_wait keystone "answer" mc_http_ok "$MC_KEYSTONE_URL"
    mc_run keystone env OS_CLIENT_CONFIG_FILE="$MINICLOUD_DIR/clouds.yaml" \
        OS_CLOUD=devstack-admin "$MC_VENV/bin/python3" "$MC_TOOLS/bootstrap.py" \
        identity "$MC_HOST" "$MINICLOUD_PASSWORD" "$(mc_catalog_ports)"
    mc_say "Keystone is up, catalog written"

    # they check placement at start, as nova and placement users
    mc_start_nova
    mc_wait n-cond "conductor queue" mc_rabbit_queue conductor
    mc_start_nova_computes
    mc_wait n-sch "scheduler queue" mc_rabbit_queue scheduler
    mc_wait placement "answer" mc_http_ok "http://$MC_HOST:$MC_PORT_PLACEMENT/"
    mc_wait glance "answer" mc_http_ok "http://$MC_HOST:$MC_PORT_GLANCE/"
    mc_wait neutron "answer" mc_http_ok "http://$MC_HOST:$MC_PORT_NEUTRON/"
    mc_wait n-api "answer" mc_http_ok "http://$MC_HOST:$MC_PORT_NOVA/"
    mc_wait n-novnc "answer" mc_http_ok "http://$MC_HOST:$MC_PORT_NOVNC/vnc_lite.html"
    if mc_cinder_enabled; then
        mc_wait c-api "answer" mc_http_ok "http://$MC_HOST:$MC_PORT_CINDER/"
    fi
    mc_say "APIs answer ($((SECONDS - started)) s)"

    # (the image's details: in log/plugin.log)
    run_plugin stack extra >> "$MC_LOG/plugin.log"
    mc_say "image $(_nova_xen_image_name) is in Glance"
    mc_bootstrap_resources
    mc_discover_hosts
    run_plugin stack test-config
    if mc_cinder_enabled; then
        mc_wait c-vol "cinder-volume service up" mc_cinder_volume_up
        mc_wait c-sch "the backend's pool in Cinder's scheduler" \
            mc_cinder_pool_known
        # a volume through attach and detach, as Nova drives them
        if ! mc_cinder_check >> "$MC_LOG/cinder-check.log" 2>&1; then
            mc_log_tail cinder-check
            mc_die "Cinder's check failed (log: $MC_LOG/cinder-check.log; services: c-api.log, c-vol.log, c-tgt.log)"
        fi
        mc_say "Cinder works: $(grep -c '\] ok ' "$MC_LOG/cinder-check.log") checks passed (log/cinder-check.log)"
    fi
    if mc_ovn_enabled; then
        mc_ovn_check
    fi

    mc_say "up in $((SECONDS - started)) s"
    mc_status || true
    cat <<EOF

  export OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml OS_CLOUD=devstack-admin
  $MC_VENV/bin/openstack compute service list
  $0 smoke | status | down
EOF
}

# mc_bootstrap_resources - flavors and minicloud-net; with ML2/OVN (L3 in
# OVN) minicloud-net external, minicloud-private and minicloud-router
function mc_bootstrap_resources {
    local -a l3=()
    if mc_ovn_enabled; then
        l3=("$MC_PRIVATE_CIDR")
    fi
    mc_run bootstrap env OS_CLIENT_CONFIG_FILE="$MINICLOUD_DIR/clouds.yaml" \
        OS_CLOUD=devstack-admin "$MC_VENV/bin/python3" "$MC_TOOLS/bootstrap.py" \
        resources "$MC_SUBNET_CIDR" "$MC_PHYSNET" "${l3[@]}"
}

# mc_catalog_ports - bootstrap.py's PORTS: each service type's port
function mc_catalog_ports {
    local ports="compute=$MC_PORT_NOVA,placement=$MC_PORT_PLACEMENT"
    ports+=",image=$MC_PORT_GLANCE,network=$MC_PORT_NEUTRON"
    if mc_cinder_enabled; then
        ports+=",block-storage=$MC_PORT_CINDER,volumev3=$MC_PORT_CINDER"
    fi
    echo "$ports"
}

# mc_check_ports - stop if another program holds one of our ports
function mc_check_ports {
    local port address
    local -a ports=("$MC_PORT_MYSQL" "$MC_PORT_EPMD" "$MC_PORT_RABBIT"
        "$MC_PORT_RABBIT_DIST" "$MC_PORT_MEMCACHED" "$MC_PORT_KEYSTONE"
        "$MC_PORT_PLACEMENT" "$MC_PORT_GLANCE" "$MC_PORT_NEUTRON"
        "$MC_PORT_NOVA" "$MC_PORT_NOVNC")
    if mc_cinder_enabled; then
        ports+=("$MC_PORT_CINDER" "$MC_PORT_ISCSI")
        if [[ -S /var/run/tgtd/socket.$MC_TGT_CONTROL_PORT ]] && \
                /usr/sbin/tgtadm -C "$MC_TGT_CONTROL_PORT" --mode sys \
                --op show >/dev/null 2>&1; then
            mc_die "a tgtd already answers on control port $MC_TGT_CONTROL_PORT: stop it, or set MINICLOUD_TGT_CONTROL_PORT"
        fi
    fi
    for port in "${ports[@]}"; do
        if mc_tcp_open "$port"; then
            mc_die "port $port of $MC_HOST is taken by another program: stop it, or move the minicloud's (MINICLOUD_PORT_* in tools/minicloud/common.sh)"
        fi
    done
    for address in $(mc_xapi_addresses); do
        if mc_tcp_open "$MC_PORT_XAPI" "$address"; then
            mc_die "port $MC_PORT_XAPI of $address (xapisim) is taken: set MINICLOUD_PORT_XAPI"
        fi
    done
}

function mc_down {
    local started=$SECONDS running
    running=$(mc_running | tr '\n' ' ')
    if [[ -z $running ]]; then
        mc_say "nothing running in $MINICLOUD_DIR"
        rm -f "$MC_RUN"/*.pid 2>/dev/null || true
        mc_ovn_root_link_down
        return 0
    fi
    # OpenStack and the ovn-controllers first, together; then xapisim
    # (the dom0 namespaces go with it) and OVN central; then what they used
    local -a chassis=()
    mapfile -t chassis < <(mc_ovn_controller_services)
    mc_stop "${MC_COMPUTES[@]}" "${chassis[@]}" c-vol c-sch c-api n-novnc \
        n-sch n-cond n-api q-ovn-maint neutron glance placement keystone
    mc_stop dom0-glance xapisim ovn-northd ovn-nb ovn-sb
    mc_ovn_root_link_down
    mc_stop_tgtd
    mc_stop memcached rabbit mysql
    mc_stop epmd
    mc_stop "${MC_SERVICES[@]}"     # (none left: the lists above are all)
    mc_say "stopped: $running"
    mc_say "down in $((SECONDS - started)) s (logs stay in $MC_LOG)"
}

# _mc_answer NAME - how NAME answers: "ok (what)" or "NO (what)"
function _mc_answer {
    local code=""
    case $1 in
        mysql) mc_tcp_open "$MC_PORT_MYSQL" && echo "ok (tcp $MC_PORT_MYSQL)" \
            || echo "NO (tcp $MC_PORT_MYSQL)" ;;
        epmd) mc_tcp_open "$MC_PORT_EPMD" && echo "ok (tcp $MC_PORT_EPMD)" \
            || echo "NO (tcp $MC_PORT_EPMD)" ;;
        rabbit) mc_tcp_open "$MC_PORT_RABBIT" && echo "ok (amqp $MC_PORT_RABBIT)" \
            || echo "NO (amqp $MC_PORT_RABBIT)" ;;
        memcached) mc_tcp_open "$MC_PORT_MEMCACHED" \
            && echo "ok (tcp $MC_PORT_MEMCACHED)" || echo "NO (tcp $MC_PORT_MEMCACHED)" ;;
        xapisim)
            code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' \
                -u "$MC_XAPI_USER:$MINICLOUD_PASSWORD" \
                "$MC_XAPI_URL/_xapisim/describe" 2>/dev/null || true) ;;
        ovn-nb|ovn-sb) _mc_ovsdb_serves "$1" "$MC_OVN_RUN/${1#ovn-}.sock" \
            && echo "ok (ovsdb)" || echo "NO (ovsdb)"
            return ;;
        ovn-northd) ovn-appctl -t "$MC_OVN_RUN/northd.ctl" status 2>/dev/null \
            | grep -q 'Status: active' && echo "ok (active)" \
            || echo "NO (not active)"
            return ;;
        ovn-cpu-*)
            local chassis
            chassis=$(mc_ovn_chassis "n-${1#ovn-}" system_id)
            [[ -n $chassis ]] && _mc_ovn_chassis_registered "$chassis" \
                && echo "ok (chassis in the southbound database)" \
                || echo "NO (no chassis ${chassis:-?} in the southbound database)"
            return ;;
        keystone) code=$(mc_http_code "$MC_KEYSTONE_URL") ;;
        placement) code=$(mc_http_code "http://$MC_HOST:$MC_PORT_PLACEMENT/") ;;
        glance) code=$(mc_http_code "http://$MC_HOST:$MC_PORT_GLANCE/") ;;
        neutron) code=$(mc_http_code "http://$MC_HOST:$MC_PORT_NEUTRON/") ;;
        n-api) code=$(mc_http_code "http://$MC_HOST:$MC_PORT_NOVA/") ;;
        c-api) code=$(mc_http_code "http://$MC_HOST:$MC_PORT_CINDER/") ;;
        c-tgt) "$MC_TGT_BIN/tgtadm" --mode sys --op show >/dev/null 2>&1 \
            && echo "ok (tgtadm -C $MC_TGT_CONTROL_PORT)" \
            || echo "NO (tgtadm -C $MC_TGT_CONTROL_PORT)"
            return ;;
        c-vol)
            local state
            state=$(awk '$1 == "cinder-volume" { print $2 ": " $3 ", " $4 }' \
                <<< "${MC_CINDER_SERVICES:-}")
            if [[ -z ${MC_CINDER_SERVICES:-} ]]; then
                echo "-"
            elif [[ $state == *", up" ]]; then
                echo "ok (cinder: $state)"
            else
                echo "NO (cinder: ${state:-no cinder-volume})"
            fi
            return ;;
        n-cpu-*)
            # its service, as nova-api reports it (mc_status asked it)
            local host state
            host=$(mc_compute "$1" host)
            state=$(awk -v h="$host" '$1 == "nova-compute" && $2 == h {
                print $3 ", " $4 }' <<< "${MC_NOVA_SERVICES:-}")
            if [[ -z ${MC_NOVA_SERVICES:-} ]]; then
                echo "-"
            elif [[ $state == *", up" ]]; then
                echo "ok (nova: $state)"
            else
                echo "NO (nova: ${state:-no service $host})"
            fi
            return ;;
        *) echo "-"; return ;;
    esac
    if [[ -n $code ]]; then
        if [[ $code =~ ^(2..|3..|401)$ ]]; then
            echo "ok (HTTP $code)"
        else
            echo "NO (HTTP $code)"
        fi
    fi
}

# _mc_where NAME - where NAME listens
function _mc_where {
    case $1 in
        mysql) echo "$MC_HOST:$MC_PORT_MYSQL" ;;
        epmd) echo "$MC_HOST:$MC_PORT_EPMD" ;;
        rabbit) echo "$MC_HOST:$MC_PORT_RABBIT" ;;
        memcached) echo "$MC_HOST:$MC_PORT_MEMCACHED" ;;
        xapisim) echo "$MC_XAPI_URL ($MINICLOUD_XAPI_POOLS x $MINICLOUD_XAPI_HOSTS hosts)" ;;
        n-cpu-*) echo "$(mc_compute "$1" host): $(mc_compute "$1" xapi_host) ($(mc_compute "$1" pool))" ;;
        ovn-nb|ovn-sb) echo "$MC_OVN_RUN/${1#ovn-}.sock" ;;
        ovn-northd) echo "$MC_OVN_NB -> $MC_OVN_SB" ;;
        ovn-cpu-*) echo "$(mc_ovn_chassis "n-${1#ovn-}" host) in $(mc_ovn_chassis "n-${1#ovn-}" netns)" ;;
        dom0-glance) echo "127.0.0.1:$MC_PORT_GLANCE in each compute's dom0" ;;
        keystone) echo "$MC_KEYSTONE_URL" ;;
        placement) echo "http://$MC_HOST:$MC_PORT_PLACEMENT" ;;
        glance) echo "http://$MC_HOST:$MC_PORT_GLANCE" ;;
        neutron) echo "http://$MC_HOST:$MC_PORT_NEUTRON" ;;
        n-api) echo "http://$MC_HOST:$MC_PORT_NOVA/v2.1" ;;
        c-api) echo "http://$MC_HOST:$MC_PORT_CINDER/v3" ;;
        c-tgt) echo "iscsi $MC_HOST:$MC_PORT_ISCSI (control port $MC_TGT_CONTROL_PORT)" ;;
        c-vol) echo "backend $MC_CINDER_BACKEND: ${MC_CINDER_VOLUMES#"$MINICLOUD_DIR"/}" ;;
        *) echo "(rpc)" ;;
    esac
}

function mc_status {
    local name pid answer line bad=0 up=0
    # the services nova-api knows: "BINARY HOST STATUS STATE" lines
    MC_NOVA_SERVICES=
    if mc_pid n-api >/dev/null; then
        MC_NOVA_SERVICES=$(openstack compute service list -f value \
            -c Binary -c Host -c Status -c State 2>/dev/null) \
            || MC_NOVA_SERVICES="(compute service list failed)"
    fi
    MC_CINDER_SERVICES=
    if mc_pid c-api >/dev/null; then
        MC_CINDER_SERVICES=$(mc_cinder_services) \
            || MC_CINDER_SERVICES="(volume service list failed)"
    fi
    printf '%-11s %-8s %-42s %s\n' service pid where answers
    for name in "${MC_SERVICES[@]}"; do
        if pid=$(mc_pid "$name"); then
            answer=$(_mc_answer "$name")
            up=$((up + 1))
            [[ $answer == NO* ]] && bad=$((bad + 1))
        else
            pid=-
            answer="NOT RUNNING"
            bad=$((bad + 1))
        fi
        printf '%-11s %-8s %-42s %s\n' "$name" "$pid" "$(_mc_where "$name")" "$answer"
    done
    if compgen -G "$MC_RUN/ovn-*.pid" >/dev/null; then
        answer=$(mc_ovn_root_link_state)
        [[ $answer == NO* ]] && bad=$((bad + 1))
        printf '%-11s %-8s %-42s %s\n' "$MC_ROOT_LINK" - \
            "root namespace -> provider LAN" "$answer"
    fi
    if [[ -n $MC_NOVA_SERVICES ]]; then
        echo
        while read -r line; do
            echo "nova: $line"
        done <<< "$MC_NOVA_SERVICES"
    fi
    if [[ -n $MC_CINDER_SERVICES ]]; then
        while read -r line; do
            echo "cinder: $line"
        done <<< "$MC_CINDER_SERVICES"
    fi
    if [[ $up -eq 0 ]]; then
        echo "minicloud: not running ($MINICLOUD_DIR)"
        return 3
    fi
    [[ $bad -eq 0 ]]
}

function mc_smoke {
    local rc=0
    local -a ovn=()
    if ! mc_pid n-api >/dev/null || [[ ! -s $MC_COMPUTE_TABLE ]]; then
        mc_die "not running: $0 up first"
    fi
    # ML2/OVN (if up ran it): each port claimed by its host's chassis
    if [[ -s $MC_OVN_CHASSIS_TABLE ]] && mc_pid ovn-sb >/dev/null; then
        ovn=(--ovn-sb "$MC_OVN_SB" --ovn-chassis "$MC_OVN_CHASSIS_TABLE")
    fi
    OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml OS_CLOUD=devstack-admin \
        "$MC_VENV/bin/python3" "$MC_TOOLS/smoke.py" \
        --openstack "$MC_VENV/bin/openstack" \
        --xapi-json "$MINICLOUD_DIR/xapisim.json" \
        --computes "$MC_COMPUTE_TABLE" --log-dir "$MC_LOG" \
        --image "$(_nova_xen_image_name)" --flavor m1.tiny \
        --network minicloud-net "${ovn[@]}" || rc=$?
    # UEFI Secure Boot with a vTPM, PCI passthrough and vGPU servers
    mc_hardware_check || rc=1
    # Cinder: a volume attached and detached as Nova does it
    if mc_pid c-api >/dev/null; then
        mc_cinder_check || rc=1
    fi
    return $rc
}

# mc_hardware_check - servers with UEFI Secure Boot and a vTPM, a PCI NIC
# and a vGPU, checked in placement, Nova's PCI tracker and xapisim
# (tools/minicloud/hardware_check.py); the refusals of what xapi cannot
# honour
function mc_hardware_check {
    local -a devices=()
    if [[ -s $MC_XAPI_DEVICES ]]; then
        devices=(--devices "$MC_XAPI_DEVICES")
    fi
    OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml OS_CLOUD=devstack-admin \
        "$MC_VENV/bin/python3" "$MC_TOOLS/hardware_check.py" \
        --xapi-json "$MINICLOUD_DIR/xapisim.json" \
        --computes "$MC_COMPUTE_TABLE" --nova-conf "$NOVA_CONF" \
        --image "$(_nova_xen_image_name)" --image-file "$(_nova_xen_image_file)" \
        --network minicloud-net "${devices[@]}"
}

function mc_usage {
    echo "usage: $0 up|down|status|smoke|tempest [--down] [--concurrency N] [--regex REGEX]   (MINICLOUD_DIR=$MINICLOUD_DIR)" >&2
    exit 2
}

# Sourced (tests/devstack): the functions only
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    return 0
fi

case "${1:-}" in
    up) mc_up ;;
    down) mc_down ;;
    status) mc_status ;;
    smoke)
        mc_localrc
        run_plugin      # its functions only: the test image's name
        mc_smoke
        ;;
    tempest)
        shift
        mc_localrc
        run_plugin      # its functions only: the test image
        mc_tempest "$@"
        ;;
    *) mc_usage ;;
esac
