#!/usr/bin/env bash
# Builds the virtio-balloon libFuzzer target with clang (ASan + UBSan) and runs it for a bounded
# time. Any crash, sanitizer report or leak fails the test; the crashing input is kept in
# OUT_DIR for replay (./fuzz-balloon CRASH_FILE).
# Usage: run-balloon-fuzz.sh SOURCE_DIR OUT_DIR SECONDS
set -euo pipefail
src=$1 out=$2 seconds=$3

command -v clang >/dev/null || { echo "clang not found (scripts/install-deps.sh installs it)"; exit 1; }
mkdir -p "$out/corpus"
clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -I"$src/include" -I"$src/src" \
        "$src/src/virtio-balloon/fuzz/fuzz-balloon.c" \
        "$src"/src/virtio-balloon/{balloon,queues,discard,open-blocks,pfn-ranges,stats}.c \
        "$src"/src/vmm/virtio/{virtqueue,virtio-dev}.c \
        "$src"/src/vmm/kvm/{guest-mem,guest-mem-hotplug}.c \
        "$src"/src/shared/{log,event-loop}.c -lpthread -o "$out/fuzz-balloon"
cd "$out"
exec ./fuzz-balloon -max_total_time="$seconds" -max_len=65600 -print_final_stats=1 corpus
