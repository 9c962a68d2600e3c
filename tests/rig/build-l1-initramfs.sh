#!/usr/bin/env bash
# build-l1-initramfs.sh OUT [CACHE_DIR] - build the rig's L1 initramfs.
#
# Contents: busybox (static) + applets, the kvm / kvm-amd / virtio-pci / 9p
# modules with their dependencies (load order in /etc/tidal-modules) and
# tests/rig/l1-init.sh as /init. Extra modules: TIDAL_L1_EXTRA_MODULES="a b".
# Rebuilds only when an input changed (OUT.stamp holds the input hash).
set -euo pipefail
export IFS_PROG=build-l1-initramfs
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest/initramfs-lib.sh
. "$HERE/../../guest/initramfs-lib.sh"

# shellcheck disable=SC2206
MODULES=(irqbypass ccp kvm kvm-amd virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
        virtio_ring virtio 9pnet 9pnet_virtio netfs 9p ${TIDAL_L1_EXTRA_MODULES:-})

[[ $# -ge 1 && $# -le 2 ]] || ifs_die "usage: $0 OUT [CACHE_DIR]"
OUT=$1
mkdir -p "$(dirname "$OUT")"
ifs_kernel "${2:-${TIDAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidal}}"
BB=$(ifs_busybox)

stamp="$(ifs_stamp "$HERE/l1-init.sh" "$HERE/build-l1-initramfs.sh" \
        "$HERE/../../guest/initramfs-lib.sh" "$BB" "$CACHE/kernel/version") ${MODULES[*]}"
ifs_exit_if_current "$OUT" "$stamp"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{dev,proc,sys,tmp,etc,newroot,rigctl}
install -m 0755 "$HERE/l1-init.sh" "$root/init"
ifs_add_busybox "$root" "$BB"
ifs_add_modules "$root" "$KMODDIR" "${MODULES[@]}"
echo "$KVER" >"$root/etc/tidal-kernel-version"
ifs_pack "$root" "$OUT"
echo "$stamp" >"$OUT.stamp"
echo "build-l1-initramfs: wrote $OUT ($(du -h "$OUT" | cut -f1))" >&2
echo "$OUT"
