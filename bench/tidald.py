#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""tidald at scale (issue 5's benchmark, docs/performance.md): the real daemon with N simulated
VMs (default 1,000) connected from this one process over its real socket.

    bench/tidald.py TIDALD [--tidalctl PATH] [--policy-bench PATH] [--vms N] [--samples K]

Measures
  - tidald's VmRSS and VmHWM (/proc/PID/status) with N VMs connected, admitted and reporting
    (target: under 20 MiB);
  - spike latency: a VM sends a report whose demand jumps well above its grant; the time until
    it reads its new "target" (time.perf_counter() on the client, so it includes this client's
    own send and receive), median and p99 over K samples (target: under 50 ms);
  - how long `tidalctl --json list` and `tidalctl metrics` take with N VMs (no target; they
    must work);
  - with --policy-bench, bench-policy-round's balancing round on 10,000 VMs (target: 10 ms).

Every VM has a startup and minimum of 32 MiB, the protocol's smallest, so N VMs need N x 32 MiB
of budget (31.25 GiB for 1,000). On a smaller host, when run as root, tidald is started in a
private mount namespace where a synthetic /proc/meminfo (--fake-memtotal, default 512G) is
bind-mounted over the real one; nothing else of the daemon's view changes. Standard library
only; nothing here is a test (no assertions on time).
"""
import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
GiB = 1 << 30
STARTUP = 32 * MiB
QUIET_DEMAND = 24 * MiB  # x 1.2 buffer = 28.8 MiB: below the minimum, so no target moves
SPIKE_DEMAND = 512 * MiB
DEADLINE = 60.0

TARGET_RSS_MIB = 20.0
TARGET_SPIKE_MS = 50.0
TARGET_ROUND_US = 10000.0


class Failure(Exception):
    pass


class VM:
    """One simulated VMM connection: registers, waits for "admitted", reports, reads targets."""

    def __init__(self, path, name):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.buf = b""
        self.state = "new"
        self.grant = 0
        self.targets = 0

    def send(self, obj):
        # Lines are short and the socket buffer is empty between messages: one send suffices.
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def register(self, startup=STARTUP, minimum=STARTUP, weight=5000):
        self.state = "waiting"
        self.send(dict(msg="register", name=self.name, uuid="", startup_bytes=startup,
                       minimum_bytes=minimum, maximum_bytes=max(4 * GiB, startup), buffer=20,
                       weight=weight, running=False))

    def report(self, demand):
        self.send(dict(msg="report", assigned_bytes=self.grant, demand_bytes=demand, fresh=True,
                       pressure=0, status="OK", balloon_bytes=0, vmem_plugged_bytes=0,
                       smart_paging=dict(active=False, file_bytes=0, pages_in=0, pages_out=0,
                                         active_ms=0)))

    def readable(self):
        """Reads what is there; returns the messages received."""
        msgs = []
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return msgs
        if not data:
            raise Failure("tidald hung up on %s (state %s)" % (self.name, self.state))
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            m = json.loads(line)
            msgs.append(m)
            if m["msg"] == "admitted":
                self.state, self.grant = "running", m["grant_bytes"]
            elif m["msg"] == "target":
                self.grant = m["target_bytes"]
                self.targets += 1
            elif m["msg"] in ("refused", "error"):
                raise Failure("%s: %s" % (self.name, m.get("error")))
        return msgs


def admin(path, request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            data = s.recv(1 << 20)
            if not data:
                break
            buf += data
        return json.loads(buf)


def proc_status(pid):
    values = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def meminfo_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise Failure("no MemTotal in /proc/meminfo")


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


class Daemon:
    def __init__(self, tidald, workdir, host_memory, fake_total):
        self.path = os.path.join(workdir, "tidald.sock")
        self.log_path = os.path.join(workdir, "tidald.log")
        cmd = [tidald, "--socket", self.path, "--host-memory", host_memory]
        if fake_total:
            kb = fake_total // 1024
            meminfo = os.path.join(workdir, "meminfo")
            with open(meminfo, "w") as f:
                f.write("MemTotal:       %d kB\nMemFree:        %d kB\nMemAvailable:   %d kB\n"
                        % (kb, kb - (1 << 20), kb - (1 << 20)))
            # unshare and sh exec: the pid stays tidald's.
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" /proc/meminfo && exec "$@"', meminfo] + cmd
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        end = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                raise Failure("tidald exited at start (%d); see %s" %
                              (self.proc.returncode, self.log_path))
            try:
                if admin(self.path, {"cmd": "list"})["ok"]:
                    break
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if time.monotonic() > end:
                raise Failure("tidald did not start listening")
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def pump(sel, timeout):
    """Reads every VM socket that is ready within timeout; returns (vm, messages) pairs."""
    got = []
    for key, _ in sel.select(timeout):
        vm = key.data
        got.append((vm, vm.readable()))
    return got


def wait_for(sel, cond, what):
    end = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > end:
            raise Failure("timed out waiting for " + what)
        pump(sel, 0.05)


def start_vms(d, sel, n):
    vms = []
    for i in range(n):
        vm = VM(d.path, "bench-%04d" % i)
        sel.register(vm.sock, selectors.EVENT_READ, vm)
        vms.append(vm)
        vm.register()
        if i % 64 == 63:
            pump(sel, 0)  # keep the admissions flowing while connecting
    wait_for(sel, lambda: all(vm.state == "running" for vm in vms), "%d admissions" % n)
    admitted = time.perf_counter()
    for vm in vms:
        vm.report(QUIET_DEMAND)
    # Let a balancing tick pass with every report in.
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        pump(sel, 0.05)
    return vms, admitted


def spike_latency(sel, vms, samples):
    """Each sample spikes a different VM, so every spike starts from the same state."""
    times = []
    for vm in vms[:samples]:
        pump(sel, 0)  # drain whatever the last round sent anyone
        before = vm.targets
        t0 = time.perf_counter()
        vm.report(SPIKE_DEMAND)
        end = time.monotonic() + DEADLINE
        while vm.targets == before:
            if time.monotonic() > end:
                raise Failure("no target after %s's spike" % vm.name)
            pump(sel, 1.0)
        times.append((time.perf_counter() - t0) * 1000.0)
        time.sleep(0.005)
    return times


def tidalctl_list(tidalctl, path, n, runs=5):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([tidalctl, "--socket", path, "--json", "list"], capture_output=True,
                             timeout=DEADLINE)
        times.append((time.perf_counter() - t0) * 1000.0)
        if out.returncode != 0:
            raise Failure("tidalctl list failed (%d): %s" % (out.returncode, out.stderr.decode()))
        reply = json.loads(out.stdout)
        if len(reply["vms"]) != n:
            raise Failure("tidalctl list shows %d VMs, not %d" % (len(reply["vms"]), n))
    return times, len(out.stdout)


def tidalctl_metrics(tidalctl, path, n, runs=5):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([tidalctl, "--socket", path, "metrics"], capture_output=True,
                             timeout=DEADLINE)
        times.append((time.perf_counter() - t0) * 1000.0)
        if out.returncode != 0:
            raise Failure("tidalctl metrics failed (%d): %s" %
                          (out.returncode, out.stderr.decode()))
        grants = out.stdout.count(b"tidal_vm_grant_bytes{")
        if grants != n:
            raise Failure("tidalctl metrics shows %d VMs, not %d" % (grants, n))
    return times, len(out.stdout)


def policy_round(path):
    out = subprocess.run([path], capture_output=True, text=True, timeout=600, check=True).stdout
    figures = {}
    for line in out.splitlines():
        key, _, rest = line.partition(":")
        if key in ("balance round median", "balance round p99"):
            figures[key] = float(rest.split()[0])
    return out, figures


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round((len(ordered) - 1) * p / 100.0)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tidald")
    ap.add_argument("--tidalctl")
    ap.add_argument("--policy-bench")
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--host-memory", default="256G")
    ap.add_argument("--fake-memtotal", default="512G",
                    help="MemTotal tidald sees when this host is too small (root only)")
    ap.add_argument("--no-fake-meminfo", action="store_true")
    args = ap.parse_args()
    if args.samples > args.vms:
        ap.error("--samples may not exceed --vms (each sample spikes another VM)")

    # One socket per VM, here and in the daemon (which inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.vms + 256)), hard))

    needed = args.vms * STARTUP + args.samples * SPIKE_DEMAND * 6 // 5
    fake = 0
    if not args.no_fake_meminfo and meminfo_total() * 95 // 100 - GiB < needed:
        if os.getuid() != 0 or not shutil.which("unshare"):
            raise Failure("this host's memory is too small for %d VMs of 32 MiB and the spikes; "
                          "run as root (synthetic /proc/meminfo) or with fewer --vms" % args.vms)
        fake = parse_size(args.fake_memtotal)

    rows = []  # (figure, value, unit, target)
    workdir = tempfile.mkdtemp(prefix="tidald-bench-")
    d = Daemon(args.tidald, workdir, args.host_memory, fake)
    sel = selectors.DefaultSelector()
    try:
        t0 = time.perf_counter()
        vms, admitted = start_vms(d, sel, args.vms)
        setup_s = admitted - t0
        st = proc_status(d.proc.pid)
        rows.append(("tidald VmRSS, %d VMs connected" % args.vms, st["VmRSS"] / MiB, "MiB",
                     TARGET_RSS_MIB))
        rows.append(("tidald VmHWM after %d admissions" % args.vms, st["VmHWM"] / MiB, "MiB",
                     TARGET_RSS_MIB))
        listed = admin(d.path, {"cmd": "list"})
        if len(listed["vms"]) != args.vms:
            raise Failure("list shows %d VMs, not %d" % (len(listed["vms"]), args.vms))
        lat = spike_latency(sel, vms, args.samples)
        rows.append(("spike to target, median (%d samples)" % len(lat), statistics.median(lat),
                     "ms", TARGET_SPIKE_MS))
        rows.append(("spike to target, p99", percentile(lat, 99), "ms", TARGET_SPIKE_MS))
        rows.append(("spike to target, max", max(lat), "ms", None))
        if args.tidalctl:
            times, size = tidalctl_list(args.tidalctl, d.path, args.vms)
            rows.append(("tidalctl --json list, %d VMs (%d KiB), median of %d" %
                         (args.vms, size // 1024, len(times)), statistics.median(times), "ms",
                         None))
            times, size = tidalctl_metrics(args.tidalctl, d.path, args.vms)
            rows.append(("tidalctl metrics, %d VMs (%d KiB), median of %d" %
                         (args.vms, size // 1024, len(times)), statistics.median(times), "ms",
                         None))
        st = proc_status(d.proc.pid)
        rows.append(("tidald VmRSS at the end", st["VmRSS"] / MiB, "MiB", TARGET_RSS_MIB))
        rows.append(("tidald VmHWM at the end (peak, lists included)", st["VmHWM"] / MiB, "MiB",
                     TARGET_RSS_MIB))
        if d.proc.poll() is not None:
            raise Failure("tidald died")
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        d.stop()
    if args.policy_bench:
        out, figures = policy_round(args.policy_bench)
        sys.stdout.write(out)
        rows.append(("policy round, 10,000 VMs, median", figures["balance round median"] / 1000,
                     "ms", TARGET_ROUND_US / 1000))
        rows.append(("policy round, 10,000 VMs, p99", figures["balance round p99"] / 1000, "ms",
                     TARGET_ROUND_US / 1000))
    shutil.rmtree(workdir, ignore_errors=True)

    print("vms: %d (connected and admitted in %.1f s), MemTotal seen by tidald: %s" %
          (args.vms, setup_s, "%d GiB (synthetic)" % (fake // GiB) if fake else "the host's"))
    for name, value, unit, target in rows:
        if target:
            print("%s: %.2f %s; target %g %s; ratio %.3f" % (name, value, unit, target, unit,
                                                           value / target))
        else:
            print("%s: %.2f %s" % (name, value, unit))
    print()
    print("| figure | value | target | ratio |")
    print("|---|---|---|---|")
    for name, value, unit, target in rows:
        print("| %s | %.2f %s | %s | %s |" % (name, value, unit,
                                              "< %g %s" % (target, unit) if target else "-",
                                              "%.3f" % (value / target) if target else "-"))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
