#!/bin/sh
# /init of the qmpctl Linux guest initramfs (busybox sh).
#
# Kernel command line (everything optional; defaults in brackets):
#   console=ttyS0 | console=ttyAMA0   the console carries the QMPCTL records
#                                   and the controller's commands
#   qmpctl.workload=wave|random|hotset|rate|readmostly   [wave]
#   qmpctl.size=64M | 1G | 25%      buffer size, MiB/GiB or % of RAM [64M]
#   qmpctl.threads=N                writer threads [one per online CPU]
#   qmpctl.interval-ms=N            progress period [200]
#   qmpctl.hot=X,Y                  hotset: X % of pages take Y % of writes
#   qmpctl.rate=N                   rate: target dirty rate, MiB/s [32]
#   qmpctl.write-pct=P              readmostly: % of ops that write [2]
#   qmpctl.net-interval-s=N         period of "QMPCTL net" records [5], 0=off
#   qmpctl.seed=N
#   qmpctl.net=on|off               bring up eth0 + background traffic [on]
# Every qmpctl.KEY=VALUE except qmpctl.net is passed to guestload as
# --KEY VALUE.
#
# Records: "QMPCTL boot uptime_ms=<ms>", "QMPCTL net iface=eth0 irqs=<n>",
# then guestload's (see guestload.c); if guestload exits,
# "QMPCTL guestload exit rc=<n>" and the guest powers off.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Keep kernel messages from splitting records on the console.
echo 1 > /proc/sys/kernel/printk

while read -r m; do
    insmod "$m" || echo "QMPCTL warning insmod-failed module=${m##*/}"
done < /etc/modules.load

echo "QMPCTL boot uptime_ms=$(awk '{ printf "%d", $1 * 1000 }' /proc/uptime)"

net=on
set --
for w in $(cat /proc/cmdline); do
    case "$w" in
        qmpctl.net=*) net=${w#qmpctl.net=} ;;
        qmpctl.*=*) k=${w#qmpctl.}; set -- "$@" "--${k%%=*}" "${k#*=}" ;;
    esac
done

irqs() { # sum of the /proc/interrupts lines of eth0's virtio device
    dev=$(basename "$(readlink /sys/class/net/eth0/device 2>/dev/null)" 2>/dev/null)
    [ -n "$dev" ] || { echo -1; return; }
    awk -v p="$dev-" 'NR == 1 { n = NF; next }
        $NF ~ "^" p { for (i = 2; i <= n + 1; i++) s += $i } END { print s + 0 }' /proc/interrupts
}

if [ "$net" != off ]; then
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -e /sys/class/net/eth0 ]; then
        ip link set lo up
        ip link set eth0 up
        # Link-local address; the traffic never leaves QEMU: the controller's
        # netdev is a UDP socket on 127.0.0.1 that sends every frame back.
        ip addr add 169.254.77.1/16 dev eth0
        # Light, continuous traffic: broadcast ARP requests for an absent
        # neighbour (~2 frames/s out, each looped back in) so virtio-net
        # raises TX and RX interrupts all the time.
        for n in 2 3; do
            ( while :; do arping -q -b -c 60 -I eth0 169.254.77.$n; done ) </dev/null >/dev/null 2>&1 &
        done
        echo "QMPCTL net iface=eth0 irqs=$(irqs)"
    else
        echo "QMPCTL net iface=eth0 irqs=-1"
    fi
fi

/bin/guestload "$@"
echo "QMPCTL guestload exit rc=$?"
sync
poweroff -f
