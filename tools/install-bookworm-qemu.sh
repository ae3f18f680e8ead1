#!/usr/bin/env bash
# Install Debian bookworm's own QEMU (7.2) into a private prefix, beside the
# system QEMU 10 from bookworm-backports, for cross-version migrations:
#
#   tools/install-bookworm-qemu.sh [PREFIX]      (default: .qemu/7.2 in the repository)
#
# Idempotent, as root (apt-get download needs the package lists, and an
# apt-get update when they lack bookworm's 7.2). The .debs of the bookworm
# (not backports) versions are fetched with `apt-get download PKG=VERSION` and
# unpacked with `dpkg-deb -x`; dpkg's database and the system QEMU are never
# touched. What goes in:
#
#   qemu-system-x86, qemu-system-arm   the binaries (usr/bin)
#   qemu-system-common                 their modules (accel-tcg-*.so, ...)
#   qemu-system-data                   option ROMs, keymaps (usr/share/qemu)
#   seabios, ipxe-qemu                 bookworm's BIOS and NIC ROMs
#
# QEMU's builds are relocatable: a binary in PREFIX/usr/bin finds its data
# directories (usr/share/qemu, usr/share/seabios, usr/lib/ipxe/qemu) and its
# modules under PREFIX, never the system QEMU 10's; `qemu -L help` shows it.
# Every shared library the binaries need must resolve (ldd): a library
# package missing from this host is unpacked into the prefix too, and qmpctl
# then starts the binary with LD_LIBRARY_PATH pointing there.
#
# PREFIX/.qmpctl-prefix, written last, marks a complete install: qmpctl lists
# the binaries of every such prefix under .qemu/ (`qmpctl doctor`).
set -euo pipefail

log() { printf 'install-bookworm-qemu: %s\n' "$*" >&2; }

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
PREFIX=${1:-$ROOT/.qemu/7.2}
WANT=7.2  # what bookworm ships; checked against the binaries after unpacking
PKGS=(qemu-system-x86 qemu-system-arm qemu-system-common qemu-system-data seabios ipxe-qemu)
BINARIES=(qemu-system-x86_64 qemu-system-aarch64)
STAMP=.qmpctl-prefix

binary_version() {  # "7.2" from "QEMU emulator version 7.2.22 (...)", or nothing
    "$1" -version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\.[0-9]*\).*/\1/p'
}

lib_path() {  # the prefix's own library directories, as LD_LIBRARY_PATH
    local d out=""
    for d in "$1"/usr/lib/*-linux-gnu "$1"/lib/*-linux-gnu; do
        [ -d "$d" ] && compgen -G "$d/*.so*" >/dev/null && out=${out:+$out:}$d
    done
    echo "$out"
}

missing_libs() {  # sonames that do not resolve for the prefix's binaries
    local b
    for b in "${BINARIES[@]}"; do
        { LD_LIBRARY_PATH=$(lib_path "$1") ldd "$1/usr/bin/$b" || true; } \
            | awk '/not found/ { print $1 }'
    done | sort -u
}

complete() {  # a finished install whose binaries run and are the right version
    local b
    [ -f "$1/$STAMP" ] || return 1
    for b in "${BINARIES[@]}"; do
        [ -x "$1/usr/bin/$b" ] || return 1
        [ "$(LD_LIBRARY_PATH=$(lib_path "$1") binary_version "$1/usr/bin/$b")" = "$WANT" ] \
            || return 1
    done
}

if complete "$PREFIX"; then
    log "QEMU $WANT already in $PREFIX"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "QEMU $WANT is not in $PREFIX and installing it needs root (apt-get download)"; exit 1
fi

bookworm_version() {  # newest version of $1 that is not from backports
    local v best=""
    for v in $(apt-cache madison "$1" 2>/dev/null \
               | awk -F'|' '$3 !~ /-backports/ { gsub(/ /, "", $2); print $2 }'); do
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
    done
    echo "$best"
}

versions() {
    local p v
    for p in "${PKGS[@]}"; do
        v=$(bookworm_version "$p")
        [ -n "$v" ] || return 1
        echo "$p=$v"
    done
}

export DEBIAN_FRONTEND=noninteractive
if ! specs=$(versions) || [ "$(bookworm_version qemu-system-x86 | sed -n 's/^[0-9]*:\([0-9]*\.[0-9]*\).*/\1/p')" != "$WANT" ]; then
    log "package lists lack bookworm's QEMU $WANT: apt-get update"
    apt-get update -q
    specs=$(versions) || { log "bookworm's QEMU packages not found by apt-cache"; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/qmpctl-qemu-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/prefix"
chmod 755 "$work" "$work/debs"
chown _apt "$work/debs" 2>/dev/null || true  # apt downloads as _apt when it can

fetch_unpack() {  # PKG=VERSION...: download the .debs and unpack them into the new prefix
    log "downloading $*"
    (cd "$work/debs" && apt-get download -q "$@" >/dev/null)
    local deb
    for deb in "$work"/debs/*.deb; do
        dpkg-deb -x "$deb" "$work/prefix"
        rm -f "$deb"
    done
}

# shellcheck disable=SC2086  # one PKG=VERSION per line
fetch_unpack $specs

missing=$(missing_libs "$work/prefix")
if [ -n "$missing" ]; then
    # Libraries of the 7.2 era that this host lacks: the binaries' own
    # dependencies that are not installed, at bookworm's versions.
    log "libraries not found on this host: $(echo $missing)"
    deps=$(for p in qemu-system-x86 qemu-system-arm; do
               apt-cache show "$(grep "^$p=" <<<"$specs")" | sed -n 's/^Depends: //p' | head -n1
           done | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' | grep '^lib' | sort -u)
    extra=()
    for p in $deps; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
        v=$(bookworm_version "$p")
        [ -n "$v" ] && extra+=("$p=$v")
    done
    [ "${#extra[@]}" -gt 0 ] && fetch_unpack "${extra[@]}"
    missing=$(missing_libs "$work/prefix")
    if [ -n "$missing" ]; then
        log "still unresolved: $(echo $missing)"; exit 1
    fi
    log "unpacked into the prefix: ${extra[*]} (qmpctl sets LD_LIBRARY_PATH)"
fi

for b in "${BINARIES[@]}"; do
    got=$(LD_LIBRARY_PATH=$(lib_path "$work/prefix") binary_version "$work/prefix/usr/bin/$b")
    if [ "$got" != "$WANT" ]; then
        log "$b from $specs reports version '${got:-none}', expected $WANT"; exit 1
    fi
done
printf '%s\n' $specs > "$work/prefix/$STAMP"

mkdir -p "$(dirname "$PREFIX")"
rm -rf "$PREFIX"
mv "$work/prefix" "$PREFIX"
log "QEMU $WANT in $PREFIX: $(LD_LIBRARY_PATH=$(lib_path "$PREFIX") \
    "$PREFIX/usr/bin/qemu-system-x86_64" -version | head -n1)"
