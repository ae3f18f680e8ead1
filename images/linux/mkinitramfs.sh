#!/usr/bin/env bash
# Build the qmpctl Linux guest initramfs (gzip'd newc cpio) for one arch.
#
#   mkinitramfs.sh KERNEL.deb BUSYBOX.deb GUESTLOAD INIT OUT.img
#
# Contents: /init (busybox sh script), /bin/busybox (applet links are made
# by /init at boot), /bin/guestload, /dev/console, and the kernel modules
# the guest needs (virtio-pci stack + virtio-net) with every module they
# depend on (read from each module's .modinfo "depends="), listed in load
# order in /etc/modules.load.  The archive is reproducible: fixed owners,
# mtimes and order.
set -euo pipefail

die() { printf 'mkinitramfs: %s\n' "$*" >&2; exit 1; }
[ $# -eq 5 ] || die "usage: mkinitramfs.sh KERNEL.deb BUSYBOX.deb GUESTLOAD INIT OUT.img"
kdeb=$1 bbdeb=$2 guestload=$3 init=$4 out=$5

# Modules wanted; dependencies are added automatically.  Everything else the
# guest uses (PCI host bridges, MSI/ITS, 8250/PL011 consoles, devtmpfs,
# packet sockets) is built into Debian's cloud kernels.
WANT_MODULES=(virtio_pci virtio_net)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,usr/bin,usr/sbin,lib/modules}

dpkg-deb -x "$bbdeb" "$tmp/bb"
install -m 755 "$tmp/bb/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 755 "$guestload" "$root/bin/guestload"
install -m 755 "$init" "$root/init"

# Only the module tree is needed from the kernel package.
mkdir -p "$tmp/k"
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$tmp/k" --wildcards './lib/modules/*' \
    || die "cannot extract modules from $kdeb"
mdir=$(echo "$tmp"/k/lib/modules/*)
[ -d "$mdir" ] || die "no lib/modules in $kdeb"
krel=$(basename "$mdir")

modpath() { # name -> path of NAME.ko (modules may use - or _)
    local n=$1 alt=${1//_/-}
    find "$mdir/kernel" \( -name "$n.ko" -o -name "$alt.ko" -o -name "$n.ko.xz" \
        -o -name "$alt.ko.xz" -o -name "$n.ko.zst" -o -name "$alt.ko.zst" \) -print -quit
}
moddeps() { # path -> dependency names, from the .modinfo section
    local f=$1
    case "$f" in
        *.xz) xz -dc "$f" ;; *.zst) zstd -qdc "$f" ;; *) cat "$f" ;;
    esac | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '
}
builtin() { grep -qE "/$1\.ko\$|/${1//_/-}\.ko\$" "$mdir/modules.builtin" 2>/dev/null; }

declare -A seen=()
order=()
visit() {
    local n=$1 p d
    [ -n "${seen[$n]:-}" ] && return 0
    seen[$n]=1
    p=$(modpath "$n")
    if [ -z "$p" ]; then
        builtin "$n" && return 0
        die "module $n not found in $krel"
    fi
    for d in $(moddeps "$p"); do visit "$d"; done
    order+=("$p")
}
for m in "${WANT_MODULES[@]}"; do visit "$m"; done

mkdir -p "$root/lib/modules/$krel"
: > "$root/etc/modules.load"
for p in "${order[@]}"; do
    b=$(basename "$p")
    case "$b" in # insmod of busybox takes plain .ko only
        *.xz) xz -dc "$p" > "$root/lib/modules/$krel/${b%.xz}"; b=${b%.xz} ;;
        *.zst) zstd -qdc "$p" > "$root/lib/modules/$krel/${b%.zst}"; b=${b%.zst} ;;
        *) cp "$p" "$root/lib/modules/$krel/$b" ;;
    esac
    echo "/lib/modules/$krel/$b" >> "$root/etc/modules.load"
done
echo "$krel" > "$root/etc/kernel-release"
printf 'mkinitramfs: %s modules: %s\n' "$krel" "$(sed 's,.*/,,' "$root/etc/modules.load" | tr '\n' ' ')" >&2

# newc header for one entry without data (directory or device node), so
# /dev/console exists before devtmpfs is mounted without needing mknod.
newc_entry() { # name mode(octal) rdevmajor rdevminor ino
    local name=$1 mode=$2 maj=$3 min=$4 ino=$5 nsz hdr pad
    nsz=$(( ${#name} + 1 ))
    hdr=$(printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$ino" "$((8#$mode))" 0 0 1 0 0 0 0 "$maj" "$min" "$nsz" 0)
    printf '%s%s\0' "$hdr" "$name"
    pad=$(( (4 - (110 + nsz) % 4) % 4 ))
    [ "$pad" -gt 0 ] && head -c "$pad" /dev/zero
    return 0
}

find "$root" -exec touch -h -d @0 {} +
mkdir -p "$(dirname "$out")"
{
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort \
        | cpio --quiet -o -H newc -R 0:0 --reproducible)
    # Second archive (the kernel reads concatenated cpio archives).
    newc_entry dev/console 020600 5 1 900002
    newc_entry 'TRAILER!!!' 0 0 0 0
} | gzip -9n > "$out.tmp"
mv "$out.tmp" "$out"
