#!/bin/sh
# /init of a qmpctl lab: a KVM host as a VM (see qmpctl/lab/). It mounts the
# kernel file systems, loads nothing it does not need, runs the job the host
# packed into /lab (job.sh, written by `qmpctl lab`), streams the job's output
# on the console, sends back what the job wrote (a tar of the paths listed in
# /lab/collect, newer than the job's start) on the virtio-serial port
# "qmpctl.results", and powers off. The job's exit code is the last line:
#   qmpctl-lab: exit N
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run
chmod 1777 /tmp  # the root file system is RAM already: /tmp keeps what the job packed there
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs run /run
[ -d /sys/kernel/tracing ] && mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
hostname qmpctl-lab
ip link set lo up 2>/dev/null
# x86: KVM is a module there (kvm_amd on TCG's SVM with nested paging).
[ -e /dev/kvm ] || modprobe kvm_amd 2>/dev/null || modprobe kvm_intel 2>/dev/null
echo "qmpctl-lab: booted in $(cut -d' ' -f1 /proc/uptime) s"

say_exit() { echo "qmpctl-lab: exit $1"; sync; busybox poweroff -f; sleep 10; }

[ -x /lab/job.sh ] || { echo "qmpctl-lab: no job in /lab (was the job archive appended?)"; say_exit 125; }
touch /lab/.start
sleep 0.01
if [ -e /lab/interactive ]; then
    setsid -c /lab/job.sh </dev/console >/dev/console 2>&1
    rc=$?
else
    /lab/job.sh </dev/null
    rc=$?
fi
port=
for n in /sys/class/virtio-ports/*/name; do
    [ "$(cat "$n" 2>/dev/null)" = qmpctl.results ] && port=/dev/$(basename "$(dirname "$n")")
done
if [ -n "$port" ] && [ -s /lab/collect ]; then
    list=/tmp/.qmpctl-lab-results
    echo /lab/.start > "$list"
    while IFS= read -r path; do
        [ -e "$path" ] && find "$path" \( -type f -o -type l \) -newer /lab/.start -print
    done < /lab/collect >> "$list"
    tar -cf "$port" --no-recursion -P -T "$list" 2>/dev/null \
        || echo "qmpctl-lab: sending the results back failed"
fi
say_exit "$rc"
