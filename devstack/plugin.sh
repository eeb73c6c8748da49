#!/bin/bash
#
# devstack/plugin.sh - nova-xen's devstack plugin
#
# devstack sources this file at fixed points of its runs, as
#
#     source plugin.sh stack pre-install|install|post-config|extra|test-config
#     source plugin.sh unstack
#     source plugin.sh clean
#
# with ``errexit`` set (stack.sh) and every variable of ``settings`` and of
# devstack's ``lib/*`` defined.  What each phase does:
#
# - every ``stack`` phase checks the settings first and stops the stack with
#   ``die`` naming the variable to fix (pre-install is the first phase, so a
#   wrong local.conf stops the stack before anything is installed)
# - ``install``: pip-installs nova-xen; with NOVA_XEN_INSTALL_DOM0_PLUGINS,
#   installs the dom0 plugins on the host (before nova-compute starts)
# - ``post-config``: nova-compute's driver and ``[xenserver]`` options;
#   with Cinder, Nova's ``[cinder]`` and service tokens where lib/nova has
#   not set them; Glance's image formats
# - ``extra``: uploads the test image to Glance
# - ``test-config``: on the node with Nova's API, one Nova host aggregate
#   per XenAPI pool (``nova-xen-manage pools sync``: this is the first phase
#   after stack.sh discovered the compute hosts); tempest.conf (features
#   the driver has, the test image)
# - ``unstack``: nothing (nova-compute is devstack's n-cpu service)
# - ``clean``: removes the generated test image

NOVA_XEN_PLUGIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Formats of the disks nova-xen streams into VDIs, and container formats
# Glance must accept for XenServer images
NOVA_XEN_DISK_FORMATS="vhd raw"
NOVA_XEN_CONTAINER_FORMATS="bare ovf"
# Glance's defaults, for a glance-api.conf that does not set the options
NOVA_XEN_GLANCE_DEFAULT_DISK_FORMATS=ami,ari,aki,vhd,vhdx,vmdk,raw,qcow2,vdi,iso,ploop
NOVA_XEN_GLANCE_DEFAULT_CONTAINER_FORMATS=ami,ari,aki,bare,ovf,ova,docker,compressed


# Settings
# --------

# _nova_xen_bool VAR - stop unless $VAR is one of devstack's boolean words,
# then normalize it to True or False
function _nova_xen_bool {
    local _name=$1
    local _value=${!_name:-}
    case "$_value" in
        1|[yY]es|YES|[tT]rue|TRUE|0|[nN]o|NO|[fF]alse|FALSE)
            ;;
        *)
            die $LINENO "$_name=$_value is not a boolean: set $_name to True or False in local.conf"
            ;;
    esac
    printf -v "$_name" '%s' "$(trueorfalse False "$_name")"
}

# _nova_xen_url_host - the host part of XENAPI_CONNECTION_URL
function _nova_xen_url_host {
    local rest=${XENAPI_CONNECTION_URL#*://}
    local host=${rest%%[/?#]*}
    if [[ "$host" == \[* ]]; then
        host=${host#\[}
        host=${host%%]*}
    else
        host=${host%%:*}
    fi
    echo "$host"
}

# nova_xen_check_settings - stop the stack on a missing or malformed setting
function nova_xen_check_settings {
    # No trace: the values checked here include the XenAPI credentials
    local xtrace
    xtrace=$(set +o | grep xtrace)
    set +o xtrace

    local example="e.g. XENAPI_CONNECTION_URL=https://xcp-ng-1.example.com"
    local rest authority
    rest=${XENAPI_CONNECTION_URL#*://}
    authority=${rest%%[/?#]*}
    if [[ -z "$XENAPI_CONNECTION_URL" ]]; then
        if is_service_enabled n-cpu; then
            die $LINENO "XENAPI_CONNECTION_URL is not set: set it in the [[local|localrc]] section of local.conf to the XenAPI URL of the pool master, $example"
        fi
    elif [[ "$authority" == *@* ]]; then
        # Not echoed: it holds a password
        die $LINENO "XENAPI_CONNECTION_URL must not carry credentials (user:password@): remove them and set XENAPI_USER and XENAPI_PASSWORD"
    elif [[ ! "$XENAPI_CONNECTION_URL" =~ ^https?://[^/?#:]+ ]]; then
        die $LINENO "XENAPI_CONNECTION_URL=$XENAPI_CONNECTION_URL is not an http:// or https:// URL of a host: $example"
    fi
    if is_service_enabled n-cpu; then
        if [[ ${#XENAPI_PASSWORD} -eq 0 ]]; then
            die $LINENO "XENAPI_PASSWORD is not set: set it in local.conf to the password of XENAPI_USER ($XENAPI_USER) on the pool"
        fi
    fi

    _nova_xen_bool XENAPI_INSECURE
    if [[ -n "$XENAPI_CA_FILE" ]]; then
        if [[ "$XENAPI_INSECURE" == "True" ]]; then
            die $LINENO "XENAPI_CA_FILE and XENAPI_INSECURE=True contradict each other: unset one of them"
        fi
        if [[ ! -r "$XENAPI_CA_FILE" || -d "$XENAPI_CA_FILE" ]]; then
            die $LINENO "XENAPI_CA_FILE=$XENAPI_CA_FILE is not a readable file: set it to the CA bundle that signed the pool's certificates, or leave it empty for the system trust store"
        fi
    fi
    if [[ -n "$XENAPI_HOST_UUID" && ! "$XENAPI_HOST_UUID" =~ ^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$ ]]; then
        die $LINENO "XENAPI_HOST_UUID=$XENAPI_HOST_UUID is not a UUID: set it to the uuid of the host this nova-compute manages (xe host-list params=uuid,name-label), or leave it empty"
    fi
    if [[ "$XENAPI_SR_FILTER" != "default-sr:true" && ! "$XENAPI_SR_FILTER" =~ ^other-config:[^=]+=.+$ ]]; then
        die $LINENO "XENAPI_SR_FILTER=$XENAPI_SR_FILTER is not understood: set it to default-sr:true or other-config:KEY=VALUE"
    fi

    if [[ ! -d "$NOVA_XEN_DIR/nova_xen" ]]; then
        die $LINENO "NOVA_XEN_DIR=$NOVA_XEN_DIR is not a nova-xen checkout (no nova_xen/ in it): set NOVA_XEN_DIR or leave it empty for the plugin's own checkout"
    fi
    _nova_xen_bool NOVA_XEN_INSTALL_DOM0_PLUGINS
    if [[ "$NOVA_XEN_INSTALL_DOM0_PLUGINS" == "True" && -z "$XENAPI_DOM0_SSH" ]]; then
        if [[ -z "$XENAPI_CONNECTION_URL" ]]; then
            die $LINENO "NOVA_XEN_INSTALL_DOM0_PLUGINS=True needs XENAPI_DOM0_SSH (e.g. root@xcp-ng-1.example.com) or XENAPI_CONNECTION_URL to derive it from"
        fi
        XENAPI_DOM0_SSH=root@$(_nova_xen_url_host)
    fi
    _nova_xen_check_neutron
    case "$NOVA_XEN_IMAGE_DISK_FORMAT" in
        vhd|raw)
            ;;
        *)
            die $LINENO "NOVA_XEN_IMAGE_DISK_FORMAT=$NOVA_XEN_IMAGE_DISK_FORMAT is not a format nova-xen can boot: set it to vhd or raw"
            ;;
    esac
    if [[ ! "$NOVA_XEN_IMAGE_SIZE_MB" =~ ^[1-9][0-9]*$ ]]; then
        die $LINENO "NOVA_XEN_IMAGE_SIZE_MB=$NOVA_XEN_IMAGE_SIZE_MB is not a size in MiB: set it to a positive whole number"
    fi

    $xtrace
}

# _nova_xen_check_neutron - the Neutron settings; NOVA_XEN_NEUTRON_BACKEND
# resolved (ovn when devstack runs ML2/OVN)
function _nova_xen_check_neutron {
    if [[ -z "$NOVA_XEN_NEUTRON_BACKEND" && "${Q_AGENT:-}" == "ovn" ]]; then
        NOVA_XEN_NEUTRON_BACKEND=ovn
    fi
    case "$NOVA_XEN_NEUTRON_BACKEND" in
        ''|ovn|other)
            ;;
        *)
            die $LINENO "NOVA_XEN_NEUTRON_BACKEND=$NOVA_XEN_NEUTRON_BACKEND is not understood: set it to ovn (Neutron's ML2/OVN) or other, or leave it empty"
            ;;
    esac
    if [[ "$NOVA_XEN_NEUTRON_BACKEND" == "ovn" ]] && \
            is_service_enabled n-cpu && is_service_enabled ovn-controller; then
        die $LINENO "ovn-controller is enabled on this nova-xen compute node: its chassis would be this domU's own Open vSwitch, named after this node's host, and Neutron would bind this compute's ports there, where no VIF ever is (they are in dom0's switch): disable_service ovn-controller ovs-vswitchd ovsdb-server q-ovn-metadata-agent, and run this host's ovn-controller for dom0 (see ML2/OVN in nova-xen's devstack/README.md)"
    fi
    if [[ -n "$NOVA_XEN_ISOLATION_RULES" ]]; then
        _nova_xen_bool NOVA_XEN_ISOLATION_RULES
    fi
    _nova_xen_bool NOVA_XEN_OVN_SETUP
    if [[ "$NOVA_XEN_OVN_SETUP" == "True" ]]; then
        if [[ "$NOVA_XEN_NEUTRON_BACKEND" != "ovn" ]]; then
            die $LINENO "NOVA_XEN_OVN_SETUP=True sets dom0 up for ML2/OVN, but Neutron does not use it here (NOVA_XEN_NEUTRON_BACKEND=${NOVA_XEN_NEUTRON_BACKEND:-unset}, Q_AGENT=${Q_AGENT:-unset}): set NOVA_XEN_NEUTRON_BACKEND=ovn, or NOVA_XEN_OVN_SETUP=False"
        fi
        case "$NOVA_XEN_OVN_MODE" in
            remote|in-dom0)
                ;;
            *)
                die $LINENO "NOVA_XEN_OVN_MODE=$NOVA_XEN_OVN_MODE is not understood: set it to remote (ovn-controller in this domU) or in-dom0"
                ;;
        esac
        if [[ -n "$NOVA_XEN_OVN_OVSDB_CA" && ! -r "$NOVA_XEN_OVN_OVSDB_CA" ]]; then
            die $LINENO "NOVA_XEN_OVN_OVSDB_CA=$NOVA_XEN_OVN_OVSDB_CA is not a readable file: set it to the CA that signed the client certificate of this domU's ovn-controller"
        fi
        if [[ -z "$NOVA_XEN_OVN_SB_REMOTE" ]]; then
            NOVA_XEN_OVN_SB_REMOTE=${OVN_SB_REMOTE:-tcp:${SERVICE_HOST:-127.0.0.1}:6642}
        fi
    fi
}

# _nova_xen_python - the Python of devstack's services
function _nova_xen_python {
    local python
    if [[ -n "$NOVA_XEN_PYTHON" ]]; then
        echo "$NOVA_XEN_PYTHON"
        return
    fi
    python=$(get_python_exec_prefix)/python3
    if [[ ! -x "$python" ]]; then
        python=${PYTHON:-python3}
    fi
    echo "$python"
}


# Install
# -------

# install_nova_xen - pip-install nova-xen into devstack's Python environment
function install_nova_xen {
    local requirements
    # nova-xen's requirements except Nova itself: Nova comes from devstack's
    # checkout, and pip must not replace it with a release from PyPI to
    # satisfy nova-xen's version range
    requirements=$(grep -v -i -E '^[[:space:]]*(#|$)|^nova([^-_a-z0-9.]|$)' \
        "$NOVA_XEN_DIR/requirements.txt" || true)
    if [[ -n "$requirements" ]]; then
        # shellcheck disable=SC2086  # one requirement per word
        pip_install $requirements
    fi
    pip_install --no-deps -e "$NOVA_XEN_DIR"
}

# install_nova_xen_dom0_plugins - the xapi plugins, into the host's dom0
function install_nova_xen_dom0_plugins {
    local -a args=()
    local option
    local rc=0
    for option in $XENAPI_DOM0_SSH_OPTIONS; do
        args+=(--ssh-option "$option")
    done
    "$NOVA_XEN_DIR/dom0_plugins/install.sh" ${args[@]+"${args[@]}"} \
        "$XENAPI_DOM0_SSH" || rc=$?
    case $rc in
        0)
            ;;
        255)
            die $LINENO "could not ssh to $XENAPI_DOM0_SSH to install the dom0 plugins: give this node key-based root ssh access to dom0 (set XENAPI_DOM0_SSH, XENAPI_DOM0_SSH_OPTIONS), or set NOVA_XEN_INSTALL_DOM0_PLUGINS=False and run dom0_plugins/install.sh yourself"
            ;;
        *)
            die $LINENO "dom0_plugins/install.sh failed on $XENAPI_DOM0_SSH (exit status $rc, reason above)"
            ;;
    esac
}


# Configure
# ---------

# _nova_xen_iniset_secret FILE SECTION OPTION VAR - iniset the value of the
# variable named VAR without tracing it
function _nova_xen_iniset_secret {
    local xtrace
    xtrace=$(set +o | grep xtrace)
    set +o xtrace
    iniset "$1" "$2" "$3" "${!4}"
    $xtrace
}

# configure_nova_xen - the compute driver and its [xenserver] options
function configure_nova_xen {
    local conf
    # $NOVA_CONF too: lib/nova builds $NOVA_CPU_CONF from a copy of it when it
    # starts nova-compute, after this phase
    for conf in "$NOVA_CONF" "$NOVA_CPU_CONF"; do
        iniset "$conf" DEFAULT compute_driver xenapi.XenAPIDriver
        iniset "$conf" xenserver connection_url "$XENAPI_CONNECTION_URL"
        iniset "$conf" xenserver connection_username "$XENAPI_USER"
        _nova_xen_iniset_secret "$conf" xenserver connection_password \
            XENAPI_PASSWORD
        if [[ -n "$XENAPI_CA_FILE" ]]; then
            iniset "$conf" xenserver ca_file "$XENAPI_CA_FILE"
        fi
        iniset "$conf" xenserver insecure "$XENAPI_INSECURE"
        if [[ -n "$XENAPI_HOST_UUID" ]]; then
            iniset "$conf" xenserver host_uuid "$XENAPI_HOST_UUID"
        fi
        iniset "$conf" xenserver sr_matching_filter "$XENAPI_SR_FILTER"
        # xapi makes a migrated VM's VIFs on the destination during the
        # move, after the point where Nova would wait for Neutron's
        # network-vif-plugged of the destination binding: none comes
        iniset "$conf" compute live_migration_wait_for_vif_plug False
        if [[ -n "$NOVA_XEN_NEUTRON_BACKEND" ]]; then
            iniset "$conf" xenserver neutron_backend "$NOVA_XEN_NEUTRON_BACKEND"
        fi
        if [[ "$NOVA_XEN_NEUTRON_BACKEND" == "ovn" ]]; then
            # Neutron's metadata agent would have to run next to each
            # chassis, in dom0: guests read their metadata from a config
            # drive instead
            iniset "$conf" DEFAULT force_config_drive True
            # devstack writes [neutron] only where a Neutron service runs,
            # and none runs on a nova-xen compute (ovn-controller drives
            # dom0's switch, not this domU's): Nova's own, as lib/neutron's
            # create_nova_conf_neutron
            if [[ -z "$(iniget "$conf" neutron auth_type)" ]]; then
                iniset "$conf" neutron region_name "$REGION_NAME"
                _nova_xen_conf_auth "$conf" neutron
            fi
        fi
        if [[ -n "$NOVA_XEN_ISOLATION_RULES" ]]; then
            iniset "$conf" xenserver isolation_rules "$NOVA_XEN_ISOLATION_RULES"
        fi
    done
}

# configure_nova_xen_neutron - Neutron's ML2/OVN server for Xen guests:
# after a XenMotion a Linux guest's netfront announces it with gratuitous
# ARP, never the RARP that OVN's default activation strategy waits for
# before it lets the port's traffic through on the destination
function configure_nova_xen_neutron {
    local conf=${Q_PLUGIN_CONF_FILE:-}
    if [[ -z "$conf" ]]; then
        warn $LINENO "Q_PLUGIN_CONF_FILE is not set: set [ovn] live_migration_activation_strategy to an empty value in Neutron's ML2 configuration yourself"
        return
    fi
    iniset "/$conf" ovn live_migration_activation_strategy ""
}

# setup_nova_xen_ovn - nova-xen-manage ovn-setup for this compute's host
function setup_nova_xen_ovn {
    local python
    python=$(_nova_xen_python)
    local args=(--config-file "$NOVA_CPU_CONF" --sb-remote "$NOVA_XEN_OVN_SB_REMOTE"
                --mode "$NOVA_XEN_OVN_MODE")
    if [[ -n "$NOVA_XEN_OVN_BRIDGE_MAPPINGS" ]]; then
        args+=(--bridge-mappings "$NOVA_XEN_OVN_BRIDGE_MAPPINGS")
    fi
    if [[ -n "$NOVA_XEN_OVN_ENCAP_NETWORK" ]]; then
        args+=(--encap-network "$NOVA_XEN_OVN_ENCAP_NETWORK")
    fi
    if [[ -n "$NOVA_XEN_OVN_OVSDB_CA" ]]; then
        args+=(--ovsdb-ca "$NOVA_XEN_OVN_OVSDB_CA")
    fi
    if ! "$python" -m nova_xen.cmd.manage ovn-setup "${args[@]}"; then
        die $LINENO "nova-xen-manage ovn-setup failed (the CANNOT lines above say why): fix them, or set NOVA_XEN_OVN_SETUP=False and set dom0 up yourself"
    fi
}

# configure_nova_xen_cinder - Nova's side of Cinder, where lib/nova has
# not written it: ``[cinder]`` (the nova user, as lib/nova's
# configure_cinder_access: Nova's own calls need an admin) and
# ``[service_user] send_service_user_token``, without which Cinder (22.1
# and later, bug #2004555) refuses Nova's deletion of the attachment of a
# server: nova-xen's detach.  Values already there are kept.
function configure_nova_xen_cinder {
    local conf token
    for conf in "$NOVA_CONF" "$NOVA_CPU_CONF"; do
        if [[ -z "$(iniget "$conf" cinder auth_type)" ]]; then
            iniset "$conf" cinder os_region_name "$REGION_NAME"
            _nova_xen_conf_auth "$conf" cinder
        fi
        # shellcheck disable=SC2034  # trueorfalse reads it by its name
        token=$(iniget "$conf" service_user send_service_user_token)
        if [[ "$(trueorfalse False token)" != "True" ]]; then
            iniset "$conf" service_user send_service_user_token True
            if [[ -z "$(iniget "$conf" service_user auth_type)" ]]; then
                _nova_xen_conf_auth "$conf" service_user
            fi
        fi
    done
}

# _nova_xen_conf_auth FILE SECTION - keystoneauth's password plugin there,
# as the nova service user
function _nova_xen_conf_auth {
    iniset "$1" "$2" auth_type password
    iniset "$1" "$2" auth_url "$KEYSTONE_SERVICE_URI"
    iniset "$1" "$2" username nova
    _nova_xen_iniset_secret "$1" "$2" password SERVICE_PASSWORD
    iniset "$1" "$2" user_domain_name "$SERVICE_DOMAIN_NAME"
    iniset "$1" "$2" project_name "$SERVICE_PROJECT_NAME"
    iniset "$1" "$2" project_domain_name "$SERVICE_DOMAIN_NAME"
}

# _nova_xen_add_formats OPTION DEFAULTS FORMAT... - add FORMATs to the list
# in glance-api.conf [image_format] OPTION (or to Glance's DEFAULTS)
function _nova_xen_add_formats {
    local option=$1
    local defaults=$2
    shift 2
    local formats format
    formats=$(iniget "$GLANCE_API_CONF" image_format "$option")
    formats=${formats:-$defaults}
    for format in "$@"; do
        if [[ ",$formats," != *",$format,"* ]]; then
            formats+=",$format"
        fi
    done
    iniset "$GLANCE_API_CONF" image_format "$option" "$formats"
}

# configure_nova_xen_glance - Glance accepts the images nova-xen boots
function configure_nova_xen_glance {
    # shellcheck disable=SC2086  # one format per word
    _nova_xen_add_formats disk_formats \
        "$NOVA_XEN_GLANCE_DEFAULT_DISK_FORMATS" $NOVA_XEN_DISK_FORMATS
    # shellcheck disable=SC2086
    _nova_xen_add_formats container_formats \
        "$NOVA_XEN_GLANCE_DEFAULT_CONTAINER_FORMATS" $NOVA_XEN_CONTAINER_FORMATS
}


# The test image
# --------------

# _nova_xen_image_name - the Glance name of the test image
function _nova_xen_image_name {
    local name
    if [[ -n "$NOVA_XEN_IMAGE_NAME" ]]; then
        name=$NOVA_XEN_IMAGE_NAME
    elif [[ -n "$NOVA_XEN_IMAGE_URL" ]]; then
        name=${NOVA_XEN_IMAGE_URL%%[?#]*}
        name=${name##*/}
        name=${name%.*}
    fi
    echo "${name:-nova-xen-blank}"
}

# _nova_xen_generated_image - where the blank image is generated
function _nova_xen_generated_image {
    echo "$FILES/$(_nova_xen_image_name).$NOVA_XEN_IMAGE_DISK_FORMAT"
}

# _nova_xen_image_file - the test image on disk: downloaded (cached in
# $FILES) or generated
function _nova_xen_image_file {
    local file size python
    if [[ -n "$NOVA_XEN_IMAGE_URL" ]]; then
        get_extra_file "$NOVA_XEN_IMAGE_URL"
        return
    fi
    file=$(_nova_xen_generated_image)
    if [[ ! -s "$file" ]]; then
        size=$((NOVA_XEN_IMAGE_SIZE_MB * 1024 * 1024))
        mkdir -p "$(dirname "$file")"
        if [[ "$NOVA_XEN_IMAGE_DISK_FORMAT" == "vhd" ]]; then
            # A dynamic VHD with no block allocated: a few KiB on disk
            python=$(_nova_xen_python)
            "$python" -c 'import sys
from xapisim import vhd
sys.stdout.buffer.writelines(vhd.write_vhd(int(sys.argv[1]), [], None))' \
                "$size" > "$file.tmp"
        else
            truncate -s "$size" "$file.tmp"
        fi
        mv "$file.tmp" "$file"
    fi
    echo "$file"
}

# upload_nova_xen_image - the test image, into Glance (once)
function upload_nova_xen_image {
    local name file
    name=$(_nova_xen_image_name)
    # stack.sh exports OS_CLOUD (devstack-admin) for the openstack client
    if openstack image show "$name" >/dev/null 2>&1; then
        echo "nova-xen: image $name is already in Glance"
        return
    fi
    file=$(_nova_xen_image_file)
    openstack image create "$name" --public \
        --disk-format "$NOVA_XEN_IMAGE_DISK_FORMAT" \
        --container-format bare --file "$file"
}


# Pools
# -----

# sync_nova_xen_pools - one Nova host aggregate per XenAPI pool, holding the
# compute hosts of that pool (nova-xen-manage pools sync, as devstack's admin)
function sync_nova_xen_pools {
    local python
    python=$(_nova_xen_python)
    # stack.sh exports OS_CLOUD (devstack-admin) and writes its clouds.yaml;
    # a nova-compute that has just started may not have reported its pool
    if ! "$python" -m nova_xen.cmd.manage pools sync \
            --os-cloud "${OS_CLOUD:-devstack-admin}" --wait 60; then
        # the cloud works without them: they group hosts for operators
        warn $LINENO "nova-xen-manage pools sync failed (reason above): the XenAPI pools have no host aggregates; run it again once the cloud is up"
    fi
}


# Tempest
# -------

# _nova_xen_both VALUE VAR - True if VALUE and the boolean $VAR are True
function _nova_xen_both {
    if [[ "$1" == "True" && "$(trueorfalse False "$2")" == "True" ]]; then
        echo True
    else
        echo False
    fi
}

# _nova_xen_with_service VALUE SERVICE - True if VALUE and SERVICE enabled
function _nova_xen_with_service {
    if [[ "$1" == "True" ]] && is_service_enabled "$2"; then
        echo True
    else
        echo False
    fi
}

# configure_nova_xen_tempest - tempest.conf for a XenServer cloud
function configure_nova_xen_tempest {
    local python features option value name id
    python=$(_nova_xen_python)
    if ! features=$("$python" "$NOVA_XEN_PLUGIN_DIR/tools/driver_features.py"); then
        die $LINENO "$python could not import nova and nova_xen to find the driver's features (error above): set NOVA_XEN_PYTHON to the Python of nova-compute"
    fi

    # What the driver implements, where the deployment allows it
    local live=False
    while read -r option value; do
        case "$option" in
            live_migration)
                value=$(_nova_xen_both "$value" LIVE_MIGRATION_AVAILABLE)
                live=$value
                ;;
            vnc_console)
                value=$(_nova_xen_with_service "$value" n-novnc)
                ;;
            spice_console)
                value=$(_nova_xen_with_service "$value" n-spice)
                ;;
            serial_console)
                value=$(_nova_xen_with_service "$value" n-sproxy)
                ;;
        esac
        iniset "$TEMPEST_CONFIG" compute-feature-enabled "$option" "$value"
    done <<< "$features"
    iniset "$TEMPEST_CONFIG" compute-feature-enabled \
        block_migration_for_live_migration \
        "$(_nova_xen_both "$live" USE_BLOCK_MIGRATION_FOR_LIVE_MIGRATION)"
    iniset "$TEMPEST_CONFIG" compute-feature-enabled \
        live_migrate_back_and_forth \
        "$(_nova_xen_both "$live" LIVE_MIGRATE_BACK_AND_FORTH)"
    # The APIs of Nova's former XenAPI driver (os-agents, resetNetwork) left
    # Nova with it
    iniset "$TEMPEST_CONFIG" compute-feature-enabled xenapi_apis False
    # The second disk of a Xen guest
    iniset "$TEMPEST_CONFIG" compute volume_device_name xvdb
    # The generated test image boots no OS: nothing would answer Tempest's
    # SSH.  A real image (NOVA_XEN_IMAGE_URL) keeps devstack's validation,
    # with its login user
    if [[ -z "$NOVA_XEN_IMAGE_URL" ]]; then
        iniset "$TEMPEST_CONFIG" validation run_validation False
    elif [[ -n "$NOVA_XEN_IMAGE_SSH_USER" ]]; then
        iniset "$TEMPEST_CONFIG" validation image_ssh_user \
            "$NOVA_XEN_IMAGE_SSH_USER"
        iniset "$TEMPEST_CONFIG" validation image_alt_ssh_user \
            "$NOVA_XEN_IMAGE_SSH_USER"
    fi

    if is_service_enabled glance; then
        name=$(_nova_xen_image_name)
        if ! id=$(openstack image show "$name" -f value -c id); then
            die $LINENO "image $name is not in Glance: the extra phase uploads it; check NOVA_XEN_IMAGE_URL and NOVA_XEN_IMAGE_NAME"
        fi
        iniset "$TEMPEST_CONFIG" compute image_ref "$id"
        iniset "$TEMPEST_CONFIG" compute image_ref_alt "$id"
        iniset "$TEMPEST_CONFIG" scenario img_file "$(_nova_xen_image_file)"
        iniset "$TEMPEST_CONFIG" scenario img_disk_format \
            "$NOVA_XEN_IMAGE_DISK_FORMAT"
        iniset "$TEMPEST_CONFIG" scenario img_container_format bare
    fi

    # For nova-xen's Tempest plugin, which looks at the pool itself
    if [[ -n "$XENAPI_CONNECTION_URL" ]]; then
        iniset "$TEMPEST_CONFIG" xenapi connection_url "$XENAPI_CONNECTION_URL"
        iniset "$TEMPEST_CONFIG" xenapi connection_username "$XENAPI_USER"
        if [[ ${#XENAPI_PASSWORD} -gt 0 ]]; then
            _nova_xen_iniset_secret "$TEMPEST_CONFIG" xenapi \
                connection_password XENAPI_PASSWORD
        fi
        if [[ -n "$XENAPI_CA_FILE" ]]; then
            iniset "$TEMPEST_CONFIG" xenapi ca_file "$XENAPI_CA_FILE"
        fi
        iniset "$TEMPEST_CONFIG" xenapi insecure "$XENAPI_INSECURE"
    fi
}


# Clean
# -----

# cleanup_nova_xen - remove what the plugin generated
function cleanup_nova_xen {
    # A downloaded image stays cached in $FILES, as devstack's own do
    if [[ -z "$NOVA_XEN_IMAGE_URL" ]]; then
        rm -f "$(_nova_xen_generated_image)"
    fi
}


# Dispatch
# --------

if [[ "${1:-}" == "stack" ]]; then
    nova_xen_check_settings
    case "${2:-}" in
        pre-install)
            # The settings check above is all: it stops a stack with a wrong
            # local.conf before anything is installed
            ;;
        install)
            echo_summary "Installing nova-xen"
            install_nova_xen
            if [[ "$NOVA_XEN_INSTALL_DOM0_PLUGINS" == "True" ]]; then
                # Now: nova-compute starts before the extra phase
                echo_summary "Installing nova-xen's dom0 plugins on $XENAPI_DOM0_SSH"
                install_nova_xen_dom0_plugins
            fi
            ;;
        post-config)
            if is_service_enabled n-cpu; then
                echo_summary "Configuring nova-compute for XenServer"
                configure_nova_xen
            fi
            if is_service_enabled nova && \
                    is_service_enabled cinder c-api c-sch c-vol; then
                echo_summary "Configuring Nova for Cinder (service tokens)"
                configure_nova_xen_cinder
            fi
            if is_service_enabled g-api; then
                echo_summary "Configuring Glance for XenServer images"
                configure_nova_xen_glance
            fi
            if [[ "$NOVA_XEN_NEUTRON_BACKEND" == "ovn" ]] && \
                    is_service_enabled q-svc neutron-api; then
                echo_summary "Configuring Neutron's ML2/OVN for Xen guests"
                configure_nova_xen_neutron
            fi
            ;;
        extra)
            if is_service_enabled n-cpu && [[ "$NOVA_XEN_OVN_SETUP" == "True" ]]; then
                echo_summary "Setting up dom0's Open vSwitch for ML2/OVN"
                setup_nova_xen_ovn
            fi
            if is_service_enabled g-api; then
                echo_summary "Uploading nova-xen's test image"
                upload_nova_xen_image
            fi
            ;;
        test-config)
            if is_service_enabled n-api; then
                echo_summary "Syncing Nova host aggregates with XenAPI pools"
                sync_nova_xen_pools
            fi
            if is_service_enabled tempest; then
                echo_summary "Configuring Tempest for nova-xen"
                configure_nova_xen_tempest
            fi
            ;;
    esac
elif [[ "${1:-}" == "unstack" ]]; then
    # Nothing of ours runs: nova-compute is devstack's n-cpu.  Instances
    # keep running in the pool until they are deleted through Nova.
    :
elif [[ "${1:-}" == "clean" ]]; then
    cleanup_nova_xen
fi
