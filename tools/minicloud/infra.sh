#!/bin/bash
#
# tools/minicloud/infra.sh - MariaDB, RabbitMQ, memcached and xapisim
#
# Debian's packages, started without systemd, as root, with every file
# under $MINICLOUD_DIR.  Needs common.sh.

# Install
# -------

# mc_install_apt - the Debian packages of the infrastructure services
# (their postinst does not start them: policy-rc.d, or no init system)
function mc_install_apt {
    local missing=() package
    for package in "${MC_APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f '${Status}' "$package" 2>/dev/null \
                | grep -q 'ok installed'; then
            missing+=("$package")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    mc_say "apt-get install ${missing[*]}"
    if [[ ! -d /var/lib/apt/lists ]] || \
            [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit)" ]]; then
        mc_run apt apt-get update -q
    fi
    DEBIAN_FRONTEND=noninteractive mc_run apt apt-get install -y -q \
        --no-install-recommends "${missing[@]}"
}


# MariaDB
# -------

MC_MYSQL_SOCKET=$MC_RUN/mysqld.sock
MC_DATABASES=(keystone placement glance neutron nova_api nova nova_cell0)
if mc_cinder_enabled; then
    MC_DATABASES+=(cinder)
fi

function mc_mysql {
    mariadb --no-defaults --socket="$MC_MYSQL_SOCKET" -uroot "$@"
}

function mc_start_mysql {
    local datadir=$MC_DATA/mysql
    if [[ ! -d $datadir/mysql ]]; then
        mkdir -p "$datadir"
        mc_run mysql mariadb-install-db --no-defaults --user=root \
            --datadir="$datadir" --auth-root-authentication-method=socket \
            --skip-test-db
    fi
    mc_spawn mysql "$MC_DATA" mariadbd --no-defaults --user=root \
        --datadir="$datadir" --socket="$MC_MYSQL_SOCKET" \
        --bind-address="$MC_HOST" --port="$MC_PORT_MYSQL" \
        --pid-file="$datadir/mariadbd.pid" --log-error="$MC_LOG/mysql.log" \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
        --max-connections=1024 --innodb-buffer-pool-size=256M \
        --innodb-flush-log-at-trx-commit=0 --skip-log-bin
}

# mc_init_mysql - the service databases and their account (from scratch)
function mc_init_mysql {
    local db sql=""
    mc_wait mysql "socket" test -S "$MC_MYSQL_SOCKET"
    mc_wait mysql "answer on its socket" mc_mysql -e 'SELECT 1' --silent
    for db in "${MC_DATABASES[@]}"; do
        sql+="DROP DATABASE IF EXISTS $db; CREATE DATABASE $db CHARACTER SET utf8mb4;"
    done
    sql+="CREATE USER IF NOT EXISTS 'openstack'@'$MC_HOST' IDENTIFIED BY '$MINICLOUD_PASSWORD';"
    sql+="CREATE USER IF NOT EXISTS 'openstack'@'localhost' IDENTIFIED BY '$MINICLOUD_PASSWORD';"
    sql+="GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'$MC_HOST';"
    sql+="GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'localhost';"
    mc_run mysql mc_mysql -e "$sql"
}


# RabbitMQ
# --------

# Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user; the
# script behind it runs as anyone, with RABBITMQ_* saying where things are
MC_RABBIT_BIN=/usr/lib/rabbitmq/bin

function _mc_rabbit_env {
    local base=$MC_DATA/rabbitmq
    echo "HOME=$base"
    echo "RABBITMQ_NODENAME=minicloud@localhost"
    echo "RABBITMQ_NODE_IP_ADDRESS=$MC_HOST"
    echo "RABBITMQ_NODE_PORT=$MC_PORT_RABBIT"
    echo "RABBITMQ_DIST_PORT=$MC_PORT_RABBIT_DIST"
    echo "ERL_EPMD_ADDRESS=$MC_HOST"
    echo "ERL_EPMD_PORT=$MC_PORT_EPMD"
    echo "RABBITMQ_CONF_ENV_FILE=$MC_ETC/rabbitmq/rabbitmq-env.conf"
    echo "RABBITMQ_CONFIG_FILE=$MC_ETC/rabbitmq/rabbitmq.conf"
    echo "RABBITMQ_ADVANCED_CONFIG_FILE=$MC_ETC/rabbitmq/advanced.config"
    echo "RABBITMQ_ENABLED_PLUGINS_FILE=$MC_ETC/rabbitmq/enabled_plugins"
    echo "RABBITMQ_MNESIA_BASE=$base/mnesia"
    echo "RABBITMQ_LOG_BASE=$MC_LOG/rabbitmq"
    echo "RABBITMQ_LOGS=-"
    echo "RABBITMQ_PID_FILE=$base/beam.pid"
}

# mc_rabbit COMMAND ARGS... - a RabbitMQ command in the minicloud's env
function mc_rabbit {
    local -a env
    mapfile -t env < <(_mc_rabbit_env)
    env "${env[@]}" "$MC_RABBIT_BIN/$1" "${@:2}"
}

function mc_start_rabbit {
    mkdir -p "$MC_ETC/rabbitmq" "$MC_DATA/rabbitmq" "$MC_LOG/rabbitmq"
    : > "$MC_ETC/rabbitmq/rabbitmq-env.conf"
    echo '[].' > "$MC_ETC/rabbitmq/enabled_plugins"
    echo '[].' > "$MC_ETC/rabbitmq/advanced.config"
    cat > "$MC_ETC/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.default = $MC_HOST:$MC_PORT_RABBIT
loopback_users.guest = true
log.console = true
log.file = false
EOF
    # epmd, the Erlang port mapper, as a service of ours: rabbit would
    # otherwise start one that outlives it
    mc_spawn epmd "$MC_DATA" env ERL_EPMD_ADDRESS="$MC_HOST" \
        epmd -port "$MC_PORT_EPMD"
    mc_wait epmd "epmd port" mc_tcp_open "$MC_PORT_EPMD"
    local -a env
    mapfile -t env < <(_mc_rabbit_env)
    mc_spawn rabbit "$MC_DATA" env "${env[@]}" "$MC_RABBIT_BIN/rabbitmq-server"
}

function mc_wait_rabbit {
    mc_wait rabbit "AMQP port $MC_PORT_RABBIT" mc_tcp_open "$MC_PORT_RABBIT"
}


# memcached
# ---------

function mc_start_memcached {
    mc_spawn memcached "$MC_DATA" memcached -u root -l "$MC_HOST" \
        -p "$MC_PORT_MEMCACHED" -U 0 -m 64
}


# xapisim
# -------

# xapisim serves host n (counted across its pools) on 127.0.0.(n+1): the
# first pool's master is 127.0.0.2
MC_XAPI_URL=http://127.0.0.2:$MC_PORT_XAPI
MC_XAPI_USER=root

# mc_xapi_addresses - the loopback address of every xapisim host
function mc_xapi_addresses {
    local n
    for ((n = 1; n <= MINICLOUD_XAPI_POOLS * MINICLOUD_XAPI_HOSTS; n++)); do
        echo "127.0.0.$((n + 1))"
    done
}

# The devices xapisim gives MINICLOUD_DEVICE_HOST (README, "PCI devices
# and GPUs (--devices)")
MC_XAPI_DEVICES=$MC_ETC/xapisim-devices.json

# mc_xapi_host_name POOL.HOST - xapisim's name of that host
function mc_xapi_host_name {
    echo "xcp-ng-${1%%.*}-${1#*.}"
}

# mc_xapi_devices HOST_NAME - xapisim's --devices: on that host, an Intel
# 82599 NIC and an NVIDIA Tesla T4 (16 units: four GRID T4-4Q vGPUs), both
# hidden from dom0 (xen-pciback.hide) as an operator leaves them for guests
function mc_xapi_devices {
    cat <<EOF
{"vgpu_types": [{"model_name": "$MC_VGPU_TYPE",
                 "vendor_name": "NVIDIA Corporation",
                 "implementation": "nvidia", "size": 4, "max_heads": 4,
                 "framebuffer_size": 4294967296}],
 "hosts": {"$1": {"pci": [
    {"pci_id": "0000:04:00.0", "class_id": "0200",
     "class_name": "Ethernet controller", "vendor_id": "8086",
     "device_id": "10fb", "vendor_name": "Intel Corporation",
     "device_name": "82599ES 10-Gigabit SFI/SFP+ Network Connection",
     "dom0_access": "disabled", "driver_name": "pciback"},
    {"pci_id": "0000:81:00.0", "class_id": "0302",
     "class_name": "3D controller", "vendor_id": "10de",
     "device_id": "1eb8", "vendor_name": "NVIDIA Corporation",
     "device_name": "TU104GL [Tesla T4]",
     "dom0_access": "disabled", "driver_name": "pciback",
     "gpu": {"group": "Tesla T4", "size": 16, "types": ["$MC_VGPU_TYPE"]}}]}}}
EOF
}

# mc_start_xapisim - its pools, in one process (xapisim moves VMs between
# pools of one process only); with ML2/OVN each host with a real dom0
# network (a namespace with its own Open vSwitch, VIFs plugged as veths:
# README, "Real dom0 networking")
function mc_start_xapisim {
    local -a dom0=() devices=()
    if [[ $MINICLOUD_NEUTRON == ovn ]]; then
        dom0=(--dom0-network ovs)
    fi
    if [[ -n $MINICLOUD_DEVICE_HOST ]]; then
        mkdir -p "$MC_ETC"
        mc_xapi_devices "$(mc_xapi_host_name "$MINICLOUD_DEVICE_HOST")" \
            > "$MC_XAPI_DEVICES"
        devices=(--devices "$MC_XAPI_DEVICES")
    fi
    mkdir -p "$MC_DATA/xapisim"
    mc_spawn xapisim "$MC_DATA/xapisim" "$MC_VENV/bin/python3" -u -m xapisim \
        --pools "$MINICLOUD_XAPI_POOLS" --hosts "$MINICLOUD_XAPI_HOSTS" \
        --port "$MC_PORT_XAPI" "${dom0[@]}" "${devices[@]}" \
        --state-dir "$MC_DATA/xapisim" --username "$MC_XAPI_USER" \
        --password "$MINICLOUD_PASSWORD"
}

# mc_wait_xapisim - its JSON line, kept in xapisim.json
function mc_wait_xapisim {
    mc_wait xapisim "JSON line" grep -q '^{"pools"' "$MC_LOG/xapisim.log"
    grep '^{"pools"' "$MC_LOG/xapisim.log" | tail -n 1 > "$MINICLOUD_DIR/xapisim.json"
    if ! grep -q "\"master\": \"$MC_XAPI_URL\"" "$MINICLOUD_DIR/xapisim.json"; then
        mc_die "xapisim's pool master is not $MC_XAPI_URL: $(<"$MINICLOUD_DIR/xapisim.json")"
    fi
}

# mc_secureboot_certs - as an operator runs ``secureboot-certs install`` on
# the master of each pool of MINICLOUD_SECUREBOOT_POOLS: PK, KEK, db and
# dbx in its hosts' /var/lib/varstored (xapisim's control interface does
# what the command leaves in dom0); before the nova-computes start, so that
# their first report has COMPUTE_SECURITY_UEFI_SECURE_BOOT
function mc_secureboot_certs {
    local pool master readiness
    for pool in $MINICLOUD_SECUREBOOT_POOLS; do
        master=$(_mc_pool_master "$pool") || \
            mc_die "MINICLOUD_SECUREBOOT_POOLS: xapisim has no pool $pool ($MINICLOUD_XAPI_POOLS pool(s))"
        readiness=$(curl -s -m 30 -u "$MC_XAPI_USER:$MINICLOUD_PASSWORD" \
            -H 'Content-Type: application/json' \
            -d '{"files": ["PK", "KEK", "db", "dbx"]}' \
            "$master/_xapisim/secureboot_certs" 2>/dev/null) || true
        if [[ $readiness != *'"ready"'* ]]; then
            mc_die "Secure Boot certificates for pool $pool ($master): ${readiness:-no answer}"
        fi
        mc_say "pool $pool ($master): Secure Boot certificates installed, the pool is ready"
    done
}

# _mc_pool_master N - the master's URL of xapisim's pool N (from 1)
function _mc_pool_master {
    "$MINICLOUD_PYTHON" -c 'import json, sys
pools = json.load(open(sys.argv[1]))["pools"]
n = int(sys.argv[2])
if not 1 <= n <= len(pools):
    sys.exit(1)
print(pools[n - 1]["master"])' "$MINICLOUD_DIR/xapisim.json" "$1"
}
