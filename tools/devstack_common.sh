#!/bin/bash
#
# tools/devstack_common.sh - devstack functions that nova-xen's devstack
# plugin calls and that do the same work everywhere: the ini functions
# (devstack's semantics: files edited line by line, everything else kept),
# die, warn, is_service_enabled and trueorfalse.  Sourced by the stand-ins
# of tests/devstack/devstack_shims.sh and by the mini cloud
# (tools/minicloud/devstack_functions.sh), which add what differs.

# _ini get|set FILE SECTION OPTION [VALUE] - devstack's ini semantics:
# a missing file or section is created, a missing option is added right
# after its section header, an existing one has its value replaced; all
# other lines are kept as they are
function _ini {
    local action=$1 file=$2 section=$3 option=$4
    if [[ ! -f "$file" ]]; then
        [[ $action == get ]] && return 0
        mkdir -p "$(dirname "$file")"
        : > "$file"
    fi
    INI_VALUE=${5:-} awk -v action="$action" -v section="$section" \
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
            entry = option " = " ENVIRON["INI_VALUE"]
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
        }' "$file" > "$file.ini-new"
    if [[ $action == get ]]; then
        cat "$file.ini-new"
        rm -f "$file.ini-new"
    else
        mv "$file.ini-new" "$file"
    fi
}

# iniset FILE SECTION OPTION VALUE
function iniset {
    [[ -z "$2" || -z "$3" ]] && return
    _ini set "$1" "$2" "$3" "$4"
}

# iniget FILE SECTION OPTION
function iniget {
    _ini get "$1" "$2" "$3"
}

# inidelete FILE SECTION OPTION - remove OPTION from SECTION
function inidelete {
    local file=$1 section=$2 option=$3
    [[ -f "$file" ]] || return 0
    awk -v section="$section" -v option="$option" '
        /^\[.*\][ \t]*$/ {
            current = $0
            sub(/^\[/, "", current)
            sub(/\][ \t]*$/, "", current)
        }
        current == section && substr($0, 1, length(option)) == option &&
            substr($0, length(option) + 1) ~ /^[ \t]*=/ { next }
        { print }' "$file" > "$file.ini-new"
    mv "$file.ini-new" "$file"
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
