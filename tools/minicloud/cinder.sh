#!/bin/bash
#
# tools/minicloud/cinder.sh - Cinder (cinder-api, -scheduler, -volume) with
# the tgt iSCSI target and the file-backed test backend
#
# Cinder from PyPI into the minicloud's venv, pinned to what the venv has
# (Nova's libraries do not move); its database in the minicloud's MariaDB,
# its RPC on the minicloud's RabbitMQ.  One backend, ``filetgt``:
# tools/minicloud/cinder_filetgt (volumes are sparse files under
# data/cinder/volumes), exported by Cinder's TgtAdm target helper through a
# tgtd of the minicloud's own (c-tgt): iSCSI on 127.0.0.1:$MC_PORT_ISCSI,
# management socket on its own control port, target files in
# data/cinder/targets, so that no system tgtd nor /etc/tgt is used or
# touched.  cinder-volume finds tgt-admin and tgtadm first in etc/tgt/bin,
# wrappers that add that control port (and tgt-admin the minicloud's
# targets.conf).  cinder-volume runs its privileged calls through
# privsep-helper of the venv, as root (no sudo).
#
# Needs common.sh, devstack_functions.sh and openstack.sh.

CINDER_CONF=$MC_ETC/cinder/cinder.conf
MC_CINDER_BACKEND=filetgt
MC_CINDER_VOLUMES=$MC_DATA/cinder/volumes
MC_CINDER_TARGETS=$MC_DATA/cinder/targets
MC_TGT_CONF=$MC_ETC/tgt/targets.conf
MC_TGT_BIN=$MC_ETC/tgt/bin


# Install
# -------

# mc_install_cinder - Cinder into the venv, constrained to the versions the
# venv has (once per package list), and the test backend (each time, as
# the ML2 driver)
function mc_install_cinder {
    local stamp=$MC_VENV/.minicloud-cinder-packages want
    want=$(printf '%s\n' "${MC_CINDER_PIP_PACKAGES[@]}")
    if [[ ! -f $stamp || "$(<"$stamp")" != "$want" ]]; then
        "$MC_VENV/bin/pip" freeze --disable-pip-version-check --exclude-editable \
            | grep -v ' @ ' > "$MC_VENV/.minicloud-constraints.txt"
        mc_say "pip install ${MC_CINDER_PIP_PACKAGES[*]} (constrained to the venv's packages)"
        mc_run pip "$MC_VENV/bin/pip" install --disable-pip-version-check \
            -c "$MC_VENV/.minicloud-constraints.txt" "${MC_CINDER_PIP_PACKAGES[@]}"
        echo "$want" > "$stamp"
    fi
    mc_run pip "$MC_VENV/bin/pip" install --disable-pip-version-check \
        --no-deps --no-build-isolation "$MC_TOOLS/cinder_filetgt"
}


# tgt
# ---

# mc_configure_tgt - targets.conf (TgtAdm's target files) and the wrappers
function mc_configure_tgt {
    local tool
    mkdir -p "$MC_TGT_BIN" "$MC_CINDER_TARGETS"
    cat > "$MC_TGT_CONF" <<EOF
# the minicloud's tgtd (tools/minicloud/cinder.sh): Cinder's targets
# (its control port: the wrapper's -C; tgt-admin refuses a second one here)
include $MC_CINDER_TARGETS/*
EOF
    for tool in tgtadm tgt-admin; do
        {
            echo '#!/bin/sh'
            echo "# $tool of the minicloud's tgtd (tools/minicloud/cinder.sh)"
            if [[ $tool == tgt-admin ]]; then
                echo "exec /usr/sbin/$tool -C $MC_TGT_CONTROL_PORT -c $MC_TGT_CONF \"\$@\""
            else
                echo "exec /usr/sbin/$tool -C $MC_TGT_CONTROL_PORT \"\$@\""
            fi
        } > "$MC_TGT_BIN/$tool"
        chmod 755 "$MC_TGT_BIN/$tool"
    done
}

function mc_start_tgtd {
    mkdir -p "$MC_DATA/cinder"
    mc_spawn c-tgt "$MC_DATA/cinder" tgtd -f -C "$MC_TGT_CONTROL_PORT" \
        --iscsi "portal=$MC_HOST:$MC_PORT_ISCSI"
}

# mc_stop_tgtd - tgtd shut down as its service shuts it down (it ignores
# SIGTERM): its targets deleted, then the system, which ends it; SIGTERM
# and SIGKILL if not
function mc_stop_tgtd {
    if mc_pid c-tgt >/dev/null; then
        "$MC_TGT_BIN/tgt-admin" --delete ALL --force >/dev/null 2>&1 || true
        "$MC_TGT_BIN/tgtadm" --op delete --mode system >/dev/null 2>&1 || true
    fi
    mc_stop c-tgt
    # its management socket, which it leaves behind
    if ! mc_pid c-tgt >/dev/null; then
        rm -f "/var/run/tgtd/socket.$MC_TGT_CONTROL_PORT" \
            "/var/run/tgtd/socket.$MC_TGT_CONTROL_PORT.lock"
    fi
}


# Cinder
# ------

function mc_configure_cinder {
    local backend=$MC_CINDER_BACKEND
    mkdir -p "$MC_ETC/cinder" "$MC_CINDER_VOLUMES"
    cp "$MC_VENV/etc/cinder/api-paste.ini" "$MC_ETC/cinder/"
    mc_conf_common "$CINDER_CONF" cinder
    iniset "$CINDER_CONF" DEFAULT state_path "$MC_DATA/cinder"
    iniset "$CINDER_CONF" DEFAULT host minicloud
    iniset "$CINDER_CONF" DEFAULT my_ip "$MC_HOST"
    iniset "$CINDER_CONF" DEFAULT transport_url "$MC_RABBIT_URL"
    iniset "$CINDER_CONF" DEFAULT api_paste_config "$MC_ETC/cinder/api-paste.ini"
    iniset "$CINDER_CONF" DEFAULT osapi_volume_listen "$MC_HOST"
    iniset "$CINDER_CONF" DEFAULT osapi_volume_listen_port "$MC_PORT_CINDER"
    iniset "$CINDER_CONF" DEFAULT osapi_volume_workers 1
    iniset "$CINDER_CONF" DEFAULT auth_strategy keystone
    iniset "$CINDER_CONF" DEFAULT enabled_backends "$backend"
    iniset "$CINDER_CONF" database connection "$MC_DB_URL/cinder?charset=utf8"
    # Keystone: tokens with a service token of a user with the service
    # role (nova's) are a service's requests, which may delete an
    # attachment Nova still uses (Cinder's check for bug #2004555)
    mc_conf_authtoken "$CINDER_CONF" cinder
    iniset "$CINDER_CONF" keystone_authtoken service_token_roles service
    # Cinder's calls to Nova (external events: volume extended, ...)
    mc_conf_auth "$CINDER_CONF" nova cinder
    iniset "$CINDER_CONF" oslo_policy enforce_new_defaults True
    # privileged calls (tgt-admin) through the venv's privsep-helper, as
    # root: without a helper_command oslo.privsep runs sudo
    iniset "$CINDER_CONF" cinder_sys_admin helper_command \
        "$MC_VENV/bin/privsep-helper --config-file $CINDER_CONF"
    iniset "$CINDER_CONF" privsep_osbrick helper_command \
        "$MC_VENV/bin/privsep-helper --config-file $CINDER_CONF"

    # The backend: every option of the driver and of TgtAdm in its own
    # section (Cinder does not read a backend's options from [DEFAULT])
    iniset "$CINDER_CONF" "$backend" volume_driver nova_xen_filetgt.FileTgtDriver
    iniset "$CINDER_CONF" "$backend" volume_backend_name "$backend"
    iniset "$CINDER_CONF" "$backend" filetgt_directory "$MC_CINDER_VOLUMES"
    iniset "$CINDER_CONF" "$backend" target_helper tgtadm
    iniset "$CINDER_CONF" "$backend" target_protocol iscsi
    iniset "$CINDER_CONF" "$backend" target_ip_address "$MC_HOST"
    iniset "$CINDER_CONF" "$backend" target_port "$MC_PORT_ISCSI"
    iniset "$CINDER_CONF" "$backend" volumes_dir "$MC_CINDER_TARGETS"
    mc_configure_tgt
}

function mc_init_cinder {
    mc_run cinder-manage "$MC_VENV/bin/cinder-manage" \
        --config-file "$CINDER_CONF" db sync
}

# mc_start_cinder - api, scheduler and volume, each its own process
function mc_start_cinder {
    mc_spawn c-api "$MC_DATA/cinder" "$MC_VENV/bin/cinder-api" \
        --config-file "$CINDER_CONF"
    mc_spawn c-sch "$MC_DATA/cinder" "$MC_VENV/bin/cinder-scheduler" \
        --config-file "$CINDER_CONF"
    # tgt-admin and tgtadm: the wrappers of the minicloud's tgtd
    mc_spawn c-vol "$MC_DATA/cinder" env "PATH=$MC_TGT_BIN:$PATH" \
        "$MC_VENV/bin/cinder-volume" --config-file "$CINDER_CONF"
}

# mc_cinder_services - "BINARY HOST STATUS STATE" of Cinder's services
function mc_cinder_services {
    openstack volume service list -f value -c Binary -c Host -c Status \
        -c State 2>/dev/null
}

# mc_cinder_volume_up - cinder-volume of the backend reports up
function mc_cinder_volume_up {
    mc_cinder_services | grep -q "^cinder-volume minicloud@$MC_CINDER_BACKEND enabled up$"
}

# mc_cinder_pool_known - Cinder's scheduler has the backend's pool: it
# learns it from cinder-volume's capability reports, which a scheduler
# that started later may only get with the next periodic report (a
# volume asked for before that finds "No valid backend")
function mc_cinder_pool_known {
    openstack volume backend pool list -f value -c Name 2>/dev/null |
        grep -q "^minicloud@$MC_CINDER_BACKEND#"
}

# mc_cinder_check - a volume through its life as Nova sees it
# (tools/minicloud/cinder_check.py)
function mc_cinder_check {
    OS_CLIENT_CONFIG_FILE=$MINICLOUD_DIR/clouds.yaml OS_CLOUD=devstack-admin \
        MC_SERVICE_PASSWORD=$MINICLOUD_PASSWORD \
        "$MC_VENV/bin/python3" "$MC_TOOLS/cinder_check.py" \
        --portal "$MC_HOST:$MC_PORT_ISCSI" --tgtadm "$MC_TGT_BIN/tgtadm" \
        --volumes-dir "$MC_CINDER_VOLUMES" --log-dir "$MC_LOG"
}
