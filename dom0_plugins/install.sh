#!/usr/bin/env bash
# Install nova-xen's xapi plugins into the dom0 of an XCP-ng/XenServer host.
#
#   install.sh [--check] [--ssh-option OPT]... [USER@]HOST
#   install.sh [--check] --local [--root DIR]
#
# Copies every etc/xapi.d/plugins/*.py beside this script into
# /etc/xapi.d/plugins/ of the host: plugins (files starting with "#!")
# mode 0755, the shared library mode 0644.  Files named nova_xen_* there
# that are no longer shipped are removed; nothing else is touched.  Files
# are replaced atomically, so that xapi never runs a half-written plugin.
# Running it again changes nothing.  Afterwards it checks that every file
# is in place with its mode and compiles under the host's python3.
#
#   HOST            over SSH (one connection: a tar stream, then this
#                   script runs on the host with --local)
#   --ssh-option O  passed to ssh as "-o O" (Port=2222, IdentityFile=...);
#                   repeatable
#   --local         this machine is the dom0
#   --root DIR      install under DIR/etc/xapi.d/plugins (created if
#                   missing) instead of /: for tests and image building
#   --check         change nothing; list the differences
#
# Exit status: 0 installed (or, with --check, nothing differs); 1 --check
# found differences; 2 usage error; 3 installation or verification failed;
# 255 ssh could not reach the host.  The local side needs bash and tar
# (written for macOS' bash 3.2 too); the host side (dom0) bash 4, GNU
# coreutils and python3.
set -euo pipefail

PLUGINS_DIR=etc/xapi.d/plugins
HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$HERE/$PLUGINS_DIR

# The comment above, to stdout for --help, else to stderr with status 2.
usage() {
    local text
    text=$(sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0")
    if [ "${1:-2}" = 0 ]; then
        echo "$text"
        exit 0
    fi
    echo "$text" >&2
    exit 2
}

die() {
    echo "install.sh: $*" >&2
    exit 3
}

# 0755 for a plugin (xapi executes it), 0644 for a library.
wanted_mode() {
    if [ "$(head -c 2 "$1")" = '#!' ]; then
        echo 755
    else
        echo 644
    fi
}

source_files() {
    local path
    for path in "$SOURCE"/*.py; do
        [ -f "$path" ] && basename "$path"
    done
}

# Compare the plugin directory $1 with the source: one line per difference,
# "install|update|chmod|remove MODE NAME" (NAME last: it may hold spaces).
differences() {
    local dest=$1 name mode path
    local -A shipped=()
    while IFS= read -r name; do
        shipped[$name]=1
        mode=$(wanted_mode "$SOURCE/$name")
        if [ ! -e "$dest/$name" ]; then
            echo "install $mode $name"
        elif ! cmp -s "$SOURCE/$name" "$dest/$name"; then
            echo "update $mode $name"
        elif [ "$(stat -c %a "$dest/$name")" != "$mode" ]; then
            echo "chmod $mode $name"
        fi
    done < <(source_files)
    # .nova_xen_*: a copy an interrupted run left behind
    for path in "$dest"/nova_xen_* "$dest"/.nova_xen_* \
            "$dest"/__pycache__/nova_xen_*; do
        [ -e "$path" ] || [ -L "$path" ] || continue
        name=$(basename "$path")
        case "$path" in
            */__pycache__/*)
                # compiled copy of a module that is gone
                [ -n "${shipped[${name%%.*}.py]:-}" ] ||
                    echo "remove - __pycache__/$name" ;;
            *)
                [ -n "${shipped[$name]:-}" ] || echo "remove - $name" ;;
        esac
    done
    return 0
}

apply() {
    local dest=$1 action=$2 name=$3 mode=$4
    case "$action" in
        install|update)
            # a copy beside the target, renamed over it: atomic
            install -m "$mode" "$SOURCE/$name" "$dest/.$name.new.$$"
            mv -f "$dest/.$name.new.$$" "$dest/$name" ;;
        chmod)
            chmod "$mode" "$dest/$name" ;;
        remove)
            rm -f "$dest/$name" ;;
    esac
}

verify() {
    local dest=$1 name mode problems=0
    while IFS= read -r name; do
        mode=$(wanted_mode "$SOURCE/$name")
        if [ ! -f "$dest/$name" ]; then
            echo "verify: $dest/$name is missing" >&2
            problems=1
        elif ! cmp -s "$SOURCE/$name" "$dest/$name"; then
            echo "verify: $dest/$name differs from the source" >&2
            problems=1
        elif [ "$(stat -c %a "$dest/$name")" != "$mode" ]; then
            echo "verify: $dest/$name is not mode 0$mode" >&2
            problems=1
        fi
    done < <(source_files)
    if [ -n "$(differences "$dest")" ]; then
        echo "verify: stale files remain in $dest" >&2
        problems=1
    fi
    [ "$problems" -eq 0 ] || return 1
    if ! command -v python3 >/dev/null 2>&1; then
        echo "verify: no python3 here: plugins not compiled" >&2
        return 1
    fi
    # compile() only: importing needs xapi's XenAPIPlugin, and must not
    # leave __pycache__ behind
    local -a names
    mapfile -t names < <(source_files)
    local compile='import sys
names = sys.argv[1:]
[compile(open(n, "rb").read(), n, "exec", dont_inherit=True) for n in names]'
    (cd "$dest" && python3 -c "$compile" "${names[@]}") || {
        echo "verify: plugins do not compile under $(python3 -V 2>&1)" >&2
        return 1
    }
    echo "verified: ${#names[@]} files in $dest compile under" \
        "$(python3 -V 2>&1)"
}

# The isolation plugin needs nft in dom0 (XCP-ng does not ship it): warn.
check_nft() {
    local root=${1%/} dir
    for dir in /usr/sbin /sbin /usr/bin /bin; do
        [ -x "$root$dir/nft" ] && return 0
    done
    echo "warning: no nft in ${root:-/}: network isolation needs the" \
        "nftables package in dom0 (nova-compute refuses to start" \
        "without it)" >&2
}

install_local() {
    local root=$1 check=$2 dest changes action name mode
    dest=${root%/}/$PLUGINS_DIR
    [ -n "$(source_files)" ] || die "no plugins in $SOURCE"
    if [ ! -d "$dest" ]; then
        if [ "$root" = / ]; then
            die "$dest does not exist: is this a xapi host's dom0?"
        fi
        [ "$check" = 1 ] || mkdir -p "$dest"
    fi
    changes=$(differences "$dest")
    if [ "$check" = 1 ]; then
        if [ -z "$changes" ]; then
            echo "in sync: $dest"
            return 0
        fi
        while read -r action mode name; do
            case "$action" in
                remove) echo "would remove $dest/$name" ;;
                *) echo "would $action $dest/$name (0$mode)" ;;
            esac
        done <<< "$changes"
        return 1
    fi
    if [ -n "$changes" ]; then
        while read -r action mode name; do
            apply "$dest" "$action" "$name" "$mode" ||
                die "could not $action $dest/$name"
            case "$action" in
                install) echo "installed $dest/$name (0$mode)" ;;
                update) echo "updated $dest/$name (0$mode)" ;;
                chmod) echo "changed the mode of $dest/$name to 0$mode" ;;
                remove) echo "removed $dest/$name" ;;
            esac
        done <<< "$changes"
    else
        echo "unchanged: $dest"
    fi
    verify "$dest" || die "verification failed in $dest"
    check_nft "$root"
}

install_remote() {
    local target=$1 root=$2 check=$3
    shift 3
    local -a args=(--local --root "$root") names=() ssh_options=()
    local name
    [ $# -eq 0 ] || ssh_options=("$@")
    [ "$check" = 0 ] || args+=(--check)
    # no mapfile: the local side may be macOS' bash 3.2
    while IFS= read -r name; do
        names+=("$name")
    done < <(source_files)
    [ "${#names[@]}" -gt 0 ] || die "no plugins in $SOURCE"
    # sh on the host: unpack into a temporary directory, run this script
    # there, keep its exit status, always clean up
    local remote
    remote="tmp=\$(mktemp -d \"\${TMPDIR:-/tmp}/nova-xen-plugins.XXXXXX\")"
    remote+=" || exit 3"
    remote+="; trap 'rm -rf \"\$tmp\"' EXIT"
    remote+="; tar -xf - --no-same-owner -C \"\$tmp\" || exit 3"
    remote+="; bash \"\$tmp/install.sh\"$(printf ' %q' "${args[@]}")"
    if [ "$check" = 0 ]; then
        echo "installing into $target:${root%/}/$PLUGINS_DIR"
    else
        echo "checking $target:${root%/}/$PLUGINS_DIR"
    fi
    # $remote is meant to expand on the host:
    # shellcheck disable=SC2029
    (cd "$HERE" && tar -cf - install.sh "${names[@]/#/$PLUGINS_DIR/}") |
        ssh ${ssh_options[@]+"${ssh_options[@]}"} "$target" "$remote"
}

main() {
    local local_mode=0 check=0 root=/ target=''
    local -a ssh_options=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --local) local_mode=1 ;;
            --check) check=1 ;;
            --root)
                [ $# -ge 2 ] || usage
                root=$2
                shift ;;
            --ssh-option)
                [ $# -ge 2 ] || usage
                ssh_options+=(-o "$2")
                shift ;;
            -h|--help) usage 0 ;;
            -*) echo "install.sh: unknown option $1" >&2; usage ;;
            *)
                [ -z "$target" ] || usage
                target=$1 ;;
        esac
        shift
    done
    case "$root" in
        /*) ;;
        *) echo "install.sh: --root needs an absolute path" >&2; usage ;;
    esac
    if [ "$local_mode" = 1 ]; then
        if [ -n "$target" ] || [ "${#ssh_options[@]}" -gt 0 ]; then
            usage
        fi
        install_local "$root" "$check"
    else
        [ -n "$target" ] || usage
        install_remote "$target" "$root" "$check" \
            ${ssh_options[@]+"${ssh_options[@]}"}
    fi
}

main "$@"
