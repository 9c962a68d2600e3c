"""Shared pieces of tidal's benchmarks: the guest, the peers' command lines, RSS accounting,
and running inside the nested rig where /dev/kvm is missing."""
import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))

from guest import Guest, kvm_usable, prepare_guest, run_in_rig  # noqa: E402,F401

CMDLINE = "console=ttyS0 quiet"


def in_rig_or_direct(argv_inside, build_dir, log, timeout=3600, mem=4096):
    """Returns None when KVM is usable here; otherwise runs argv_inside in the rig."""
    if kvm_usable():
        return None
    print("no usable /dev/kvm here: benchmarking inside the nested rig", file=sys.stderr)
    rc = run_in_rig(argv_inside, build_dir, log, timeout, mem)
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("BENCH"):
                print(line[len("BENCH "):].rstrip())
    return rc


def add_rig_args(ap):
    """The options main_here_or_in_rig() passes to the copy of a benchmark run in the rig."""
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kernel", help=argparse.SUPPRESS)
    ap.add_argument("--initrd", help=argparse.SUPPRESS)


def main_here_or_in_rig(script, args, run, log_name):
    """A benchmark's main: prepares the guest, then calls run(args, kernel, initrd) here when
    KVM is usable, else runs the script again inside the rig with the same options (and
    --inside), its log in the build directory as log_name. Returns the exit status."""
    if not args.inside:
        kernel, initrd = prepare_guest(args.build_dir, args.tidal)
        argv = [sys.executable, os.path.abspath(script)] + sys.argv[1:] + [
            "--inside", "--tidal", args.tidal, "--build-dir", args.build_dir,
            "--kernel", kernel, "--initrd", initrd]
        rc = in_rig_or_direct(argv, args.build_dir, os.path.join(args.build_dir, log_name))
        if rc is not None:
            return rc
        args.kernel, args.initrd = kernel, initrd
    return run(args, args.kernel, args.initrd) or 0


def tidal_argv(tidal, kernel, initrd, mem_mib, cpus, extra=()):
    return [tidal, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", CMDLINE,
            "--memory", "%dM" % mem_mib, "--cpus", str(cpus)] + list(extra)


def qemu_argv(machine, kernel, initrd, mem_mib, cpus, devices=()):
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-M", machine, "-cpu", "host",
            "-m", str(mem_mib), "-smp", str(cpus), "-display", "none", "-nodefaults",
            "-no-user-config", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd,
            "-append", CMDLINE]
    for d in devices:
        argv += ["-device", d]
    return argv


def rss_split_kib(pid, guest_mib):
    """(total RSS, RSS of the guest-RAM mappings) in KiB, from /proc/PID/smaps.

    Guest RAM is whatever mapping is at least 90% of the guest's size: tidal's memfd, QEMU's
    pc.ram. The rest is the VMM's own overhead."""
    total = guest = 0
    size = rss = 0
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                total += rss
                if size >= guest_mib * 1024 * 9 // 10:
                    guest += rss
    return total, guest


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def emit(line):
    """A result line: printed, and marked so the host side can pick it out of the rig log."""
    print("BENCH " + line, flush=True)
