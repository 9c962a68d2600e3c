#!/usr/bin/env bash
# build-initramfs.sh OUT.cpio.gz [CACHE_DIR] - build the tidal test guest initramfs.
#
# Contents: /init (static, from guest/init.c), /bin/hostile-virtio (a broken virtio driver,
# from guest/hostile-virtio.c, for the hostile-guest tests), /bin/busybox + applet symlinks,
# the virtio modules (with dependencies) and /etc/tidal-modules in load order.
# Rebuilds only when an input changed (OUT.stamp holds the input hash).
set -euo pipefail
export IFS_PROG=build-initramfs
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest/initramfs-lib.sh
. "$HERE/initramfs-lib.sh"

MODULES=(virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
        virtio-rng virtio_balloon virtio_mem)

[[ $# -ge 1 && $# -le 2 ]] || ifs_die "usage: $0 OUT.cpio.gz [CACHE_DIR]"
OUT=$1
mkdir -p "$(dirname "$OUT")"
ifs_kernel "${2:-${TIDAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidal}}"
BB=$(ifs_busybox)
CC=${CC:-gcc}

stamp="$(ifs_stamp "$HERE/init.c" "$HERE/hostile-virtio.c" "$HERE/build-initramfs.sh" "$HERE/initramfs-lib.sh" \
        "$BB" "$CACHE/kernel/version") ${MODULES[*]} $CC"
ifs_exit_if_current "$OUT" "$stamp"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{dev,proc,sys,tmp,etc,root}
$CC -static -O2 -Wall -Wextra -Werror -o "$root/init" "$HERE/init.c" ||
        ifs_die "compiling init.c failed (need gcc and libc6-dev for static linking)"
mkdir -p "$root/bin"
$CC -static -O2 -Wall -Wextra -Werror -o "$root/bin/hostile-virtio" "$HERE/hostile-virtio.c" ||
        ifs_die "compiling hostile-virtio.c failed"
strip "$root/init" "$root/bin/hostile-virtio" 2>/dev/null || true
ifs_add_busybox "$root" "$BB"
ifs_add_modules "$root" "$KMODDIR" "${MODULES[@]}"
echo "$KVER" >"$root/etc/tidal-kernel-version"
ifs_pack "$root" "$OUT"
echo "$stamp" >"$OUT.stamp"
echo "build-initramfs: wrote $OUT ($(du -h "$OUT" | cut -f1))" >&2
echo "$OUT"
