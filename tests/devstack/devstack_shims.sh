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

# _shim_ini get|set FILE SECTION OPTION [VALUE] - devstack's ini semantics:
# a missing file or section is created, a missing option is added right
# after its section header, an existing one has its value replaced; all
# other lines are kept as they are
function _shim_ini {
    local action=$1 file=$2 section=$3 option=$4
    if [[ ! -f "$file" ]]; then
        [[ $action == get ]] && return 0
        mkdir -p "$(dirname "$file")"
        : > "$file"
    fi
    SHIM_INI_VALUE=${5:-} awk -v action="$action" -v section="$section" \
        -v option="$option" '
        { lines[NR] = $0 }
        END {
            header = 0; found = 0; current = ""
            for (i = 1; i <= NR; i++) {
                line = lines[i]
                if (line ~ /^\[.*\][ \t]*$/) {
                    current = line
                    sub(/^\[/, "", current)
                    sub(/\][ \t]*$/, "", current)
                    if (current == section && !header) header = i
                    continue
                }
                if (current == section && !found &&
                    substr(line, 1, length(option)) == option &&
                    substr(line, length(option) + 1) ~ /^[ \t]*=/) found = i
            }
            if (action == "get") {
                if (found) {
                    value = lines[found]
                    sub(/^[^=]*=[ \t]*/, "", value)
                    sub(/[ \t]+$/, "", value)
                    print value
                }
                exit
            }
            entry = option " = " ENVIRON["SHIM_INI_VALUE"]
            if (found) lines[found] = entry
            for (i = 1; i <= NR; i++) {
                print lines[i]
                if (i == header && !found) print entry
            }
            if (!header) {
                if (NR) print ""
                print "[" section "]"
                print entry
            }
        }' "$file" > "$file.shim-new"
    if [[ $action == get ]]; then
        cat "$file.shim-new"
        rm -f "$file.shim-new"
    else
        mv "$file.shim-new" "$file"
    fi
}

# iniset FILE SECTION OPTION VALUE
function iniset {
    [[ -z "$2" || -z "$3" ]] && return
    _shim_ini set "$1" "$2" "$3" "$4"
}

# iniget FILE SECTION OPTION
function iniget {
    _shim_ini get "$1" "$2" "$3"
}

# die LINENO MESSAGE... - as devstack: the message on stderr, then exit
function die {
    local line=$1
    shift
    set +o xtrace
    echo "[ERROR] ${BASH_SOURCE[1]}:$line $*" >&2
    exit 1
}

# warn LINENO MESSAGE...
function warn {
    local line=$1
    shift
    echo "[WARNING] ${BASH_SOURCE[1]}:$line $*" >&2
}

# is_service_enabled SERVICE... - any of them in ENABLED_SERVICES; "nova",
# "glance" and "neutron" stand for any n-*, g-* and q-* service
function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$service,"* ]] && return 0
        [[ $service == nova && ",$ENABLED_SERVICES" == *",n-"* ]] && return 0
        [[ $service == glance && ",$ENABLED_SERVICES" == *",g-"* ]] && return 0
        [[ $service == neutron && ",$ENABLED_SERVICES" == *",q-"* ]] && return 0
    done
    return 1
}

# trueorfalse DEFAULT VARNAME - devstack's normalisation of a boolean
function trueorfalse {
    local default=$1
    local testval=${!2:-}
    case "$testval" in
        1|[yY]es|YES|[tT]rue|TRUE) echo True ;;
        0|[nN]o|NO|[fF]alse|FALSE) echo False ;;
        *) echo "$default" ;;
    esac
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
