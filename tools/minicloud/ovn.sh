#!/bin/bash
#
# tools/minicloud/ovn.sh - Neutron ML2/OVN for the minicloud (the default;
# MINICLOUD_NEUTRON=noagent runs the agentless test driver instead)
#
# As a devstack with OVN runs it, on one machine:
#
# - OVN central: the northbound and southbound ovsdb-servers and ovn-northd,
#   on unix sockets in run/ovn, their databases in data/ovn;
# - xapisim with real dom0 networking (--dom0-network ovs): every
#   simulated XCP-ng host is a network namespace with its own Open vSwitch
#   (userspace datapath), xenbr0 holding its underlay address (the Geneve
#   tunnels), xenbr1 on the provider LAN (physnet1), br-int;
# - one ovn-controller per nova-compute, inside its host's dom0 namespace
#   (in-dom0 mode), talking to that dom0's OVSDB; the dom0's Open_vSwitch
#   row says who it is: system-id the host's uuid, hostname the
#   nova-compute's [DEFAULT]host (Neutron binds a port to host H only
#   through a chassis whose hostname is H), Geneve from its xenbr0
#   address, br-int on the netdev datapath, physnet1 on xenbr1;
# - neutron-api under uWSGI (the pyuwsgi wheel: Neutron's OVN hash ring
#   takes the API worker count from uWSGI, and under gunicorn no OVN
#   event is ever handled, so ports never go ACTIVE) and
#   neutron-ovn-maintenance-worker;
# - Glance on 127.0.0.1 in each compute's dom0 too, relayed (socat) to
#   the root namespace's: the dom0 plugins, which run inside their host's
#   namespace, download and upload images there;
# - no metadata service (config drive, forced on in Nova), and live
#   migration activating the port on the destination at once (Xen guests
#   send no RARP after a move).
#
# - L3: the ovn-router service plugin, every chassis a gateway chassis
#   (a shortcut: a real deployment has network nodes), minicloud-net
#   external, a Geneve minicloud-private behind minicloud-router
#   (tools/minicloud/bootstrap.py); a link from the root namespace into
#   the provider LAN holding minicloud-net's gateway address.
#
# ``up`` then checks the chain on every compute (tools/minicloud/ovn_check.py):
# a server's port bound there, claimed by that host's chassis in the
# southbound database, ACTIVE in Neutron, the server answering ping and
# SSH from the root namespace; and a floating IP through the router.
#
# Needs common.sh and devstack_functions.sh.

MC_OVN_RUN=$MC_RUN/ovn
MC_OVN_DATA=$MC_DATA/ovn
MC_OVN_NB=unix:$MC_OVN_RUN/nb.sock
MC_OVN_SB=unix:$MC_OVN_RUN/sb.sock
# the chassis of each nova-compute: "SERVICE HOST HOST_UUID NETNS OVSDB
# OVS_RUNDIR UNDERLAY_IP" (tools/minicloud/computes.py --chassis)
MC_OVN_CHASSIS_TABLE=$MC_ETC/ovn-chassis
# the bridges of xapisim's dom0s: the integration bridge, and the one on
# the provider LAN
MC_OVN_BRIDGE=br-int
MC_OVN_PROVIDER_BRIDGE=xenbr1

# mc_ovn_enabled - the minicloud runs ML2/OVN (MINICLOUD_NEUTRON=ovn)
function mc_ovn_enabled {
    [[ $MINICLOUD_NEUTRON == ovn ]]
}

# mc_ovn_controller_services - ovn-cpu-N for each n-cpu-N
function mc_ovn_controller_services {
    local service
    for service in "${MC_COMPUTES[@]}"; do
        echo "ovn-${service#n-}"
    done
}


# OVN central
# -----------

# _mc_ovsdb_serves NAME SOCKET - the ovsdb-server of NAME answers there
function _mc_ovsdb_serves {
    ovsdb-client list-dbs "unix:$2" >/dev/null 2>&1
}

function mc_start_ovn_central {
    local db
    mkdir -p "$MC_OVN_RUN" "$MC_OVN_DATA"
    for db in nb sb; do
        rm -f "$MC_OVN_DATA/$db.db"
        mc_run "ovn-$db" ovsdb-tool create "$MC_OVN_DATA/$db.db" \
            "/usr/share/ovn/ovn-$db.ovsschema"
        mc_spawn "ovn-$db" "$MC_OVN_DATA" ovsdb-server "$MC_OVN_DATA/$db.db" \
            --remote="punix:$MC_OVN_RUN/$db.sock" \
            --unixctl="$MC_OVN_RUN/$db.ctl" -vconsole:info -vsyslog:off
    done
    for db in nb sb; do
        mc_wait "ovn-$db" "OVSDB on $MC_OVN_RUN/$db.sock" \
            _mc_ovsdb_serves "ovn-$db" "$MC_OVN_RUN/$db.sock"
    done
    mc_spawn ovn-northd "$MC_OVN_DATA" env OVN_RUNDIR="$MC_OVN_RUN" \
        ovn-northd --ovnnb-db="$MC_OVN_NB" --ovnsb-db="$MC_OVN_SB" \
        --unixctl="$MC_OVN_RUN/northd.ctl" -vconsole:info -vsyslog:off
    mc_wait ovn-northd "control socket" test -S "$MC_OVN_RUN/northd.ctl"
}


# The chassis
# -----------

# mc_ovn_chassis_table - $MC_OVN_CHASSIS_TABLE from xapisim's JSON line
function mc_ovn_chassis_table {
    "$MINICLOUD_PYTHON" "$MC_TOOLS/computes.py" --chassis \
        "$MINICLOUD_DIR/xapisim.json" "$MINICLOUD_COMPUTES" \
        > "$MC_OVN_CHASSIS_TABLE.new" \
        || mc_die "no dom0 networks in $MINICLOUD_DIR/xapisim.json: xapisim must run with --dom0-network ovs for ML2/OVN"
    mv "$MC_OVN_CHASSIS_TABLE.new" "$MC_OVN_CHASSIS_TABLE"
}

# mc_ovn_chassis SERVICE FIELD - a field of n-cpu-N's chassis: host,
# system_id, netns, ovsdb, rundir, encap_ip
function mc_ovn_chassis {
    mc_table_field "$MC_OVN_CHASSIS_TABLE" "$1" "$2" \
        host system_id netns ovsdb rundir encap_ip
}

# mc_ovn_external_ids SERVICE - the ovs-vsctl arguments that make the
# dom0 of SERVICE's host that compute's chassis (what devstack's
# lib/neutron_plugins/ovn_agent writes on a compute node)
function mc_ovn_external_ids {
    local service=$1
    printf '%s\n' set Open_vSwitch .
    echo "external_ids:system-id=$(mc_ovn_chassis "$service" system_id)"
    echo "external_ids:hostname=$(mc_ovn_chassis "$service" host)"
    echo "external_ids:ovn-remote=$MC_OVN_SB"
    echo "external_ids:ovn-encap-type=geneve"
    echo "external_ids:ovn-encap-ip=$(mc_ovn_chassis "$service" encap_ip)"
    echo "external_ids:ovn-bridge=$MC_OVN_BRIDGE"
    echo "external_ids:ovn-bridge-datapath-type=netdev"
    echo "external_ids:ovn-bridge-mappings=$MC_PHYSNET:$MC_OVN_PROVIDER_BRIDGE"
    # a gateway chassis too (routers' external ports, SNAT, floating IPs):
    # a shortcut of the minicloud, where every dom0 is on the provider
    # LAN; a real deployment puts its gateways on network nodes
    echo "external_ids:ovn-cms-options=enable-chassis-as-gw"
}

# mc_start_ovn_controllers - an ovn-controller in each compute's dom0
function mc_start_ovn_controllers {
    local service ovn netns ovsdb rundir
    local -a ids
    mc_ovn_chassis_table
    for service in "${MC_COMPUTES[@]}"; do
        ovn=ovn-${service#n-}
        netns=$(mc_ovn_chassis "$service" netns)
        ovsdb=$(mc_ovn_chassis "$service" ovsdb)
        rundir=$(mc_ovn_chassis "$service" rundir)
        [[ -n $netns && -n $ovsdb ]] \
            || mc_die "$service has no dom0 in $MC_OVN_CHASSIS_TABLE"
        mapfile -t ids < <(mc_ovn_external_ids "$service")
        mc_run "$ovn" ovs-vsctl --db="$ovsdb" --timeout=60 "${ids[@]}"
        mkdir -p "$MC_OVN_RUN/$service"
        # in the dom0's namespace, with that dom0's OVS_RUNDIR (its
        # br-int.mgmt OpenFlow socket); OVN_RUNDIR: its control socket
        mc_spawn "$ovn" "$MC_OVN_RUN/$service" ip netns exec "$netns" \
            env OVS_RUNDIR="$rundir" OVN_RUNDIR="$MC_OVN_RUN/$service" \
            ovn-controller "$ovsdb" -vconsole:info -vsyslog:off
    done
    for service in "${MC_COMPUTES[@]}"; do
        mc_wait "ovn-${service#n-}" "chassis $(mc_ovn_chassis "$service" host) in the southbound database" \
            _mc_ovn_chassis_registered "$(mc_ovn_chassis "$service" system_id)"
    done
}

# mc_start_dom0_glance - Glance for the dom0 plugins: they run inside
# their host's namespace, where 127.0.0.1 is that dom0's own loopback.  In
# each compute's dom0 a socat listens on 127.0.0.1:GLANCE_PORT and passes
# each connection through a unix socket to a socat in the root namespace,
# which connects to Glance: the dom0s reach Glance at the URL nova-compute
# gives them, as without dom0 networks, and the root namespace gets no
# address or route (xapisim's underlay, 192.0.2.0/24, may be the
# machine's own network).  One session: ``down`` stops all of them.
function mc_start_dom0_glance {
    local service
    local -a netns=()
    for service in "${MC_COMPUTES[@]}"; do
        netns+=("$(mc_ovn_chassis "$service" netns)")
    done
    # shellcheck disable=SC2016  # the script's own variables
    mc_spawn dom0-glance "$MC_OVN_RUN" bash -c '
        sock=$1 port=$2
        shift 2
        for ns in "$@"; do
            ip netns exec "$ns" socat \
                "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" \
                "UNIX-CONNECT:$sock" &
        done
        exec socat "UNIX-LISTEN:$sock,fork,unlink-early" \
            "TCP:127.0.0.1:$port"' dom0-glance "$MC_OVN_RUN/glance.sock" \
        "$MC_PORT_GLANCE" "${netns[@]}"
    for service in "${MC_COMPUTES[@]}"; do
        mc_wait dom0-glance "port $MC_PORT_GLANCE in the dom0 of $(mc_ovn_chassis "$service" host)" \
            _mc_dom0_listens "$(mc_ovn_chassis "$service" netns)" \
            "$MC_PORT_GLANCE"
    done
}

# _mc_dom0_listens NETNS PORT - something listens on 127.0.0.1:PORT there
function _mc_dom0_listens {
    ip netns exec "$1" ss -Hltn "src 127.0.0.1:$2" | grep -q .
}

# _mc_ovn_chassis_registered SYSTEM_ID - the SB has that chassis
function _mc_ovn_chassis_registered {
    [[ -n "$(ovn-sbctl --db="$MC_OVN_SB" --timeout=10 --bare --columns=name \
        find Chassis "name=$1")" ]]
}


# The root namespace's link into the provider LAN
# -----------------------------------------------
#
# Where Tempest and ``up``'s check run, servers on minicloud-net (flat on
# physnet1, every dom0's xenbr1) and floating IPs are reached through a
# veth from the root namespace into xapisim's provider LAN (its bridge
# br0, where every dom0's eth1 ends).  The root end holds the provider
# subnet's gateway address (devstack's br-ex holds the public subnet's
# gateway the same way), without forwarding (the guests get no way out
# through this machine) and without IPv6.  Transmit checksum offload is
# off at both ends, as on every dom0 veth of xapisim: the userspace
# datapath forwards a frame whose checksum the kernel left to the
# "hardware", and the guest drops it.

MC_ROOT_LINK=mc-lan
MC_ROOT_LINK_PEER=mc-root

# _mc_routes_to CIDR - the root namespace's routes that cover CIDR or
# lie inside it (the default route aside)
function _mc_routes_to {
    { ip -4 route show to match "$1"; ip -4 route show root "$1"; } \
        | { grep -v '^default' || true; } | sort -u
}

# mc_ovn_root_link_check - stop, in one line, if the root namespace
# already routes the provider subnet (a network of this machine's)
function mc_ovn_root_link_check {
    local routes
    # a link left by a minicloud whose xapisim was killed
    if ip link show dev "$MC_ROOT_LINK" >/dev/null 2>&1; then
        mc_run root-link ip link del "$MC_ROOT_LINK"
    fi
    routes=$(_mc_routes_to "$MC_SUBNET_CIDR" | paste -sd ';' -)
    if [[ -n $routes ]]; then
        mc_die "the root namespace already routes $MC_SUBNET_CIDR ($routes): set MINICLOUD_SUBNET_CIDR to a subnet this machine does not use"
    fi
}

# mc_ovn_root_link - the link, once xapisim's provider LAN is there
function mc_ovn_root_link {
    local netns bridge address
    read -r netns bridge address < <("$MINICLOUD_PYTHON" \
        "$MC_TOOLS/computes.py" --provider "$MINICLOUD_DIR/xapisim.json" \
        "$MC_SUBNET_CIDR" 2>> "$MC_LOG/root-link.log") || true
    [[ -n $address ]] \
        || mc_die "no provider LAN for the root namespace's link (log: $MC_LOG/root-link.log)"
    mc_run root-link ip link add "$MC_ROOT_LINK" type veth \
        peer name "$MC_ROOT_LINK_PEER" netns "$netns"
    mc_run root-link ip -n "$netns" link set "$MC_ROOT_LINK_PEER" \
        master "$bridge" up
    mc_run root-link ethtool -K "$MC_ROOT_LINK" tx off
    mc_run root-link ip netns exec "$netns" ethtool -K "$MC_ROOT_LINK_PEER" \
        tx off
    mc_run root-link sysctl -q -w \
        "net.ipv6.conf.$MC_ROOT_LINK.disable_ipv6=1" \
        "net.ipv4.conf.$MC_ROOT_LINK.forwarding=0"
    mc_run root-link ip addr add "$address" dev "$MC_ROOT_LINK"
    mc_run root-link ip link set "$MC_ROOT_LINK" up
    mc_say "root namespace: $MC_ROOT_LINK $address on the provider LAN ($bridge in $netns)"
}

# mc_ovn_root_link_down - remove it (it also goes with xapisim's LAN)
function mc_ovn_root_link_down {
    if ip link show dev "$MC_ROOT_LINK" >/dev/null 2>&1; then
        ip link del "$MC_ROOT_LINK" 2>/dev/null || true
    fi
}

# mc_ovn_root_link_state - "ok (ADDRESS)" or "NO (...)"
function mc_ovn_root_link_state {
    local address
    address=$(ip -br -4 addr show dev "$MC_ROOT_LINK" 2>/dev/null \
        | awk '{ print $2 " " $3 }') || true
    if [[ $address == UP* ]]; then
        echo "ok (${address#UP })"
    else
        echo "NO (${address:-no link $MC_ROOT_LINK})"
    fi
}


# Neutron
# -------

# mc_configure_neutron_ovn - ML2/OVN in ml2_conf.ini, uWSGI for the API
function mc_configure_neutron_ovn {
    iniset "$NEUTRON_ML2_CONF" ml2 type_drivers local,flat,geneve
    iniset "$NEUTRON_ML2_CONF" ml2 tenant_network_types geneve
    iniset "$NEUTRON_ML2_CONF" ml2 mechanism_drivers ovn
    iniset "$NEUTRON_ML2_CONF" ml2 overlay_ip_version 4
    iniset "$NEUTRON_ML2_CONF" ml2_type_geneve vni_ranges 1:65536
    iniset "$NEUTRON_ML2_CONF" ml2_type_geneve max_header_size 38
    iniset "$NEUTRON_ML2_CONF" ovn ovn_nb_connection "$MC_OVN_NB"
    iniset "$NEUTRON_ML2_CONF" ovn ovn_sb_connection "$MC_OVN_SB"
    # no metadata agent (it would run in each dom0): config drive
    iniset "$NEUTRON_ML2_CONF" ovn ovn_metadata_enabled False
    # a Xen guest announces itself with gratuitous ARP, never RARP:
    # activate a migrated port on the destination at once
    iniset "$NEUTRON_ML2_CONF" ovn live_migration_activation_strategy '""'
    # routers, SNAT and floating IPs in OVN (gateway chassis:
    # mc_ovn_external_ids); centralized floating IPs: one chassis, the
    # router's gateway, does the NAT
    iniset "$NEUTRON_CONF" DEFAULT service_plugins ovn-router
    iniset "$NEUTRON_ML2_CONF" ovn enable_distributed_floating_ip False
    cat > "$MC_ETC/neutron/neutron-uwsgi.ini" <<EOF
; neutron-api, written by tools/minicloud.sh (as devstack's
; write_uwsgi_config, on a TCP port instead of behind Apache)
[uwsgi]
http-socket = $MC_HOST:$MC_PORT_NEUTRON
module = neutron.wsgi.api:application
master = true
processes = 1
threads = 8
enable-threads = true
lazy-apps = true
thunder-lock = true
die-on-term = true
exit-on-reload = false
hook-master-start = unix_signal:15 gracefully_kill_them_all
worker-reload-mercy = 15
buffer-size = 65535
add-header = Connection: close
start-time = %t
procname-prefix = minicloud-
EOF
}

function mc_start_neutron_ovn {
    mc_spawn neutron "$MC_ETC/neutron" env \
        OS_NEUTRON_CONFIG_DIR="$MC_ETC/neutron" \
        OS_NEUTRON_CONFIG_FILES="neutron.conf;plugins/ml2/ml2_conf.ini" \
        "$MC_VENV/bin/uwsgi" --ini "$MC_ETC/neutron/neutron-uwsgi.ini"
    mc_spawn q-ovn-maint "$MC_DATA/neutron" \
        "$MC_VENV/bin/neutron-ovn-maintenance-worker" \
        --config-file "$NEUTRON_CONF" --config-file "$NEUTRON_ML2_CONF"
}


# The chain
# ---------

# mc_ovn_check - on every compute a server's port bound there, claimed by
# its chassis, ACTIVE, the server answering ping and SSH from the root
# namespace; minicloud-router's gateway on a chassis, a floating IP on a
# server of minicloud-private answering too; one line saying what
# failed, if something did
function mc_ovn_check {
    local line
    if line=$(OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml \
            OS_CLOUD=devstack-admin "$MC_VENV/bin/python3" \
            "$MC_TOOLS/ovn_check.py" --chassis "$MC_OVN_CHASSIS_TABLE" \
            --sb "$MC_OVN_SB" --image "$(_nova_xen_image_name)" \
            --flavor m1.tiny --network minicloud-net --reach \
            --private-network minicloud-private --router minicloud-router \
            2>> "$MC_LOG/ovn-check.log"); then
        mc_say "$line"
    else
        mc_die "ML2/OVN: ${line:-the chain check failed (log: $MC_LOG/ovn-check.log)}"
    fi
}
