#!/usr/bin/env bash
# fetch-kernel.sh [CACHE_DIR] - fetch and unpack Debian's stock kernel for tidal tests.
#
# Resolves the linux-image-6.1.0-*-amd64 package that linux-image-amd64 depends
# on, downloads it with apt-get, unpacks it and runs depmod. Leaves:
#   $CACHE/kernel/vmlinuz           -> the bzImage
#   $CACHE/kernel/modules/<ver>/... -> modules with modules.dep
#   $CACHE/kernel/version           -> <ver>
# Prints the cache directory. A no-op when already done.
set -euo pipefail

die() {
        echo "fetch-kernel: error: $*" >&2
        exit 1
}

# extract_vmlinux BZIMAGE OUT: decompress the xz/gzip payload of a bzImage.
extract_vmlinux() {
        command -v python3 >/dev/null || return 1
        python3 - "$1" "$2" <<'PY'
import lzma, sys, zlib
data = open(sys.argv[1], "rb").read()
for magic, dec in ((b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor()),
                   (b"\x1f\x8b\x08", lambda: zlib.decompressobj(31))):
    off = data.find(magic)
    while off >= 0:
        try:
            out = dec().decompress(data[off:])
        except (lzma.LZMAError, zlib.error):
            out = b""
        if out[:4] == b"\x7fELF":
            open(sys.argv[2], "wb").write(out)
            sys.exit(0)
        off = data.find(magic, off + 1)
sys.exit(1)
PY
}

CACHE=${1:-${TIDAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidal}}
mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
CACHE=$(cd "$CACHE" && pwd)
KDIR=$CACHE/kernel

# Fast path: a completed unpack is marked by the version file.
if [[ -s $KDIR/version && -e $KDIR/vmlinuz ]]; then
        ver=$(<"$KDIR/version")
        if [[ -f $KDIR/modules/$ver/modules.dep && -z ${TIDAL_KERNEL_REFRESH:-} ]]; then
                echo "$CACHE"
                exit 0
        fi
fi

for tool in apt-cache apt-get dpkg depmod; do
        command -v "$tool" >/dev/null || die "'$tool' not found (need a Debian-like host)"
done

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)
[[ -n $pkg ]] || die "cannot resolve the kernel package from 'apt-cache depends linux-image-amd64' (run apt-get update?)"
ver=${pkg#linux-image-}

dl=$CACHE/deb
mkdir -p "$dl"
deb=$(find "$dl" -maxdepth 1 -name "${pkg}_*_amd64.deb" | head -n1)
if [[ -z $deb ]]; then
        echo "fetch-kernel: downloading $pkg" >&2
        if ! (cd "$dl" && apt-get download "$pkg" >&2); then
                die "apt-get download $pkg failed (network/apt sources unavailable?)"
        fi
        deb=$(find "$dl" -maxdepth 1 -name "${pkg}_*_amd64.deb" | head -n1)
        [[ -n $deb ]] || die "apt-get download $pkg produced no .deb in $dl"
fi

echo "fetch-kernel: unpacking $(basename "$deb")" >&2
tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg -x "$deb" "$tmp/root" || die "dpkg -x $deb failed"
[[ -f $tmp/root/boot/vmlinuz-$ver ]] || die "package has no /boot/vmlinuz-$ver"
[[ -d $tmp/root/lib/modules/$ver ]] || die "package has no /lib/modules/$ver"

mkdir -p "$tmp/kernel/modules"
mv "$tmp/root/boot/vmlinuz-$ver" "$tmp/kernel/vmlinuz-$ver"
cp "$tmp/root/boot/config-$ver" "$tmp/kernel/config-$ver" 2>/dev/null || true
mv "$tmp/root/lib/modules/$ver" "$tmp/kernel/modules/$ver"
# depmod -b wants BASE/lib/modules/VER; point it there via a symlink.
mkdir -p "$tmp/dm/lib/modules"
ln -s "$tmp/kernel/modules/$ver" "$tmp/dm/lib/modules/$ver"
depmod -b "$tmp/dm" "$ver" || die "depmod failed"
[[ -s $tmp/kernel/modules/$ver/modules.dep ]] || die "depmod produced no modules.dep"
ln -s "vmlinuz-$ver" "$tmp/kernel/vmlinuz"
# An uncompressed vmlinux with a PVH entry boots ~5 s faster under TCG (no
# in-guest xz decompression). Optional: the rig falls back to vmlinuz.
if grep -qx 'CONFIG_PVH=y' "$tmp/kernel/config-$ver" 2>/dev/null &&
        extract_vmlinux "$tmp/kernel/vmlinuz-$ver" "$tmp/kernel/vmlinux-$ver"; then
        ln -s "vmlinux-$ver" "$tmp/kernel/vmlinux"
else
        echo "fetch-kernel: warning: no PVH vmlinux extracted (slower TCG boots)" >&2
fi
echo "$ver" >"$tmp/kernel/version"

rm -rf "$KDIR.old"
[[ -e $KDIR ]] && mv "$KDIR" "$KDIR.old"
mv "$tmp/kernel" "$KDIR"
rm -rf "$KDIR.old"
echo "fetch-kernel: kernel $ver ready in $KDIR" >&2
echo "$CACHE"
