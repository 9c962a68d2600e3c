#!/usr/bin/env bash
# Builds the virtio-mem libFuzzer target with clang (ASan + UBSan) and runs it for a bounded
# time. Any crash (a write into an unplugged, PROT_NONE block included), sanitizer report, leak
# or broken invariant fails the test; the crashing input is kept in OUT_DIR for replay
# (./fuzz-virtio-mem CRASH_FILE).
# Usage: run-virtio-mem-fuzz.sh SOURCE_DIR OUT_DIR SECONDS
set -euo pipefail
src=$1 out=$2 seconds=$3

command -v clang >/dev/null || { echo "clang not found (scripts/install-deps.sh installs it)"; exit 1; }
mkdir -p "$out/corpus"
[ -e "$out/corpus/seed-plug-unplug" ] || python3 "$src/tests/fuzz/virtio-mem-seed.py" "$out/corpus/seed-plug-unplug"
clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -I"$src/include" -I"$src/src" \
        "$src/src/virtio-mem/fuzz/fuzz-virtio-mem.c" \
        "$src"/src/virtio-mem/{virtio-mem,requests}.c \
        "$src"/src/vmm/virtio/{virtqueue,virtio-dev}.c \
        "$src"/src/vmm/kvm/{guest-mem,guest-mem-hotplug}.c \
        "$src/src/shared/log.c" -lpthread -o "$out/fuzz-virtio-mem"
cd "$out"
exec ./fuzz-virtio-mem -max_total_time="$seconds" -max_len=65600 -print_final_stats=1 corpus
