#!/bin/bash
#
# tools/minicloud/common.sh - settings and helpers of tools/minicloud.sh
#
# Everything the minicloud creates lives under $MINICLOUD_DIR:
#
#     venv/         the services' Python (OpenStack from PyPI, nova-xen -e)
#     etc/          one directory per service, its config files
#     data/         databases, RabbitMQ, Glance's store, xapisim's state
#     log/          one log per service
#     run/          one pid file per service, sockets
#     files/        devstack's $FILES: the plugin's test image
#
# Each service runs in its own session (setsid), so that ``down`` can stop
# it with everything it forked, and nothing else.

# shellcheck disable=SC2034  # the settings are read by the other files

MC_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MC_REPO=$(cd "$MC_TOOLS/../.." && pwd)

MINICLOUD_DIR=${MINICLOUD_DIR:-$MC_REPO/.minicloud}
mkdir -p "$MINICLOUD_DIR"
MINICLOUD_DIR=$(cd "$MINICLOUD_DIR" && pwd)

MC_VENV=$MINICLOUD_DIR/venv
MC_ETC=$MINICLOUD_DIR/etc
MC_DATA=$MINICLOUD_DIR/data
MC_LOG=$MINICLOUD_DIR/log
MC_RUN=$MINICLOUD_DIR/run
MC_FILES=$MINICLOUD_DIR/files

# The Python the venv is made with (3.10 or later)
MINICLOUD_PYTHON=${MINICLOUD_PYTHON:-python3}
# Passwords of every account: MariaDB, Keystone's admin, service users
MINICLOUD_PASSWORD=${MINICLOUD_PASSWORD:-minicloud}
# xapisim: pools, and hosts in each pool
MINICLOUD_XAPI_POOLS=${MINICLOUD_XAPI_POOLS:-2}
MINICLOUD_XAPI_HOSTS=${MINICLOUD_XAPI_HOSTS:-2}
# The hosts the nova-computes manage, one nova-compute each, as POOL.HOST
# (xapisim's numbering, from 1): two hosts of pool 1 and one of pool 2
MINICLOUD_COMPUTES=${MINICLOUD_COMPUTES:-1.1 1.2 2.1}
# The host (POOL.HOST, one of MINICLOUD_COMPUTES) that xapisim gives a GPU
# (an NVIDIA Tesla T4, vGPU type GRID T4-4Q) and a NIC (an Intel 82599)
# hidden from dom0, which Nova passes through (tools/minicloud/infra.sh);
# empty: no devices anywhere
MINICLOUD_DEVICE_HOST=${MINICLOUD_DEVICE_HOST-1.1}
# The pools (numbers, from 1) where the operator installed the Secure Boot
# certificates (``secureboot-certs install``): by default the first only,
# so that the other shows a pool the scheduler keeps Secure Boot guests off
MINICLOUD_SECUREBOOT_POOLS=${MINICLOUD_SECUREBOOT_POOLS-1}
# True: debug logging in the OpenStack services
MINICLOUD_DEBUG=${MINICLOUD_DEBUG:-True}
# Seconds a service may take to answer after it started
MINICLOUD_START_TIMEOUT=${MINICLOUD_START_TIMEOUT:-120}
# True: Cinder (api, scheduler, volume) with tgt and the file-backed test
# backend (tools/minicloud/cinder.sh)
MINICLOUD_CINDER=${MINICLOUD_CINDER:-True}
# Neutron's mechanism driver: ovn (ML2/OVN with OVN central, xapisim's
# dom0 networks and an ovn-controller per compute: tools/minicloud/ovn.sh)
# or noagent (the fallback: tools/minicloud/neutron_noagent binds every
# port and sets it ACTIVE, nothing carries a packet)
MINICLOUD_NEUTRON=${MINICLOUD_NEUTRON:-ovn}

# Ports, all on loopback (xapisim's hosts: 127.0.0.2, 127.0.0.3, ...)
MC_HOST=127.0.0.1
MC_PORT_MYSQL=${MINICLOUD_PORT_MYSQL:-3306}
MC_PORT_RABBIT=${MINICLOUD_PORT_RABBIT:-5672}
MC_PORT_RABBIT_DIST=${MINICLOUD_PORT_RABBIT_DIST:-25672}
MC_PORT_EPMD=${MINICLOUD_PORT_EPMD:-4369}
MC_PORT_MEMCACHED=${MINICLOUD_PORT_MEMCACHED:-11211}
MC_PORT_KEYSTONE=${MINICLOUD_PORT_KEYSTONE:-5000}
MC_PORT_NOVA=${MINICLOUD_PORT_NOVA:-8774}
MC_PORT_PLACEMENT=${MINICLOUD_PORT_PLACEMENT:-8778}
MC_PORT_GLANCE=${MINICLOUD_PORT_GLANCE:-9292}
MC_PORT_NEUTRON=${MINICLOUD_PORT_NEUTRON:-9696}
MC_PORT_XAPI=${MINICLOUD_PORT_XAPI:-8080}
MC_PORT_CINDER=${MINICLOUD_PORT_CINDER:-8776}
MC_PORT_NOVNC=${MINICLOUD_PORT_NOVNC:-6080}
# [filter_scheduler]enabled_filters, as devstack's lib/nova sets them
MC_NOVA_FILTERS=ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter
MC_NOVA_FILTERS+=,ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter
MC_NOVA_FILTERS+=,SameHostFilter,DifferentHostFilter
# with the device host (MINICLOUD_DEVICE_HOST): its NIC for Nova's PCI
# tracker, a flavor's alias for it, the vGPU type (xapi's VGPU_type
# model name), and the filter that places PCI requests (it passes every
# request without one: Tempest's flavors still fit every host)
MC_PCI_DEVICE_SPEC='{"vendor_id": "8086", "product_id": "10fb"}'
MC_PCI_ALIAS='{"name": "nic", "vendor_id": "8086", "product_id": "10fb", "device_type": "type-PCI"}'
MC_VGPU_TYPE='GRID T4-4Q'
MC_PCI_FILTER=PciPassthroughFilter
# the minicloud's tgtd: iSCSI portal, and its management socket
# (/var/run/tgtd/socket.N: a system tgtd has N=0)
MC_PORT_ISCSI=${MINICLOUD_PORT_ISCSI:-3260}
MC_TGT_CONTROL_PORT=${MINICLOUD_TGT_CONTROL_PORT:-3260}

MC_KEYSTONE_URL=http://$MC_HOST:$MC_PORT_KEYSTONE/v3
MC_DB_URL=mysql+pymysql://openstack:$MINICLOUD_PASSWORD@$MC_HOST:$MC_PORT_MYSQL
MC_RABBIT_URL=rabbit://guest:guest@$MC_HOST:$MC_PORT_RABBIT/
MC_MEMCACHED=$MC_HOST:$MC_PORT_MEMCACHED

# The nova-computes: n-cpu-1, n-cpu-2, ... (one per word of
# MINICLOUD_COMPUTES; for a minicloud that is up, one per line of the
# compute table ``up`` wrote, whatever MINICLOUD_COMPUTES says now)
MC_COMPUTE_TABLE=$MC_ETC/computes
MC_COMPUTES=()
function mc_set_computes {
    local count i words
    if [[ -s $MC_COMPUTE_TABLE ]]; then
        count=$(grep -c . "$MC_COMPUTE_TABLE")
    else
        read -ra words <<< "$MINICLOUD_COMPUTES"
        count=${#words[@]}
    fi
    MC_COMPUTES=()
    for ((i = 1; i <= count; i++)); do
        MC_COMPUTES+=("n-cpu-$i")
    done
    # Services in start order (``down`` stops the OpenStack ones and the
    # ovn-controllers, then xapisim and OVN central, then tgtd, memcached,
    # RabbitMQ and MariaDB, then epmd);
    # Cinder's if enabled, or if ``up`` started them (whatever
    # MINICLOUD_CINDER says now)
    local cinder=False
    if mc_cinder_enabled || compgen -G "$MC_RUN/c-*.pid" >/dev/null; then
        cinder=True
    fi
    # OVN's if ML2/OVN, or if ``up`` started them: OVN central, an
    # ovn-controller per compute (ovn-cpu-N for n-cpu-N), the dom0s' way
    # to Glance, Neutron's maintenance worker
    local ovn=False
    if [[ $MINICLOUD_NEUTRON == ovn ]] || \
            compgen -G "$MC_RUN/ovn-*.pid" >/dev/null; then
        ovn=True
    fi
    MC_SERVICES=(mysql epmd rabbit memcached xapisim)
    if [[ $ovn == True ]]; then
        MC_SERVICES+=(ovn-nb ovn-sb ovn-northd)
        for ((i = 1; i <= count; i++)); do
            MC_SERVICES+=("ovn-cpu-$i")
        done
        MC_SERVICES+=(dom0-glance)
    fi
    [[ $cinder == True ]] && MC_SERVICES+=(c-tgt)
    MC_SERVICES+=(keystone placement glance neutron)
    [[ $ovn == True ]] && MC_SERVICES+=(q-ovn-maint)
    MC_SERVICES+=(n-api n-cond n-sch n-novnc)
    [[ $cinder == True ]] && MC_SERVICES+=(c-api c-sch c-vol)
    MC_SERVICES+=("${MC_COMPUTES[@]}")
}

# mc_cinder_enabled - the minicloud runs Cinder (MINICLOUD_CINDER: True,
# the default, or False)
function mc_cinder_enabled {
    [[ ${MINICLOUD_CINDER,,} =~ ^(true|yes|1)$ ]]
}
mc_set_computes

# OpenStack from PyPI, into $MC_VENV (and mfusepy: xapisim's FUSE files of
# the LUNs its guests boot from, xapisim/lunfile.py)
MC_PIP_PACKAGES=(
    'keystone==30.*' 'openstack-placement==16.*' 'glance==33.*'
    'neutron==29.*' 'nova==34.*' python-openstackclient gunicorn pyuwsgi
    PyMySQL python-memcached 'SQLAlchemy<2.1' 'setuptools>=64' wheel
    'mfusepy>=3.1.1'
)
# Cinder, installed after them, constrained to the versions they brought
MC_CINDER_PIP_PACKAGES=('cinder==29.*')
# Debian packages of the infrastructure services (novnc: the web client
# nova-novncproxy serves, as devstack's n-novnc does; tgt: Cinder's iSCSI
# target; qemu-utils: qemu-img, which writes images into volumes)
MC_APT_PACKAGES=(mariadb-server mariadb-client rabbitmq-server memcached curl
    novnc)
if mc_cinder_enabled; then
    MC_APT_PACKAGES+=(tgt qemu-utils)
fi
# ML2/OVN: OVN central and ovn-controller, the dom0s' Open vSwitch, what
# xapisim's dom0 networks use (iproute2, ethtool), the dom0s' relay to
# Glance (socat), what xapisim's booting guests run (udhcpc, dropbear,
# busybox's ping and nc), libfuse3 for the files of the LUNs they boot
# from (xapisim/lunfile.py; as root it mounts without fusermount3) and the
# root namespace's ping (Tempest's connectivity checks,
# tools/minicloud/ovn_check.py)
if [[ $MINICLOUD_NEUTRON == ovn ]]; then
    MC_APT_PACKAGES+=(ovn-central ovn-host openvswitch-switch iproute2 ethtool
        socat iputils-ping udhcpc dropbear-bin busybox libfuse3-3)
fi


# Messages
# --------

function mc_say {
    printf '%s minicloud: %s\n' "$(date +%H:%M:%S)" "$*"
}

function mc_die {
    local name running=""
    printf 'minicloud: error: %s\n' "$*" >&2
    for name in "${MC_SERVICES[@]}"; do
        if mc_pid "$name" >/dev/null; then
            running+=" $name"
        fi
    done
    if [[ -n $running ]]; then
        echo "minicloud: still running:$running (logs: $MC_LOG; stop them: $0 down)" >&2
    fi
    exit 1
}


# Processes
# ---------

# mc_alive PID - PID is a live process (not a zombie: what ``up`` started
# is reaped by init, maybe seconds after it exited)
function mc_alive {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $state && $state != Z* ]]
}

# mc_started PID - when PID started (clock ticks since boot, field 22 of
# /proc/PID/stat): a pid and its start time name one process for good,
# whatever reuses the pid later
function mc_started {
    local stat fields
    stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
    # the command name (field 2) may hold spaces and parentheses
    read -ra fields <<< "${stat##*) }"
    echo "${fields[19]}"
}

# mc_pid NAME - the pid in NAME's pid file, if that very process is alive
# (same pid, same start time: a stale file never names another process)
function mc_pid {
    local file=$MC_RUN/$1.pid pid started
    [[ -s $file ]] || return 1
    read -r pid started < "$file"
    [[ $pid =~ ^[0-9]+$ && $started =~ ^[0-9]+$ ]] || return 1
    mc_alive "$pid" || return 1
    [[ "$(mc_started "$pid")" == "$started" ]] || return 1
    echo "$pid"
}

# mc_spawn NAME DIR COMMAND... - run COMMAND in DIR in a session of its
# own, output appended to log/NAME.log, its pid and start time in
# run/NAME.pid.  (A background job of a script is no process group
# leader, so setsid execs COMMAND in place: $! is COMMAND's pid, and its
# process group; exec keeps the start time.)
function mc_spawn {
    local name=$1 dir=$2 pid
    shift 2
    mkdir -p "$MC_LOG" "$MC_RUN"
    echo "=== $(date '+%F %T') $*" >> "$MC_LOG/$name.log"
    (cd "$dir" && exec setsid "$@") >> "$MC_LOG/$name.log" 2>&1 < /dev/null &
    pid=$!
    echo "$pid $(mc_started "$pid")" > "$MC_RUN/$name.pid"
}

# mc_stop NAME... - stop those services, each with its session: SIGTERM to
# all at once, SIGKILL to what is left after 15 s
function mc_stop {
    local name pid i
    local -A pids=() groups=()
    for name in "$@"; do
        if ! pid=$(mc_pid "$name"); then
            rm -f "$MC_RUN/$name.pid"
            continue
        fi
        pids[$name]=$pid
        # the whole session only if it is the one mc_spawn started
        if [[ "$(ps -o pgid= -p "$pid" | tr -d ' ')" == "$pid" ]]; then
            groups[$name]=$pid
            kill -TERM -- "-$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for ((i = 0; i < 150; i++)); do
        for name in "${!pids[@]}"; do
            if ! mc_alive "${pids[$name]}"; then
                unset "pids[$name]"
                rm -f "$MC_RUN/$name.pid"
            fi
        done
        [[ ${#pids[@]} -eq 0 ]] && break
        sleep 0.1
    done
    for name in "${!pids[@]}"; do
        mc_say "$name (${pids[$name]}) ignored SIGTERM for 15 s: SIGKILL"
        kill -KILL "${pids[$name]}" 2>/dev/null || true
        rm -f "$MC_RUN/$name.pid"
    done
    # what the sessions forked and left behind (gunicorn workers, plugins)
    for name in "${!groups[@]}"; do
        if pgrep -g "${groups[$name]}" >/dev/null 2>&1; then
            kill -KILL -- "-${groups[$name]}" 2>/dev/null || true
        fi
    done
}

# mc_table_field TABLE SERVICE FIELD NAMES... - field FIELD (one of
# NAMES, the table's columns after the first) of SERVICE's line of TABLE
function mc_table_field {
    local table=$1 service=$2 field=$3 n=2 name
    shift 3
    for name in "$@"; do
        if [[ $name == "$field" ]]; then
            awk -v s="$service" -v f="$n" '$1 == s { print $f }' \
                "$table" 2>/dev/null
            return 0
        fi
        n=$((n + 1))
    done
    mc_die "$(basename "$table"): no field $field"
}

# mc_log_tail NAME - the end of NAME's log, on stderr
function mc_log_tail {
    echo "--- last lines of $MC_LOG/$1.log:" >&2
    tail -n 25 "$MC_LOG/$1.log" >&2 || true
}


# Waiting
# -------

# mc_tcp_open PORT [HOST] - something accepts connections there
function mc_tcp_open {
    (exec 3<>"/dev/tcp/${2:-$MC_HOST}/$1") 2>/dev/null
}

# mc_http_code URL - the HTTP status of a GET (000: no answer)
function mc_http_code {
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true
}

# mc_http_ok URL - an HTTP service answers: 2xx, 3xx or 401
function mc_http_ok {
    [[ "$(mc_http_code "$1")" =~ ^(2..|3..|401)$ ]]
}

# mc_wait NAME WHAT CHECK... - wait until CHECK succeeds while NAME runs
function mc_wait {
    local name=$1 what=$2 i
    shift 2
    for ((i = 0; i < MINICLOUD_START_TIMEOUT * 5; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ! mc_pid "$name" >/dev/null; then
            mc_log_tail "$name"
            mc_die "$name exited before $what"
        fi
        sleep 0.2
    done
    mc_log_tail "$name"
    mc_die "$name: no $what after $MINICLOUD_START_TIMEOUT s"
}

# mc_run LOGNAME COMMAND... - run COMMAND, output into log/LOGNAME.log;
# on failure show its end and stop
function mc_run {
    local name=$1
    shift
    mkdir -p "$MC_LOG"
    echo "=== $(date '+%F %T') $*" >> "$MC_LOG/$name.log"
    if ! "$@" >> "$MC_LOG/$name.log" 2>&1; then
        mc_log_tail "$name"
        mc_die "$* failed (log: $MC_LOG/$name.log)"
    fi
}
