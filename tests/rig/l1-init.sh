#!/bin/sh
# /init of the rig's L1 guest (busybox sh). Loads modules, mounts the host's
# root (9p, read-only) plus the shares listed by the host, chroots into it and
# runs /run/tidal-rig/run.sh (written by tests/rig/run). Writes the exit status
# to the control share and powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

say() { echo "tidal-rig-l1: $*"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
die() {
        say "FATAL: $1"
        [ -d /rigctl/. ] && echo "${2:-125}" >/rigctl/status && echo "$1" >/rigctl/error
        sync
        poweroff -f
}

# MODULE.PARAM=VALUE on the kernel command line goes to that module, as modprobe would do
# (e.g. TIDAL_RIG_APPEND="... kvm.tdp_mmu=0").
modparams() {
        name=$(basename "$1" .ko | tr - _)
        # shellcheck disable=SC2013 # words, not lines
        for arg in $(cat /proc/cmdline); do
                case $arg in "$name".*=*) echo "${arg#"$name".}" ;; esac
        done
}

while read -r mod; do
        [ -n "$mod" ] || continue
        # shellcheck disable=SC2046
        insmod "$mod" $(modparams "$mod") 2>/tmp/insmod.err ||
                grep -q 'File exists' /tmp/insmod.err ||
                say "insmod $mod failed: $(cat /tmp/insmod.err)"
done </etc/tidal-modules

mkdir -p /rigctl /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none rigctl /rigctl ||
        die "cannot mount the control share (9p tag rigctl)"
# shellcheck disable=SC1091
[ -f /rigctl/rig.conf ] && . /rigctl/rig.conf
P9="trans=virtio,version=9p2000.L,msize=${RIG_MSIZE:-512000}"
mount -t 9p -o "$P9,ro,cache=${RIG_ROOT_CACHE:-loose}" hostroot /newroot ||
        die "cannot mount the host root (9p tag hostroot)"

R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=755 tmpfs $R/run
[ -d $R/sys/fs/cgroup ] && mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
mkdir -p $R/run/tidal-rig
mount --bind /rigctl $R/run/tidal-rig
ip link set lo up 2>/dev/null

# Writable shares, one "TAG PATH" per line, mounted at the same path as on the host.
if [ -f /rigctl/shares ]; then
        while read -r tag path; do
                [ -n "$tag" ] || continue
                mkdir -p "$R$path" 2>/dev/null
                mount -t 9p -o "$P9,cache=${RIG_SHARE_CACHE:-mmap}" "$tag" "$R$path" ||
                        die "cannot mount share $tag at $path"
        done </rigctl/shares
fi

[ -c /dev/kvm ] || die "/dev/kvm missing in L1 (kvm_amd did not load: is the CPU EPYC,+svm,+npt?)" 126
# L1 is a host set up as docs/tidal.md recommends: huge pages for shmem mappings that ask for
# them (tidal's memfd guest RAM does; QEMU's anonymous RAM gets them from "enabled").
echo advise >/sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null || true
say "command starting at uptime $(uptime_s)s"
uptime_s >/rigctl/l1-start
# A heartbeat for the host (tests/rig/run): tells a frozen L1 from a slow command.
(while :; do uptime_s >/rigctl/heartbeat; sleep 10; done) &
heartbeat=$!
chroot $R /bin/sh /run/tidal-rig/run.sh
rc=$?
kill "$heartbeat" 2>/dev/null
say "command exited with status $rc at uptime $(uptime_s)s"
echo "$rc" >/rigctl/status.tmp && mv /rigctl/status.tmp /rigctl/status
sync
if [ -f /rigctl/shares ]; then
        while read -r tag path; do
                [ -n "$tag" ] && umount -l "$R$path" 2>/dev/null
        done </rigctl/shares
fi
umount /rigctl 2>/dev/null
poweroff -f
