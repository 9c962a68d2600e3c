#!/usr/bin/env python3
"""Boot-to-init time and VMM memory overhead: tidal vs QEMU -M pc and -M microvm.

Boot-to-init: from process start to the guest's TIDAL-GUEST-READY line (the test guest's
/init prints it after loading its modules). Overhead: the VMM process's RSS minus the RSS of
its guest-RAM mapping, read from /proc/PID/smaps once the guest is ready.

Runs directly where /dev/kvm exists, else inside the nested rig (all VMMs in the same L1, so
only the ratios mean anything). Usage: bench/boot.py --tidal build/src/vmm/tidal --build-dir build
"""
import argparse
import os
import sys
import time

from common import (Guest, add_rig_args, emit, main_here_or_in_rig, median, qemu_argv,
                    rss_split_kib, tidal_argv)


def measure(name, argv, mem_mib, log):
    with Guest(argv, log) as g:
        ready = g.wait_ready(timeout=300)
        total, guest = rss_split_kib(g.proc.pid, mem_mib)
        g.send("poweroff")
        try:
            g.wait_exit(30)
        except AssertionError:
            pass  # the number is taken; a slow exit does not matter here
    return ready["seconds"], (total - guest) / 1024.0


def run(args, kernel, initrd):
    vmms = [
        ("tidal", tidal_argv(args.tidal, kernel, initrd, args.memory, args.cpus)),
        ("tidal, cache off", tidal_argv(args.tidal, kernel, initrd, args.memory, args.cpus,
                                        ["--kernel-cache", "off"])),
        ("qemu -M pc", qemu_argv("pc", kernel, initrd, args.memory, args.cpus,
                                 ["virtio-rng-pci"])),
        ("qemu -M microvm", qemu_argv("microvm", kernel, initrd, args.memory, args.cpus)),
    ]
    log = os.path.join(args.build_dir, "bench-boot.log")
    results = {}
    for i in range(args.runs):
        for name, argv in vmms:  # interleaved, so drift in the rig hits all alike
            t, overhead = measure(name, argv, args.memory, log)
            results.setdefault(name, []).append((t, overhead))
            print("run %d %-16s boot-to-init %.2f s  overhead %.1f MiB" % (i + 1, name, t,
                                                                            overhead), flush=True)
    base = median([t for t, _ in results["qemu -M pc"]])
    emit("boot-to-init and VMM overhead, %d MiB, %d vCPU, median of %d runs" %
         (args.memory, args.cpus, args.runs))
    emit("| VMM | boot-to-init (s) | ratio to qemu -M pc | VMM overhead (MiB) |")
    emit("|---|---|---|---|")
    for name, _ in vmms:
        t = median([x for x, _ in results[name]])
        o = median([y for _, y in results[name]])
        emit("| %s | %.2f | %.2f | %.1f |" % (name, t, t / base, o))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tidal", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory", type=int, default=512, help="MiB")
    ap.add_argument("--cpus", type=int, default=1)
    add_rig_args(ap)
    args = ap.parse_args()
    args.tidal = os.path.abspath(args.tidal)
    args.build_dir = os.path.abspath(args.build_dir)

    return main_here_or_in_rig(__file__, args, run, "bench-boot-rig.log")

if __name__ == "__main__":
    sys.exit(main())
