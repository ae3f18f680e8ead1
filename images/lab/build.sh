#!/usr/bin/env bash
# Build a qmpctl lab image for ARCH (arm64 | amd64): a Debian root file
# system with bookworm-backports' kernel (KVM, dirty ring with backup bitmap
# on arm64) and QEMU, Python 3.11 with qmpctl's dependencies as wheels for
# that architecture, and the lab's /init, packed as one uncompressed
# initramfs. Debian packages and PyPI wheels only; nothing runs under
# emulation (mmdebstrap's extract variant runs no maintainer scripts).
#
#   build.sh ARCH OUTDIR      -> OUTDIR/{vmlinuz,rootfs.cpio,config,manifest.txt}
#
# Needs (tools/install-host.sh): mmdebstrap, kmod (depmod), cpio, python3 + pip
# (PIP, else the checkout venv's, else pip3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
arch=${1:?usage: build.sh ARCH OUTDIR}
out=${2:?usage: build.sh ARCH OUTDIR}
die() { printf 'lab-build: %s\n' "$*" >&2; exit 1; }
case $arch in
    arm64) kernel=linux-image-cloud-arm64 qemu=qemu-system-arm wheel=manylinux2014_aarch64 ;;
    amd64) kernel=linux-image-cloud-amd64 qemu=qemu-system-x86,seabios wheel=manylinux2014_x86_64 ;;
    *) die "unknown architecture $arch (arm64 or amd64)" ;;
esac
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (apt-get install mmdebstrap)"
pip=${PIP:-$repo/.venv/bin/pip}
[ -x "$pip" ] || pip=pip3

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmpctl-lab-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
sources=$("$here/sources.sh" "$arch")
[ -n "$sources" ] || die "no Debian bookworm source in the host's apt configuration (run apt-get update)"

# kmod: modprobe for the x86 lab's kvm-amd; busybox: poweroff -f; ipxe-qemu:
# efi-virtio.rom for virtio-net-pci (only a Recommends of QEMU).
printf '%s\n' "$sources" | mmdebstrap --variant=extract --arch="$arch" --quiet \
    --include="$kernel,$qemu,qemu-utils,ipxe-qemu,python3,libstdc++6,busybox,kmod,iproute2,procps,util-linux,mount,findutils,tar,dash,bash,coreutils,base-passwd,mawk,sed,grep,gzip,hostname,file" \
    --aptopt='APT::Default-Release "bookworm-backports"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --extract-hook="ls \"\$1/var/cache/apt/archives\" > '$tmp/debs.txt'" \
    bookworm "$root" - >&2 || die "mmdebstrap failed"

# qmpctl's runtime and pytest dependencies: QMPCTL_LAB_REQUIREMENTS (one a
# line; an installed qmpctl passes its metadata's), else pyproject.toml's.
if [ -n "${QMPCTL_LAB_REQUIREMENTS:-}" ]; then
    deps=$QMPCTL_LAB_REQUIREMENTS
else
    [ -f "$repo/pyproject.toml" ] || die "no pyproject.toml in $repo: set QMPCTL_LAB_REQUIREMENTS"
    deps=$(python3 - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["pytest"]))
PY
)
fi
mapfile -t deps <<<"$deps"
site=$root/opt/qmpctl-lab/site
"$pip" install --quiet --disable-pip-version-check --no-warn-script-location --target "$site" \
    --platform "$wheel" --python-version 3.11 --implementation cp --only-binary=:all: \
    "${deps[@]}" >&2 || die "pip could not fetch $arch wheels for: ${deps[*]}"
# Bytecode now, not at the first import under emulation (same 3.11 magic).
/usr/bin/python3 -m compileall -q -j0 "$root/usr/lib/python3.11" "$site" >/dev/null 2>&1 || true

# What maintainer scripts would have made: /bin/sh, awk, the user database.
ln -sf dash "$root/bin/sh"
ln -sf mawk "$root/usr/bin/awk"
cp "$root/usr/share/base-passwd/passwd.master" "$root/etc/passwd"
cp "$root/usr/share/base-passwd/group.master" "$root/etc/group"
install -m 0755 "$here/init.sh" "$root/init"
mkdir -p "$root/lab" "$root/usr/local/bin"
printf '#!/bin/sh\nexec python3 -m qmpctl "$@"\n' > "$root/usr/local/bin/qmpctl"
chmod 0755 "$root/usr/local/bin/qmpctl"

krel=$(ls "$root/lib/modules")
depmod -b "$root" "$krel"  # what the kernel package's postinst would have run
cp "$root/boot/vmlinuz-$krel" "$tmp/vmlinuz"
cp "$root/boot/config-$krel" "$tmp/config"
rm -rf "$root/boot"/* "$root/var/cache/apt"/*.bin
# The extract variant keeps no dpkg status: versions come from the .debs' names.
pkgver() { sed -n "s/^$1_\([^_]*\)_.*\.deb$/\1/p" "$tmp/debs.txt" | sed 's/%3a/:/g' | head -n1; }
{
    echo "arch=$arch"
    echo "kernel_release=$krel"
    echo "kernel_package=$(pkgver "linux-image-$krel")"
    echo "qemu=$(pkgver "${qemu%%,*}")"
    echo "python3=$(pkgver python3)"
    echo "wheels=$(cd "$site" && ls -d ./*.dist-info | sed 's|^\./||; s|\.dist-info$||' | tr '\n' ' ')"
} > "$tmp/manifest.txt"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc) > "$tmp/rootfs.cpio"
mkdir -p "$out"
for f in vmlinuz config manifest.txt rootfs.cpio; do mv "$tmp/$f" "$out/$f"; done
printf 'lab-build: %s: %s, %s MiB\n' "$arch" "$(tr '\n' ' ' < "$out/manifest.txt" | cut -c1-120)" \
    "$(( $(stat -c %s "$out/rootfs.cpio") / 1048576 ))" >&2
