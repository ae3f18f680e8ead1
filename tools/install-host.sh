#!/usr/bin/env bash
# Install what qmpctl needs on a Debian 12 host, idempotently, as root:
# QEMU 10 from the bookworm-backports suite, guest toolchains, Python venv.
#
# The backports entry reuses the mirror this host already uses for bookworm,
# so the script works behind whatever mirror the machine is configured with.
set -euo pipefail

log() { printf 'install-host: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (apt-get install)"; exit 1
fi
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != "bookworm" ]; then
    log "expected Debian 12 (bookworm), found ${PRETTY_NAME:-unknown}"; exit 1
fi

BACKPORTS_LIST=/etc/apt/sources.list.d/qmpctl-bookworm-backports.list
# Packages from the base suite.
BASE_PKGS=(
    build-essential binutils nasm
    gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross
    busybox-static cpio zstd xz-utils
    mmdebstrap kmod
    python3 python3-venv python3-pip
    procps iproute2 file
    openssh-client openssh-server
    chromium chromium-driver fonts-liberation
)
# chromium, chromium-driver: the HTML report's browser test (tests/e2e/test_html_browser.py,
# headless through Selenium); fonts-liberation: text in its screenshots.
# QEMU 10 comes only from backports.
QEMU_PKGS=(qemu-system-x86 qemu-system-arm qemu-utils)
QEMU_MIN_MAJOR=10

mirror_for_bookworm() {
    # deb822 files first (Debian 12 default), then one-line lists.
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '
            /^URIs:/   { u=$2 }
            /^Suites:/ { for (i=2;i<=NF;i++) if ($i=="bookworm") s=1 }
            /^$/       { if (s && u!~/security/) { print u; exit } u=""; s=0 }
            END        { if (s && u!~/security/) print u }' "$f" | head -n1)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1=="deb" && $3=="bookworm" && $2!~/security/ { print $2; exit }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
}

qemu_major() {
    command -v qemu-system-x86_64 >/dev/null || { echo 0; return; }
    qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'
}

need_update=0
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(mirror_for_bookworm)
    if [ -z "$mirror" ]; then
        log "no apt source for bookworm found; cannot add bookworm-backports"; exit 1
    fi
    log "adding bookworm-backports from the host's bookworm mirror"
    echo "deb $mirror bookworm-backports main" > "$BACKPORTS_LIST"
    need_update=1
fi

missing=()
for p in "${BASE_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$(qemu_major)" -lt "$QEMU_MIN_MAJOR" ] || ! command -v qemu-system-aarch64 >/dev/null \
   || ! command -v qemu-img >/dev/null; then
    qemu_missing=1
else
    qemu_missing=0
fi

if [ "${#missing[@]}" -eq 0 ] && [ "$qemu_missing" -eq 0 ]; then
    log "host packages already present ($(qemu-system-x86_64 --version | head -n1))"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# An old package list may miss backports: update when we added the source,
# or when an install would otherwise fail.
if [ "$need_update" -eq 1 ] || [ ! -d /var/lib/apt/lists ] \
   || [ -z "$(ls /var/lib/apt/lists/*bookworm-backports*Packages* 2>/dev/null)" ]; then
    apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# openssh-server is here for its sshd binary: the --dst-via ssh runs and tests
# start their own sshd (own config and keys) inside the destination's network
# namespace. The system's ssh service is not wanted: stop and disable it.
if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
    if command -v systemctl >/dev/null; then
        systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
    if [ -x /etc/init.d/ssh ]; then
        /etc/init.d/ssh stop >/dev/null 2>&1 || true
        update-rc.d ssh disable >/dev/null 2>&1 || true
    fi
fi
if [ "$qemu_missing" -eq 1 ]; then
    log "installing QEMU from bookworm-backports"
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${QEMU_PKGS[@]}" \
        ipxe-qemu qemu-system-data seabios
fi
if [ "$(qemu_major)" -lt "$QEMU_MIN_MAJOR" ]; then
    log "QEMU >= $QEMU_MIN_MAJOR needed, found: $(qemu-system-x86_64 --version | head -n1)"; exit 1
fi
log "done: $(qemu-system-x86_64 --version | head -n1)"
