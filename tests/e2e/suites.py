"""The end-to-end test cases, grouped in suites (one rig boot per suite)."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

from guest import Guest, GuestError

GUEST_CMDLINE = os.environ.get("TIDAL_E2E_CMDLINE", "console=ttyS0 quiet")


class Context:
    def __init__(self, tidal, kernel, initrd, log_dir, in_rig):
        self.tidal = tidal
        self.kernel = kernel
        self.initrd = initrd
        self.log_dir = log_dir
        self.in_rig = in_rig

    def log(self, name):
        return os.path.join(self.log_dir, name + ".log")

    def tidal_argv(self, memory="256M", cpus=1, extra=()):
        return [self.tidal, "run", "--kernel", self.kernel, "--initrd", self.initrd,
                "--cmdline", GUEST_CMDLINE, "--memory", memory, "--cpus", str(cpus)] + list(extra)

    def start(self, name, **kw):
        return Guest(self.tidal_argv(**kw), self.log(name))

    def tidalctl(self, sock, *args):
        tidalctl = os.path.join(os.path.dirname(os.path.dirname(self.tidal)), "memctl",
                                "tidalctl")
        p = subprocess.run([tidalctl, "--api-socket", sock] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError("tidalctl %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                               p.stderr.strip()))
        return p.stdout


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_guest_sees(g, ready, cpus, memory_mib):
    check(ready["cpus"] == cpus, "guest sees %d CPUs, expected %d" % (ready["cpus"], cpus))
    out = g.cmd("cpus")
    check(any(l.startswith("CPUS %d" % cpus) for l in out), "cpus command said %r" % out)
    memtotal_mib = ready["memtotal_kb"] / 1024
    # MemTotal is RAM minus what the kernel reserves for itself (its image, memmap, ...).
    check(memory_mib * 0.80 <= memtotal_mib <= memory_mib,
          "MemTotal %.0f MiB for a %d MiB guest" % (memtotal_mib, memory_mib))


def boot_one_cpu(ctx):
    with ctx.start("boot_one_cpu", memory="256M", cpus=1) as g:
        ready = g.wait_ready()
        check_guest_sees(g, ready, 1, 256)
        g.send("poweroff")
        rc = g.wait_exit()
        check(rc == 0, "tidal exited %s after guest poweroff" % rc)
        check("guest powered off" in g.stderr(), "no poweroff message: %r" % g.stderr())


def boot_two_cpus(ctx):
    with ctx.start("boot_two_cpus", memory="512M", cpus=2) as g:
        ready = g.wait_ready()
        check_guest_sees(g, ready, 2, 512)
        # The UART's IRQ 4 goes through the IOAPIC described in the MADT.
        irqs = g.cmd("exec cat /proc/interrupts")
        check(any("IO-APIC" in l and "ttyS0" in l for l in irqs),
              "ttyS0 is not on an IO-APIC interrupt: %r" % irqs)
        g.send("poweroff")
        check(g.wait_exit() == 0, "tidal did not exit 0 after poweroff")


def virtio_rng(ctx):
    with ctx.start("virtio_rng", memory="256M") as g:
        g.wait_ready()
        pci = g.cmd("lspci")
        check(any("1af4:1044" in l and "virtio-pci" in l for l in pci),
              "no virtio-rng (1af4:1044) bound to virtio-pci in %r" % pci)
        out = g.cmd("rng 64")
        src = [l for l in out if l.startswith("RNG-SOURCE")]
        check(src and "virtio_rng" in src[0], "hw_random source is %r" % src)
        data = [l.split()[1] for l in out if l.startswith("RNG ")]
        check(data and len(data[0]) == 128, "expected 64 random bytes, got %r" % data)
        check(len(set(data[0])) > 4, "bytes do not look random: %s" % data[0])
        irqs = g.cmd("exec cat /proc/interrupts")
        check(any("PCI-MSI" in l and "virtio0" in l for l in irqs),
              "virtio-rng does not use MSI-X: %r" % irqs)
        out2 = g.cmd("rng 64")
        data2 = [l.split()[1] for l in out2 if l.startswith("RNG ")]
        check(data2 != data, "two reads returned the same bytes")
        g.send("poweroff")
        check(g.wait_exit() == 0, "tidal did not exit 0")


def reboot_same_process(ctx):
    with ctx.start("reboot_same_process", memory="256M", cpus=2) as g:
        first = g.wait_ready()
        pid = g.proc.pid
        g.send("reboot")
        second = g.wait_ready()
        check(g.proc.poll() is None and g.proc.pid == pid, "tidal process did not survive reboot")
        check(second["cpus"] == 2, "after reboot the guest sees %d CPUs" % second["cpus"])
        check("rebooted" in g.stderr(), "reboot not logged: %r" % g.stderr())
        g.send("poweroff")
        check(g.wait_exit() == 0, "tidal did not exit 0 after poweroff following a reboot")
        check(first["memtotal_kb"] == second["memtotal_kb"], "memory changed across reboot")


def large_memory_split(ctx):
    """RAM above the 3 GiB PCI hole is mapped from 4 GiB on and seen by the guest."""
    with ctx.start("large_memory_split", memory="3584M", cpus=1) as g:
        ready = g.wait_ready(timeout=360)
        check_guest_sees(g, ready, 1, 3584)
        g.send("poweroff")
        check(g.wait_exit() == 0, "tidal did not exit 0")


def sigterm_stops(ctx):
    with ctx.start("sigterm_stops", memory="256M") as g:
        g.wait_ready()
        g.proc.send_signal(signal.SIGTERM)
        rc = g.wait_exit()
        check(rc == 0, "tidal exited %s on SIGTERM" % rc)
        check("signal 15" in g.stderr(), "no orderly-stop message: %r" % g.stderr())


def run_tidal(ctx, name, argv, timeout=60):
    with open(ctx.log(name), "ab") as log:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        log.write(p.stdout + p.stderr)
    return p.returncode, p.stderr.decode(errors="replace")


def bad_inputs_exit_2(ctx):
    """Bad kernel, initrd, sizes and options: exit 2 with a clear message, nothing left behind."""
    cases = [
        (["--kernel", "/nonexistent/vmlinuz"], "cannot read kernel '/nonexistent/vmlinuz'"),
        (["--kernel", ctx.initrd], "not a Linux bzImage"),
        (["--initrd", "/nonexistent/initrd"], "cannot read initrd"),
        (["--memory", "12T"], "--memory"),
        (["--memory", "16M"], "below the minimum"),
        (["--cpus", "0"], "--cpus"),
        (["--bogus"], "unknown option '--bogus'"),
    ]
    before = set(os.listdir("/tmp"))
    for extra, needle in cases:
        argv = ctx.tidal_argv() + extra
        rc, err = run_tidal(ctx, "bad_inputs_exit_2", argv)
        check(rc == 2, "%r: exit %s, expected 2 (%s)" % (extra, rc, err.strip()))
        check(needle in err, "%r: message %r lacks %r" % (extra, err.strip(), needle))
        check(len(err.strip().splitlines()) == 1, "%r: expected one line, got %r" % (extra, err))
    check(set(os.listdir("/tmp")) == before, "files were left in /tmp")
    rc, out = run_tidal(ctx, "bad_inputs_exit_2", [ctx.tidal, "--version"])
    check(rc == 0, "--version failed")


def tiny_memory_for_kernel(ctx):
    """64 MiB passes the option check but cannot hold Debian's kernel and initrd: exit 2."""
    rc, err = run_tidal(ctx, "tiny_memory_for_kernel", ctx.tidal_argv(memory="64M"))
    check(rc == 2, "exit %s, expected 2 (%s)" % (rc, err.strip()))
    check("too small" in err, "message %r does not say memory is too small" % err)


def no_kvm_message(ctx):
    """On a host without /dev/kvm, tidal says so once and points at the rig."""
    if os.path.exists("/dev/kvm"):
        return
    rc, err = run_tidal(ctx, "no_kvm_message", ctx.tidal_argv())
    check(rc == 1, "exit %s without /dev/kvm" % rc)
    check("/dev/kvm does not exist" in err and "tests/rig/run" in err,
          "unclear message: %r" % err)
    check(len(err.strip().splitlines()) == 1, "expected one line, got %r" % err)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_until(what, fn, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.5)


def balloon_inflate_deflate(ctx):
    """Smoke test of virtio-balloon and the control socket (issue 3 covers the rest): inflating
    takes memory from the guest and gives it back to the host; deflating returns it."""
    # Not in the log directory: in the rig that is 9p, where Unix sockets cannot be bound.
    sock = os.path.join(tempfile.mkdtemp(prefix="tidal-e2e-"), "balloon.sock")
    with ctx.start("balloon_inflate_deflate", memory="512M",
                   extra=["--api-socket", sock, "--balloon", "deflate-on-oom=off"]) as g:
        g.wait_ready()
        before = g.meminfo()["MemTotal"]
        g.cmd("alloc 400", timeout=300)
        g.cmd("free all")
        rss_touched = rss_kib(g.proc.pid)
        ctx.tidalctl(sock, "balloon", "384M")

        def inflated():
            info = json.loads(ctx.tidalctl(sock, "info", "--json"))
            return info["info"]["balloon"]["actual_bytes"] == 384 << 20

        wait_until("the balloon to reach 384 MiB", inflated, 240)
        after = g.meminfo()["MemTotal"]
        check(abs((before - after) - 384 * 1024) < 8 * 1024,
              "MemTotal went from %d to %d kB, expected a 384 MiB drop" % (before, after))
        rss_inflated = rss_kib(g.proc.pid)
        check(rss_touched - rss_inflated >= 300 * 1024,
              "tidal RSS went from %d to %d kB, expected >= 300 MiB less" %
              (rss_touched, rss_inflated))
        ctx.tidalctl(sock, "balloon", "0")

        def deflated():
            info = json.loads(ctx.tidalctl(sock, "info", "--json"))
            return info["info"]["balloon"]["actual_bytes"] == 0

        wait_until("the balloon to deflate", deflated, 240)
        check(abs(g.meminfo()["MemTotal"] - before) < 1024, "MemTotal not restored")
        g.send("poweroff")
        check(g.wait_exit() == 0, "tidal did not exit 0")
        check(not os.path.exists(sock), "control socket left behind")


ALL = {f.__name__: f for f in [
    balloon_inflate_deflate,
    boot_one_cpu, boot_two_cpus, virtio_rng, reboot_same_process, large_memory_split,
    sigterm_stops, bad_inputs_exit_2, tiny_memory_for_kernel, no_kvm_message,
]}

SUITES = {
    "boot": ["boot_one_cpu", "boot_two_cpus", "virtio_rng", "reboot_same_process",
             "sigterm_stops", "large_memory_split"],
    "balloon": ["balloon_inflate_deflate"],
}

# Run on the host before entering the rig (they need no KVM).
HOST_SUITES = {
    "boot": ["bad_inputs_exit_2", "tiny_memory_for_kernel", "no_kvm_message"],
}
