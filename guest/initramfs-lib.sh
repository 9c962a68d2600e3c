# shellcheck shell=bash
# Helpers shared by guest/build-initramfs.sh and tests/rig/build-l1-initramfs.sh.
# Source it; it defines functions only.

ifs_die() {
        echo "${IFS_PROG:-initramfs}: error: $*" >&2
        exit 1
}

# ifs_kernel CACHE -> sets KVER, KMODDIR (fetching the kernel if needed).
ifs_kernel() {
        local here
        here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
        CACHE=$("$here/../scripts/fetch-kernel.sh" "$1") || ifs_die "fetch-kernel.sh failed"
        KVER=$(<"$CACHE/kernel/version")
        KMODDIR=$CACHE/kernel/modules/$KVER
        [[ -s $KMODDIR/modules.dep ]] || ifs_die "no modules.dep in $KMODDIR"
}

# ifs_busybox -> prints the path of a static busybox.
ifs_busybox() {
        local bb=${BUSYBOX:-/bin/busybox}
        [[ -x $bb ]] || ifs_die "busybox not found at $bb (apt-get install busybox-static)"
        if LC_ALL=C ldd "$bb" 2>&1 | grep -q '=>'; then
                ifs_die "$bb is dynamically linked (apt-get install busybox-static)"
        fi
        echo "$bb"
}

# ifs_resolve_modules KMODDIR NAME... -> module paths (relative to KMODDIR),
# dependencies first, each once. Names may use '-' or '_'; modules built into
# the kernel (modules.builtin) are skipped.
ifs_resolve_modules() {
        local moddir=$1
        shift
        awk -v want="$*" '
        function norm(p) { sub(/.*\//, "", p); sub(/\.ko(\.[a-z]+)?$/, "", p); gsub(/-/, "_", p); return p }
        function visit(p,   i, n, d) {
                if (p in done) return
                if (p in busy) { print "dependency cycle at " p > "/dev/stderr"; exit 1 }
                busy[p] = 1
                n = split(deps[p], d, " ")
                for (i = n; i >= 1; i--) visit(d[i])
                done[p] = 1
                print p
        }
        FILENAME ~ /modules\.builtin$/ { builtin[norm($1)] = 1; next }
        {
                path = $1; sub(/:$/, "", path)
                deps[path] = ""
                for (i = 2; i <= NF; i++) deps[path] = deps[path] " " $i
                byname[norm(path)] = path
        }
        END {
                n = split(want, w, " ")
                for (i = 1; i <= n; i++) {
                        m = w[i]; gsub(/-/, "_", m)
                        if (!(m in byname) && (m in builtin)) continue
                        if (!(m in byname)) { print "module not found: " w[i] > "/dev/stderr"; bad = 1; continue }
                        visit(byname[m])
                }
                exit bad
        }' "$moddir/modules.builtin" "$moddir/modules.dep"
}

# ifs_add_modules ROOT KMODDIR NAME... -> copies modules flat into ROOT/lib/modules
# and writes ROOT/etc/tidal-modules (absolute paths, load order).
ifs_add_modules() {
        local root=$1 moddir=$2 list rel
        shift 2
        list=$(ifs_resolve_modules "$moddir" "$@") || ifs_die "cannot resolve modules: $*"
        mkdir -p "$root/lib/modules" "$root/etc"
        : >"$root/etc/tidal-modules"
        for rel in $list; do
                cp "$moddir/$rel" "$root/lib/modules/"
                echo "/lib/modules/${rel##*/}" >>"$root/etc/tidal-modules"
        done
}

# ifs_add_busybox ROOT BUSYBOX -> /bin/busybox plus applet symlinks.
ifs_add_busybox() {
        local root=$1 bb=$2 applet
        mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
        cp "$bb" "$root/bin/busybox"
        while read -r applet; do
                [[ -n $applet && $applet != bin/busybox ]] || continue
                [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
        done < <("$bb" --list-full)
}

# ifs_pack ROOT OUT -> gzip-compressed newc cpio, written atomically.
ifs_pack() {
        local root=$1 out=$2
        (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
                cpio --quiet -o -H newc -R 0:0 | gzip -6 -n) >"$out.tmp.$$" ||
                ifs_die "cpio/gzip failed"
        mv "$out.tmp.$$" "$out" # atomic: concurrent users keep the old file
}

# ifs_stamp FILE... -> a hash of the inputs, for staleness checks.
ifs_stamp() {
        local f
        for f in "$@"; do
                if [[ -f $f ]]; then
                        echo "$f $(sha256sum <"$f")"
                else
                        echo "$f $f"
                fi
        done | sha256sum | cut -d' ' -f1
}

# Prints OUT and ends the calling script when OUT was already built from exactly STAMP.
ifs_exit_if_current() {
        local out=$1 stamp=$2
        if [[ -f $out && -f $out.stamp && $(<"$out.stamp") == "$stamp" ]]; then
                echo "$out"
                exit 0
        fi
}
