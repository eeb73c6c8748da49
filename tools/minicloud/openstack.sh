#!/bin/bash
#
# tools/minicloud/openstack.sh - Keystone, Placement, Glance, Neutron and
# Nova from PyPI, configured as devstack's lib/* configure them
#
# The APIs run under gunicorn, one process each (gthread workers), on
# 127.0.0.1 (neutron-api with ML2/OVN under uWSGI: tools/minicloud/ovn.sh); nova-conductor, -scheduler and the nova-computes (one per
# xapisim host of MINICLOUD_COMPUTES) as plain processes.
# Needs common.sh and devstack_functions.sh.

# Install
# -------

# mc_install_venv - OpenStack into $MC_VENV (skipped when the same package
# list is there already)
function mc_install_venv {
    local stamp=$MC_VENV/.minicloud-packages want
    want=$(printf '%s\n' "${MC_PIP_PACKAGES[@]}")
    if [[ -x $MC_VENV/bin/python3 && -f $stamp && "$(<"$stamp")" == "$want" ]]; then
        return 0
    fi
    if [[ ! -x $MC_VENV/bin/python3 ]]; then
        mc_say "creating $MC_VENV"
        mc_run pip "$MINICLOUD_PYTHON" -m venv "$MC_VENV"
        mc_run pip "$MC_VENV/bin/pip" install -q --upgrade pip setuptools wheel
    fi
    mc_say "pip install ${MC_PIP_PACKAGES[*]} (a few minutes the first time)"
    mc_run pip "$MC_VENV/bin/pip" install --disable-pip-version-check \
        "${MC_PIP_PACKAGES[@]}"
    echo "$want" > "$stamp"
}

# mc_install_noagent_driver - the agentless ML2 mechanism driver (the
# MINICLOUD_NEUTRON=noagent fallback)
function mc_install_noagent_driver {
    mc_run pip "$MC_VENV/bin/pip" install --disable-pip-version-check \
        --no-deps --no-build-isolation "$MC_TOOLS/neutron_noagent"
}


# Common configuration
# --------------------

# mc_conf_authtoken FILE USER - [keystone_authtoken] for service USER
function mc_conf_authtoken {
    local file=$1 user=$2
    iniset "$file" keystone_authtoken www_authenticate_uri "$MC_KEYSTONE_URL"
    iniset "$file" keystone_authtoken auth_url "$MC_KEYSTONE_URL"
    iniset "$file" keystone_authtoken auth_type password
    iniset "$file" keystone_authtoken project_domain_name Default
    iniset "$file" keystone_authtoken user_domain_name Default
    iniset "$file" keystone_authtoken project_name service
    iniset "$file" keystone_authtoken username "$user"
    iniset "$file" keystone_authtoken password "$MINICLOUD_PASSWORD"
    iniset "$file" keystone_authtoken memcached_servers "$MC_MEMCACHED"
    iniset "$file" keystone_authtoken service_token_roles_required True
}

# mc_conf_auth FILE SECTION USER - a keystoneauth password plugin section
function mc_conf_auth {
    local file=$1 section=$2 user=$3
    iniset "$file" "$section" auth_type password
    iniset "$file" "$section" auth_url "$MC_KEYSTONE_URL"
    iniset "$file" "$section" project_domain_name Default
    iniset "$file" "$section" user_domain_name Default
    iniset "$file" "$section" project_name service
    iniset "$file" "$section" username "$user"
    iniset "$file" "$section" password "$MINICLOUD_PASSWORD"
    iniset "$file" "$section" region_name RegionOne
}

# mc_conf_common FILE SERVICE - logging, database, lock path
function mc_conf_common {
    local file=$1 service=$2
    iniset "$file" DEFAULT debug "$MINICLOUD_DEBUG"
    iniset "$file" DEFAULT use_stderr True
    iniset "$file" oslo_concurrency lock_path "$MC_DATA/$service/lock"
    mkdir -p "$MC_DATA/$service/lock"
}

# mc_gunicorn NAME DIR APP PORT - gunicorn.conf.py in DIR for APP
# (run from DIR with no arguments: the services that read sys.argv for
# oslo.config options then find none)
function mc_gunicorn {
    local name=$1 dir=$2 app=$3 port=$4
    cat > "$dir/gunicorn.conf.py" <<EOF
# $name, written by tools/minicloud.sh
wsgi_app = '$app'
bind = '$MC_HOST:$port'
workers = 1
worker_class = 'gthread'
threads = 8
timeout = 600
graceful_timeout = 5
proc_name = 'minicloud-$name'
accesslog = '-'
EOF
}


# Keystone
# --------

KEYSTONE_CONF=$MC_ETC/keystone/keystone.conf

function mc_configure_keystone {
    mkdir -p "$MC_ETC/keystone" "$MC_DATA/keystone"
    mc_conf_common "$KEYSTONE_CONF" keystone
    iniset "$KEYSTONE_CONF" database connection "$MC_DB_URL/keystone?charset=utf8"
    iniset "$KEYSTONE_CONF" token provider fernet
    iniset "$KEYSTONE_CONF" fernet_tokens key_repository "$MC_DATA/keystone/fernet-keys"
    iniset "$KEYSTONE_CONF" fernet_receipts key_repository "$MC_DATA/keystone/fernet-keys"
    iniset "$KEYSTONE_CONF" credential key_repository "$MC_DATA/keystone/credential-keys"
    iniset "$KEYSTONE_CONF" cache enabled True
    iniset "$KEYSTONE_CONF" cache backend oslo_cache.memcache_pool
    iniset "$KEYSTONE_CONF" cache memcache_servers "$MC_MEMCACHED"
    mc_gunicorn keystone "$MC_ETC/keystone" keystone.wsgi.api:application \
        "$MC_PORT_KEYSTONE"
}

function mc_init_keystone {
    local manage=("$MC_VENV/bin/keystone-manage" --config-file "$KEYSTONE_CONF")
    mc_run keystone "${manage[@]}" db_sync
    mc_run keystone "${manage[@]}" fernet_setup \
        --keystone-user root --keystone-group root
    mc_run keystone "${manage[@]}" credential_setup \
        --keystone-user root --keystone-group root
    mc_run keystone "${manage[@]}" bootstrap \
        --bootstrap-password "$MINICLOUD_PASSWORD" \
        --bootstrap-username admin --bootstrap-project-name admin \
        --bootstrap-role-name admin --bootstrap-service-name keystone \
        --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "$MC_KEYSTONE_URL" \
        --bootstrap-public-url "$MC_KEYSTONE_URL" \
        --bootstrap-internal-url "$MC_KEYSTONE_URL"
}

function mc_start_keystone {
    mc_spawn keystone "$MC_ETC/keystone" env \
        OS_KEYSTONE_CONFIG_FILES="$KEYSTONE_CONF" "$MC_VENV/bin/gunicorn"
}

# mc_write_clouds_yaml - devstack's clouds.yaml: devstack-admin, devstack
function mc_write_clouds_yaml {
    cat > "$MINICLOUD_DIR/clouds.yaml" <<EOF
# written by tools/minicloud.sh: OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml
clouds:
  devstack-admin:
    auth:
      auth_url: $MC_KEYSTONE_URL
      username: admin
      password: $MINICLOUD_PASSWORD
      project_name: admin
      user_domain_id: default
      project_domain_id: default
    region_name: RegionOne
    identity_api_version: 3
  devstack-system-admin:
    auth:
      auth_url: $MC_KEYSTONE_URL
      username: admin
      password: $MINICLOUD_PASSWORD
      system_scope: all
      user_domain_id: default
    region_name: RegionOne
    identity_api_version: 3
EOF
    chmod 600 "$MINICLOUD_DIR/clouds.yaml"
}


# Placement
# ---------

PLACEMENT_CONF=$MC_ETC/placement/placement.conf

function mc_configure_placement {
    mkdir -p "$MC_ETC/placement"
    mc_conf_common "$PLACEMENT_CONF" placement
    iniset "$PLACEMENT_CONF" placement_database connection \
        "$MC_DB_URL/placement?charset=utf8"
    iniset "$PLACEMENT_CONF" api auth_strategy keystone
    mc_conf_authtoken "$PLACEMENT_CONF" placement
    mc_gunicorn placement "$MC_ETC/placement" placement.wsgi.api:application \
        "$MC_PORT_PLACEMENT"
}

function mc_init_placement {
    mc_run placement "$MC_VENV/bin/placement-manage" \
        --config-file "$PLACEMENT_CONF" db sync
}

function mc_start_placement {
    mc_spawn placement "$MC_ETC/placement" env \
        OS_PLACEMENT_CONFIG_DIR="$MC_ETC/placement" "$MC_VENV/bin/gunicorn"
}


# Glance
# ------

function mc_configure_glance {
    local store=$MC_DATA/glance
    mkdir -p "$MC_ETC/glance" "$store/images" "$store/staging" "$store/tasks"
    cp "$MC_VENV/etc/glance/glance-api-paste.ini" "$MC_ETC/glance/"
    mc_conf_common "$GLANCE_API_CONF" glance
    iniset "$GLANCE_API_CONF" database connection "$MC_DB_URL/glance?charset=utf8"
    mc_conf_authtoken "$GLANCE_API_CONF" glance
    iniset "$GLANCE_API_CONF" paste_deploy flavor keystone
    iniset "$GLANCE_API_CONF" DEFAULT enabled_backends fs:file
    iniset "$GLANCE_API_CONF" glance_store default_backend fs
    iniset "$GLANCE_API_CONF" fs filesystem_store_datadir "$store/images"
    iniset "$GLANCE_API_CONF" os_glance_staging_store filesystem_store_datadir \
        "$store/staging"
    iniset "$GLANCE_API_CONF" os_glance_tasks_store filesystem_store_datadir \
        "$store/tasks"
    iniset "$GLANCE_API_CONF" oslo_policy enforce_new_defaults True
    mc_gunicorn glance "$MC_ETC/glance" glance.wsgi.api:application \
        "$MC_PORT_GLANCE"
}

function mc_init_glance {
    mc_run glance "$MC_VENV/bin/glance-manage" --config-file "$GLANCE_API_CONF" \
        db_sync
}

function mc_start_glance {
    mc_spawn glance "$MC_ETC/glance" env \
        OS_GLANCE_CONFIG_DIR="$MC_ETC/glance" "$MC_VENV/bin/gunicorn"
}


# Neutron
# -------

NEUTRON_CONF=$MC_ETC/neutron/neutron.conf
NEUTRON_ML2_CONF=$MC_ETC/neutron/plugins/ml2/ml2_conf.ini
MC_PHYSNET=physnet1

function mc_configure_neutron {
    mkdir -p "$MC_ETC/neutron/plugins/ml2"
    cp "$MC_VENV/etc/neutron/api-paste.ini" "$MC_ETC/neutron/"
    mc_conf_common "$NEUTRON_CONF" neutron
    iniset "$NEUTRON_CONF" DEFAULT state_path "$MC_DATA/neutron"
    iniset "$NEUTRON_CONF" DEFAULT transport_url "$MC_RABBIT_URL"
    iniset "$NEUTRON_CONF" DEFAULT core_plugin ml2
    iniset "$NEUTRON_CONF" DEFAULT service_plugins ""
    iniset "$NEUTRON_CONF" DEFAULT auth_strategy keystone
    # no DHCP agent: nothing to schedule networks on, nothing to notify
    iniset "$NEUTRON_CONF" DEFAULT dhcp_agent_notification False
    iniset "$NEUTRON_CONF" DEFAULT notify_nova_on_port_status_changes True
    iniset "$NEUTRON_CONF" DEFAULT notify_nova_on_port_data_changes True
    # every second (its minimum), not every 2 s: a simulated guest answers
    # SSH within a second, and Tempest reads a server's addresses right
    # after (test_rebuild_server_with_volume_attached compares them with
    # the rebuilt server's): a floating IP associated a moment before
    # should be in Nova's cache by then, as with a guest that takes
    # seconds to boot
    iniset "$NEUTRON_CONF" DEFAULT send_events_interval 1
    iniset "$NEUTRON_CONF" database connection "$MC_DB_URL/neutron?charset=utf8"
    mc_conf_authtoken "$NEUTRON_CONF" neutron
    mc_conf_auth "$NEUTRON_CONF" nova nova
    iniset "$NEUTRON_CONF" oslo_policy enforce_new_defaults True

    iniset "$NEUTRON_ML2_CONF" ml2 extension_drivers port_security
    iniset "$NEUTRON_ML2_CONF" ml2_type_flat flat_networks "$MC_PHYSNET"
    iniset "$NEUTRON_ML2_CONF" securitygroup enable_security_group True
    if [[ $MINICLOUD_NEUTRON == ovn ]]; then
        mc_configure_neutron_ovn        # (tools/minicloud/ovn.sh)
        return 0
    fi
    # the fallback: the agentless driver binds and activates every port
    # (an API process reads this only as it is needed; a maintenance
    # worker would refuse 0)
    iniset "$NEUTRON_CONF" DEFAULT dhcp_agents_per_network 0
    iniset "$NEUTRON_ML2_CONF" ml2 type_drivers flat,local
    iniset "$NEUTRON_ML2_CONF" ml2 tenant_network_types local
    iniset "$NEUTRON_ML2_CONF" ml2 mechanism_drivers nova_xen_noagent
    # nova-xen plugs ovs ports into the xapi network of this bridge
    iniset "$NEUTRON_ML2_CONF" nova_xen_noagent integration_bridge br-int
    mc_gunicorn neutron "$MC_ETC/neutron" neutron.wsgi.api:application \
        "$MC_PORT_NEUTRON"
}

function mc_init_neutron {
    mc_run neutron "$MC_VENV/bin/neutron-db-manage" \
        --config-file "$NEUTRON_CONF" --config-file "$NEUTRON_ML2_CONF" \
        upgrade heads
}

function mc_start_neutron {
    if [[ $MINICLOUD_NEUTRON == ovn ]]; then
        mc_start_neutron_ovn
        return 0
    fi
    mc_spawn neutron "$MC_ETC/neutron" env \
        OS_NEUTRON_CONFIG_DIR="$MC_ETC/neutron" \
        OS_NEUTRON_CONFIG_FILES="neutron.conf;plugins/ml2/ml2_conf.ini" \
        "$MC_VENV/bin/gunicorn"
}


# Nova
# ----

function mc_configure_nova {
    mkdir -p "$MC_ETC/nova" "$MC_DATA/nova/instances"
    cp "$MC_VENV/etc/nova/api-paste.ini" "$MC_ETC/nova/"
    mc_conf_common "$NOVA_CONF" nova
    iniset "$NOVA_CONF" DEFAULT state_path "$MC_DATA/nova"
    iniset "$NOVA_CONF" DEFAULT instances_path "$MC_DATA/nova/instances"
    iniset "$NOVA_CONF" DEFAULT transport_url "$MC_RABBIT_URL"
    iniset "$NOVA_CONF" DEFAULT my_ip "$MC_HOST"
    iniset "$NOVA_CONF" wsgi api_paste_config "$MC_ETC/nova/api-paste.ini"
    iniset "$NOVA_CONF" api_database connection "$MC_DB_URL/nova_api?charset=utf8"
    iniset "$NOVA_CONF" database connection "$MC_DB_URL/nova?charset=utf8"
    iniset "$NOVA_CONF" api auth_strategy keystone
    # as devstack's lib/nova: a one-compute cloud can resize
    iniset "$NOVA_CONF" DEFAULT allow_resize_to_same_host True
    mc_conf_authtoken "$NOVA_CONF" nova
    mc_conf_auth "$NOVA_CONF" service_user nova
    iniset "$NOVA_CONF" service_user send_service_user_token True
    mc_conf_auth "$NOVA_CONF" placement placement
    mc_conf_auth "$NOVA_CONF" neutron neutron
    if mc_cinder_enabled; then
        # as lib/nova's configure_cinder_access: the nova user (admin) for
        # the calls Nova makes on its own; the volume calls carry the
        # user's token with nova's service token ([service_user]), which
        # Cinder needs to delete an attachment of a server
        mc_conf_auth "$NOVA_CONF" cinder nova
        iniset "$NOVA_CONF" cinder os_region_name RegionOne
    fi
    iniset "$NOVA_CONF" glance region_name RegionOne
    # as lib/nova with n-novnc: the proxy on the controller, each
    # console's address from the driver (xapi's host, CONNECT /console)
    iniset "$NOVA_CONF" vnc enabled True
    iniset "$NOVA_CONF" vnc novncproxy_host "$MC_HOST"
    iniset "$NOVA_CONF" vnc novncproxy_port "$MC_PORT_NOVNC"
    iniset "$NOVA_CONF" vnc novncproxy_base_url \
        "http://$MC_HOST:$MC_PORT_NOVNC/vnc_lite.html"
    # devstack's NOVA_FILTERS: Nova's defaults and the two that
    # Tempest's affinity tests need
    iniset "$NOVA_CONF" filter_scheduler enabled_filters \
        "$MC_NOVA_FILTERS"
    if [[ -n $MINICLOUD_DEVICE_HOST ]]; then
        mc_configure_nova_devices
    fi
    iniset "$NOVA_CONF" conductor workers 1
    iniset "$NOVA_CONF" scheduler workers 1
    iniset "$NOVA_CONF" oslo_policy enforce_new_defaults True
    mc_gunicorn n-api "$MC_ETC/nova" nova.wsgi.osapi_compute:application \
        "$MC_PORT_NOVA"
}

# mc_configure_nova_devices - as an operator enables the device host's NIC
# and GPU (README, "PCI passthrough and vGPU"): the NIC for Nova's PCI
# tracker and its alias for flavors (pci_passthrough:alias=nic:1), the
# vGPU type by xapi's model name (resources:VGPU=1), and the filter that
# places PCI requests; in nova.conf, which nova-api (the alias), the
# scheduler and, through nova-cpu.conf, the nova-computes read
function mc_configure_nova_devices {
    iniset "$NOVA_CONF" pci device_spec "$MC_PCI_DEVICE_SPEC"
    iniset "$NOVA_CONF" pci alias "$MC_PCI_ALIAS"
    iniset "$NOVA_CONF" devices enabled_mdev_types "$MC_VGPU_TYPE"
    iniset "$NOVA_CONF" filter_scheduler enabled_filters \
        "$MC_NOVA_FILTERS,$MC_PCI_FILTER"
}

# mc_configure_nova_compute - as lib/nova's start_nova_compute: a copy of
# nova.conf (which the plugin's post-config has completed), shared by the
# nova-computes; what is each one's own is in its overlay
# (mc_configure_computes)
function mc_configure_nova_compute {
    cp "$NOVA_CONF" "$NOVA_CPU_CONF"
    # nova-compute reaches the databases through the conductor only
    inidelete "$NOVA_CPU_CONF" database connection
    inidelete "$NOVA_CPU_CONF" api_database connection
    # a failed build is the fault itself, not a reschedule to another host
    iniset "$NOVA_CPU_CONF" scheduler max_attempts 1
    if [[ $MINICLOUD_NEUTRON == ovn ]]; then
        # no metadata service with ML2/OVN here: every server gets a
        # config drive
        iniset "$NOVA_CPU_CONF" DEFAULT force_config_drive True
        # nova-xen's OVN checks: no chassis for this host is a failure
        iniset "$NOVA_CPU_CONF" xenserver neutron_backend ovn
    fi
}


# The nova-computes
# -----------------
#
# One nova-compute per xapisim host of MINICLOUD_COMPUTES, each its own
# process, as a multi-node devstack runs one compute node per XenServer
# host: n-cpu-N is the service host computeN, with its own log
# (log/n-cpu-N.log), pid file, state and lock directories, and its own
# config overlay, etc/nova/n-cpu-N.conf, read after nova-cpu.conf.  The
# overlay is what that compute node's stack would write: the devstack
# plugin's post-config phase, run with the node's localrc
# (XENAPI_CONNECTION_URL its pool's master, XENAPI_HOST_UUID its host),
# writes its [xenserver]; the minicloud adds [DEFAULT]host and the paths.

# mc_check_computes - MINICLOUD_COMPUTES names distinct hosts of xapisim
function mc_check_computes {
    local spec pool host
    local -A seen=()
    local -a specs
    read -ra specs <<< "$MINICLOUD_COMPUTES"
    if [[ ${#specs[@]} -eq 0 ]]; then
        mc_die "MINICLOUD_COMPUTES is empty: give the hosts the nova-computes manage, as POOL.HOST (e.g. \"1.1 1.2 2.1\")"
    fi
    for spec in "${specs[@]}"; do
        if [[ ! $spec =~ ^([1-9][0-9]*)\.([1-9][0-9]*)$ ]]; then
            mc_die "MINICLOUD_COMPUTES: $spec is not POOL.HOST (e.g. 2.1: the first host of the second pool)"
        fi
        pool=${BASH_REMATCH[1]}
        host=${BASH_REMATCH[2]}
        if ((pool > MINICLOUD_XAPI_POOLS || host > MINICLOUD_XAPI_HOSTS)); then
            mc_die "MINICLOUD_COMPUTES: $spec is not a host of xapisim's $MINICLOUD_XAPI_POOLS pool(s) of $MINICLOUD_XAPI_HOSTS host(s) (MINICLOUD_XAPI_POOLS, MINICLOUD_XAPI_HOSTS)"
        fi
        if [[ -n ${seen[$spec]:-} ]]; then
            mc_die "MINICLOUD_COMPUTES: host $spec twice: one nova-compute per XenServer host"
        fi
        seen[$spec]=1
    done
    if [[ -n $MINICLOUD_DEVICE_HOST && -z ${seen[$MINICLOUD_DEVICE_HOST]:-} ]]; then
        mc_die "MINICLOUD_DEVICE_HOST: $MINICLOUD_DEVICE_HOST is not one of the computes' hosts ($MINICLOUD_COMPUTES): give one of them, or empty for no devices"
    fi
}

# mc_compute_table - $MC_COMPUTE_TABLE from xapisim's JSON line: one line
# per nova-compute, "SERVICE HOST POOL.HOST XAPI_HOST HOST_UUID MASTER
# POOL_NAME"
function mc_compute_table {
    mkdir -p "$(dirname "$MC_COMPUTE_TABLE")"
    "$MINICLOUD_PYTHON" "$MC_TOOLS/computes.py" \
        "$MINICLOUD_DIR/xapisim.json" "$MINICLOUD_COMPUTES" \
        > "$MC_COMPUTE_TABLE.new" \
        || mc_die "cannot tell the nova-computes' hosts from $MINICLOUD_DIR/xapisim.json"
    mv "$MC_COMPUTE_TABLE.new" "$MC_COMPUTE_TABLE"
    mc_set_computes
}

# mc_compute SERVICE FIELD - a field of SERVICE's line of the compute table:
# host, spec, xapi_host, host_uuid, master, pool
function mc_compute {
    mc_table_field "$MC_COMPUTE_TABLE" "$1" "$2" \
        host spec xapi_host host_uuid master pool
}

# mc_compute_conf SERVICE - its config overlay
function mc_compute_conf {
    echo "$MC_ETC/nova/$1.conf"
}

# _mc_compute_post_config CONF URL HOST_UUID - the plugin's post-config
# phase on a compute node whose localrc says XENAPI_CONNECTION_URL=URL,
# XENAPI_HOST_UUID=HOST_UUID, and whose nova.conf is CONF
function _mc_compute_post_config {
    # shellcheck disable=SC2034  # read by the plugin
    local ENABLED_SERVICES=n-cpu NOVA_CONF=$1 NOVA_CPU_CONF=$1
    # shellcheck disable=SC2034
    local XENAPI_CONNECTION_URL=$2 XENAPI_HOST_UUID=$3
    run_plugin stack post-config
}

# mc_configure_compute SERVICE - its overlay, from scratch
function mc_configure_compute {
    local service=$1 host overlay data
    host=$(mc_compute "$service" host)
    overlay=$(mc_compute_conf "$service")
    data=$MC_DATA/$service
    mkdir -p "$data/instances" "$data/lock" "$(dirname "$overlay")"
    cat > "$overlay" <<EOF
# $service: nova-compute $host, managing xapisim host
# $(mc_compute "$service" xapi_host) of $(mc_compute "$service" pool); read after nova-cpu.conf.
# Written by tools/minicloud.sh: the devstack plugin's post-config phase
# with this compute node's localrc, then the minicloud's own lines.
EOF
    # that compute node's stack (in a subshell: the plugin may change
    # settings as it checks them)
    if ! (_mc_compute_post_config "$overlay" \
            "$(mc_compute "$service" master)" \
            "$(mc_compute "$service" host_uuid)") \
            >> "$MC_LOG/plugin.log" 2>&1; then
        mc_log_tail plugin
        mc_die "the devstack plugin's post-config phase failed for $service"
    fi
    iniset "$overlay" DEFAULT host "$host"
    iniset "$overlay" DEFAULT state_path "$data"
    iniset "$overlay" DEFAULT instances_path "$data/instances"
    iniset "$overlay" oslo_concurrency lock_path "$data/lock"
    # xapi plugs the VIFs on the destination host as the VM moves there,
    # after the point where the source would wait for Neutron's
    # network-vif-plugged (ovn-controller claims the port on the
    # destination only then): see devstack/README.md, "Live migration"
    iniset "$overlay" compute live_migration_wait_for_vif_plug False
}

# mc_configure_computes - the compute table, then each overlay
function mc_configure_computes {
    local service
    mc_compute_table
    for service in "${MC_COMPUTES[@]}"; do
        mc_configure_compute "$service"
    done
}

function mc_init_nova {
    local manage=("$MC_VENV/bin/nova-manage" --config-file "$NOVA_CONF")
    mc_run nova-manage "${manage[@]}" api_db sync
    mc_run nova-manage "${manage[@]}" cell_v2 map_cell0 \
        --database_connection "$MC_DB_URL/nova_cell0?charset=utf8"
    mc_run nova-manage "${manage[@]}" cell_v2 create_cell --name cell1 \
        --transport-url "$MC_RABBIT_URL" \
        --database_connection "$MC_DB_URL/nova?charset=utf8"
    mc_run nova-manage "${manage[@]}" db sync
}

function mc_start_nova_api {
    mc_spawn n-api "$MC_ETC/nova" env OS_NOVA_CONFIG_DIR="$MC_ETC/nova" \
        "$MC_VENV/bin/gunicorn"
}

# mc_start_nova - conductor and scheduler
function mc_start_nova {
    mc_spawn n-cond "$MC_DATA/nova" "$MC_VENV/bin/nova-conductor" \
        --config-file "$NOVA_CONF"
    mc_spawn n-sch "$MC_DATA/nova" "$MC_VENV/bin/nova-scheduler" \
        --config-file "$NOVA_CONF"
    # the web client from Debian's novnc, as devstack's NOVNC_FROM_PACKAGE
    mc_spawn n-novnc "$MC_DATA/nova" "$MC_VENV/bin/nova-novncproxy" \
        --config-file "$NOVA_CONF" --web /usr/share/novnc
}

# mc_rabbit_queue NAME - RabbitMQ has queue NAME: its RPC server listens
# (a message sent before that is lost, and nova-compute would wait a
# minute for the conductor's answer before it asks again)
function mc_rabbit_queue {
    "$MC_VENV/bin/python3" -c 'import sys, kombu
with kombu.Connection(sys.argv[1], connect_timeout=2) as conn:
    conn.default_channel.queue_declare(sys.argv[2], passive=True)' \
        "amqp://${MC_RABBIT_URL#rabbit://}" "$1"
}

# mc_start_nova_computes - each nova-compute with nova-cpu.conf, then its
# overlay; one after the other, each once it listens (its RPC queue: its
# service is registered then), so that Nova lists them in their order
# (Tempest migrates a server to the first other compute it lists: from
# compute1 or compute2 inside pool-1, from compute3 to pool-1)
function mc_start_nova_computes {
    local service
    for service in "${MC_COMPUTES[@]}"; do
        mc_spawn "$service" "$MC_DATA/$service" "$MC_VENV/bin/nova-compute" \
            --config-file "$NOVA_CPU_CONF" \
            --config-file "$(mc_compute_conf "$service")"
        mc_wait "$service" "RPC queue" mc_rabbit_queue \
            "compute.$(mc_compute "$service" host)"
    done
}

# _mc_mapped_hosts - the compute hosts mapped to a cell, one per line
function _mc_mapped_hosts {
    "$MC_VENV/bin/nova-manage" --config-file "$NOVA_CONF" cell_v2 list_hosts \
        2>> "$MC_LOG/nova-manage.log" \
        | awk -F'|' 'NF > 3 && $2 !~ /Cell Name/ { gsub(/ /, "", $4); print $4 }'
}

# mc_discover_hosts - map every compute host into cell1 once it has
# registered (tools/discover_hosts.sh on a devstack controller, after the
# compute nodes have stacked)
function mc_discover_hosts {
    local i service host mapped
    local -a missing=()
    for ((i = 0; i < MINICLOUD_START_TIMEOUT; i++)); do
        "$MC_VENV/bin/nova-manage" --config-file "$NOVA_CONF" \
            cell_v2 discover_hosts --verbose >> "$MC_LOG/nova-manage.log" 2>&1 \
            || true
        mapped=" $(_mc_mapped_hosts | tr '\n' ' ')"
        missing=()
        for service in "${MC_COMPUTES[@]}"; do
            host=$(mc_compute "$service" host)
            if [[ $mapped != *" $host "* ]]; then
                missing+=("$host")
                if ! mc_pid "$service" >/dev/null; then
                    mc_log_tail "$service"
                    mc_die "$service ($host) exited before it registered"
                fi
            fi
        done
        if [[ ${#missing[@]} -eq 0 ]]; then
            mc_say "cell1 maps the compute hosts:${mapped% }"
            return 0
        fi
        sleep 1
    done
    mc_die "not registered after $MINICLOUD_START_TIMEOUT s: ${missing[*]} (logs: $MC_LOG/n-cpu-*.log)"
}
