#!/usr/bin/env python3
"""virtio-balloon inflate and deflate: tidal vs QEMU -M pc with virtio-balloon-pci.

Each VMM boots the same kernel and test guest (512 MiB, 1 vCPU by default). Once the guest is
ready it touches 400 MiB and frees it again (`alloc 400`, `free all`), so that the memory is
really allocated on the host. Then:

- inflate: the balloon is set to 384 MiB (the guest keeps 128 MiB); timed from the set command
  until the device's `actual` reaches it, polled every 50 ms;
- deflate: the balloon is set back to 0, timed the same way;
- host RSS of the VMM (total and guest-RAM mapping, /proc/PID/smaps) before and after the
  inflate, as a sanity check that the memory really went back to the host.

QEMU is driven over QMP (`balloon` with the guest size wanted, `query-balloon` whose `actual` is
the guest size), tidal over its control socket (`balloon-set`, and `info`'s
info.balloon.actual_bytes), each through one connection kept open. tidalctl (`balloon SIZE`,
`info --json`) checks the result after each phase; with --tidal-client tidalctl it also does the
timed requests, but then every 50 ms poll starts a process (~100 ms each in the rig, where
that competes with the guest for L1's two CPUs).

Also reported per run, to see where the time goes: the CPU time of the VMM's main thread (which
serves the balloon's queues in both VMMs) and of its other threads (the vCPU, guest time
included), the KVM exits of the VMM's threads by reason (ftrace, kvm:kvm_exit), and the
guest's own balloon and compaction counters (/proc/vmstat).

Discard system calls (madvise and fallocate) are counted per thread by the kernel, with ftrace
histogram triggers on the syscall tracepoints (sys_enter_madvise keyed by advice,
sys_enter_fallocate by mode), read at the start and end of each phase and summed over the VMM's
threads. That stops nothing, so it runs along with the timed runs. Where that is not available
(not root, no CONFIG_HIST_TRIGGERS), or with --count strace, each VMM runs once more under
`strace -f --seccomp-bpf -e trace=madvise,fallocate` and calls are attributed to a phase by their
timestamps; strace stops the VMM at every call, so that is slow (QEMU makes one call per 4 KiB
page: in the nested rig, tens of minutes).

Like for like: QEMU's virtio-balloon-pci has deflate-on-oom and free page reporting off and no
statistics polling by default, so tidal runs with
`--balloon deflate-on-oom=off,free-page-reporting=off,stats-period=0` (see --tidal-balloon).

Runs directly where /dev/kvm exists, else inside the nested rig (all VMMs in the same L1, so only
the ratios mean anything).
Usage: bench/balloon.py --tidal build/src/vmm/tidal --build-dir build --runs 3
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from common import (Guest, add_rig_args, emit, main_here_or_in_rig, median, qemu_argv,
                    rss_split_kib, tidal_argv)

MIB = 1 << 20
POLL_S = 0.05
TIDAL_BALLOON = "deflate-on-oom=off,free-page-reporting=off,stats-period=0"


class TidalCtl:
    """tidal's control socket, through tidalctl."""

    def __init__(self, tidalctl, sock):
        self.argv = [tidalctl, "--api-socket", sock]
        self.polls = []  # seconds per info call, to see what polling costs

    def _run(self, *args):
        return subprocess.run(self.argv + list(args), check=True, stdout=subprocess.PIPE,
                              text=True, timeout=60).stdout

    def set_balloon(self, nbytes):
        self._run("balloon", "%dM" % (nbytes // MIB))

    def balloon_bytes(self):
        t = time.monotonic()
        info = json.loads(self._run("info", "--json"))
        self.polls.append(time.monotonic() - t)
        return info["info"]["balloon"]["actual_bytes"]

    def counters(self):
        """The device's own counters (info.balloon.counters), where this tidal has them."""
        return json.loads(self._run("info", "--json"))["info"]["balloon"].get("counters")

    def close(self):
        pass


class TidalApi:
    """tidal's control socket, spoken directly: one connection kept open, as for QMP."""

    def __init__(self, path, timeout=120):
        self.polls = []
        self.sock = connect_unix(path, timeout)
        self.f = self.sock.makefile("rwb")

    def execute(self, req):
        self.f.write((json.dumps(req) + "\n").encode())
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise EOFError("control socket closed")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError("tidal %s: %s" % (req["cmd"], reply.get("error")))
        return reply

    def set_balloon(self, nbytes):
        self.execute({"cmd": "balloon-set", "bytes": nbytes})

    def balloon_bytes(self):
        t = time.monotonic()
        info = self.execute({"cmd": "info"})
        self.polls.append(time.monotonic() - t)
        return info["info"]["balloon"]["actual_bytes"]

    def close(self):
        self.sock.close()


def connect_unix(path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Qmp:
    """QEMU's QMP socket: `balloon` and `query-balloon` speak of the guest's size, not the
    balloon's; this converts."""

    def __init__(self, path, mem_mib, timeout=120):
        self.mem = mem_mib * MIB
        self.polls = []
        self.sock = connect_unix(path, timeout)
        self.f = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("QMP socket closed")
        return json.loads(line)

    def execute(self, cmd, **args):
        req = {"execute": cmd}
        if args:
            req["arguments"] = args
        self.f.write((json.dumps(req) + "\n").encode())
        self.f.flush()
        while True:
            msg = self._read()
            if "event" in msg:  # BALLOON_CHANGE and friends
                continue
            if "error" in msg:
                raise RuntimeError("QMP %s: %s" % (cmd, msg["error"]))
            return msg["return"]

    def set_balloon(self, nbytes):
        self.execute("balloon", value=self.mem - nbytes)

    def balloon_bytes(self):
        t = time.monotonic()
        actual = self.execute("query-balloon")["actual"]
        self.polls.append(time.monotonic() - t)
        return self.mem - actual

    def close(self):
        self.sock.close()


def balloon_to(ctl, nbytes, timeout):
    """Sets the balloon and waits until the device reports it. Returns the seconds taken, and
    when the first change was seen."""
    start = ctl.balloon_bytes()
    first = None
    t0 = time.monotonic()
    ctl.set_balloon(nbytes)
    while True:
        now = ctl.balloon_bytes()
        if first is None and now != start:
            first = time.monotonic() - t0
        if now == nbytes:
            took = time.monotonic() - t0
            return took, took if first is None else first
        if time.monotonic() - t0 > timeout:
            raise AssertionError("balloon did not reach %d MiB in %d s (at %d MiB)" %
                                 (nbytes // MIB, timeout, ctl.balloon_bytes() // MIB))
        time.sleep(POLL_S)


def expect(ctl, nbytes):
    """For tidal, tidalctl's view after the timing: the same as the socket's."""
    got = ctl.balloon_bytes()
    if got != nbytes:
        raise AssertionError("balloon is %d bytes, expected %d" % (got, nbytes))


def guest_vmstat(g):
    """The guest's own balloon and compaction counters (/proc/vmstat)."""
    out = {}
    for line in g.cmd("exec grep -E '^(balloon|compact_(stall|success|fail))' /proc/vmstat"):
        m = re.match(r"(\w+) (\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def vmstat_delta(a, b):
    return {k: v - a.get(k, 0) for k, v in b.items() if v != a.get(k, 0)}


def thread_cpu(pid):
    """{tid: CPU seconds (user + system, guest time included)} of the process's threads."""
    out = {}
    hz = os.sysconf("SC_CLK_TCK")
    for tid in FtraceCounter.tids(pid):
        try:
            with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = (int(fields[11]) + int(fields[12])) / float(hz)
        except (OSError, IndexError, ValueError):
            pass
    return out


def cpu_split(pid, before, after):
    """CPU seconds between two thread_cpu() samples: (main thread, the others). The main thread
    runs tidal's event loop and QEMU's main loop, where both serve the balloon's queues; the
    others are mostly vCPUs, whose time includes the guest's."""
    main = other = 0.0
    for tid, t in after.items():
        d = t - before.get(tid, 0.0)
        if tid == pid:
            main += d
        else:
            other += d
    return main, other


def vmm_pid(proc, traced):
    """The VMM's pid: the process itself, or strace's child."""
    if not traced:
        return proc.pid
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("strace started no VMM")


MADV = {3: "MADV_WILLNEED", 4: "MADV_DONTNEED", 8: "MADV_FREE", 9: "MADV_REMOVE",
        12: "MADV_MERGEABLE", 14: "MADV_HUGEPAGE", 16: "MADV_DONTDUMP"}
FALLOC = {3: "KEEP_SIZE|PUNCH_HOLE"}
# The exit reasons that matter here (AMD SVM, Intel VMX), for the exit breakdown.
SVM_EXITS = {0x060: "intr", 0x064: "vintr", 0x078: "hlt", 0x07b: "io", 0x07c: "msr",
             0x400: "npf", 0x401: "avic-ipi", 0x402: "avic-access"}
VMX_EXITS = {1: "intr", 12: "hlt", 30: "io", 31: "msr-read", 32: "msr-write",
             48: "ept-violation", 49: "ept-misconfig"}


class FtraceCounter:
    """Counts in the kernel, per thread, with histogram triggers on tracepoints: madvise and
    fallocate calls (by advice / mode, with the bytes they name) and, when the kvm module's
    tracepoints are there, KVM exits by reason. Nothing stops the VMM, so counting can go
    with the timed runs."""

    # name: (event, key, value summed or None)
    EVENTS = {"madvise": ("syscalls/sys_enter_madvise", "behavior", "len_in"),
              "fallocate": ("syscalls/sys_enter_fallocate", "mode", "len"),
              "exit": ("kvm/kvm_exit", "exit_reason", None)}
    OPTIONAL = {"exit"}
    HIST_RE = re.compile(r"\{\s*common_pid:\s*(\d+),\s*\w+:\s*(-?\d+)\s*\}\s*hitcount:\s*(\d+)"
                         r"(?:[ \t]+\w+:\s*(\d+))?")

    def __init__(self):
        self.root = None
        for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
            if not os.path.isdir(os.path.join(d, "events")) and os.path.isdir(d):
                subprocess.call(["mount", "-t", "tracefs", "nodev", d],
                                stderr=subprocess.DEVNULL)
            if os.path.isdir(os.path.join(d, "events", "syscalls")):
                self.root = d
                break
        if not self.root:
            raise OSError("no tracefs with syscall events")
        with open("/proc/cpuinfo") as f:
            self.exit_names = SVM_EXITS if re.search(r"\bsvm\b", f.read()) else VMX_EXITS
        self.armed = []
        try:
            for name, (ev, key, val) in self.EVENTS.items():
                if name in self.OPTIONAL and not os.path.exists(self._path(ev, "trigger")):
                    continue
                spec = "hist:keys=common_pid,%s:vals=hitcount%s:size=8192" % (
                    key, "," + val if val else "")
                with open(self._path(ev, "trigger"), "w") as f:
                    f.write(spec)
                self.armed.append((name, ev, spec))
        except OSError:
            self.close()
            raise

    def _path(self, ev, what):
        return os.path.join(self.root, "events", ev, what)

    def snapshot(self):
        """{(name, tid, key): [hits, sum]} since the triggers were set."""
        snap = {}
        for name, ev, _ in self.armed:
            with open(self._path(ev, "hist")) as f:
                for m in self.HIST_RE.finditer(f.read()):
                    snap[(name, int(m.group(1)), int(m.group(2)))] = [int(m.group(3)),
                                                                      int(m.group(4) or 0)]
        return snap

    @staticmethod
    def tids(pid):
        try:
            return {int(t) for t in os.listdir("/proc/%d/task" % pid)}
        except OSError:
            return set()

    def count(self, r):
        """Calls of the VMM's threads between the marks, as count_strace() gives them, and its
        KVM exits by reason in r["exits"]."""
        out = {}
        r["exits"] = {}
        for phase, (lo, hi) in WINDOWS.items():
            c = {"calls": 0, "bytes": 0, "kinds": collections.Counter()}
            exits = collections.Counter()
            before, after = r["snap_" + lo], r["snap_" + hi]
            for key, (n, nbytes) in after.items():
                name, tid, kind = key
                n0, b0 = before.get(key, (0, 0))
                if tid not in r["tids"] or n <= n0:
                    continue
                if name == "exit":
                    exits[self.exit_names.get(kind, hex(kind))] += n - n0
                    continue
                names = MADV if name == "madvise" else FALLOC
                c["calls"] += n - n0
                c["bytes"] += nbytes - b0
                c["kinds"]["%s %s" % (name, names.get(kind, kind))] += n - n0
            out[phase] = c
            if any(a[0] == "exit" for a in self.armed):
                r["exits"][phase] = exits
        return out

    def close(self):
        for _, ev, spec in self.armed:
            try:
                with open(self._path(ev, "trigger"), "w") as f:
                    f.write("!" + spec)
            except OSError:
                pass
        self.armed = []


# The marks that bound each phase. Both drivers and devices acknowledge a request only once
# the device has served it (discards included), and the guest updates `actual` after the
# acknowledgement: nothing of a phase can come after its end is seen. The two windows between
# and after the phases are counted too, as a check (the guest's console commands run there).
PHASES = {"inflate": ("inflate", "inflated"), "deflate": ("deflate", "deflated")}
CHECKS = {"between": ("inflated", "deflate"), "after": ("deflated", "end")}
WINDOWS = dict(PHASES, **CHECKS)


def session(vmm, args, kernel, initrd, log, counter=None, trace=None):
    """One VMM, one guest: touch, inflate, deflate. Returns a dict of figures, with the
    wall-clock marks of each phase (and counter snapshots) for attributing discard calls."""
    tmp = tempfile.mkdtemp(prefix="tidal-bench-")  # /tmp: 9p cannot hold Unix sockets
    sock = os.path.join(tmp, "ctl.sock")
    if vmm == "tidal":
        argv = tidal_argv(args.tidal, kernel, initrd, args.memory, args.cpus,
                          ["--api-socket", sock, "--balloon", args.tidal_balloon])
    else:
        argv = qemu_argv("pc", kernel, initrd, args.memory, args.cpus, ["virtio-balloon-pci"])
        argv += ["-qmp", "unix:%s,server=on,wait=off" % sock]
    if trace:
        argv = ["strace", "-f", "-qq", "--seccomp-bpf", "-ttt", "-e", "trace=madvise,fallocate",
                "-o", trace, "--"] + argv
    inflate = args.inflate * MIB
    timeout = 3600 if trace else 600
    r = {"tids": set()}

    def mark(name):
        r["mark_" + name] = time.time()
        if counter:
            r["tids"] |= counter.tids(pid)
            r["snap_" + name] = counter.snapshot()

    with Guest(argv, log) as g:
        pid = vmm_pid(g.proc, trace)
        try:
            g.wait_ready(timeout=300)
            if vmm == "qemu":
                ctl = check = Qmp(sock, args.memory)
            else:
                check = TidalCtl(args.tidalctl, sock)
                ctl = check if args.tidal_client == "tidalctl" else TidalApi(sock)
            mem_before = g.meminfo()["MemTotal"]
            g.cmd("alloc %d" % args.touch, timeout=600)
            g.cmd("free all", timeout=300)
            r["rss_before"] = rss_split_kib(pid, args.memory)
            vm0 = guest_vmstat(g)
            dev0 = check.counters() if vmm == "tidal" else None
            mark("inflate")
            cpu0 = thread_cpu(pid)
            r["inflate_s"], r["inflate_first_s"] = balloon_to(ctl, inflate, timeout)
            mark("inflated")
            r["inflate_cpu"] = cpu_split(pid, cpu0, thread_cpu(pid))
            r["rss_after"] = rss_split_kib(pid, args.memory)
            expect(check, inflate)
            r["memtotal_drop_mib"] = (mem_before - g.meminfo()["MemTotal"]) / 1024.0
            dev1 = check.counters() if dev0 else None
            if dev1 and "discard_calls" in dev1:
                r["device_discard_calls"] = dev1["discard_calls"] - dev0.get("discard_calls", 0)
            vm1 = guest_vmstat(g)
            mark("deflate")
            cpu0 = thread_cpu(pid)
            r["deflate_s"], r["deflate_first_s"] = balloon_to(ctl, 0, timeout)
            mark("deflated")
            r["deflate_cpu"] = cpu_split(pid, cpu0, thread_cpu(pid))
            expect(check, 0)
            time.sleep(1)
            mark("end")
            vm2 = guest_vmstat(g)
            r["guest_vmstat"] = {"inflate": vmstat_delta(vm0, vm1),
                                 "deflate": vmstat_delta(vm1, vm2)}
            r["poll_ms"] = 1000 * median(ctl.polls)
            ctl.close()
            g.send("poweroff")
            try:
                g.wait_exit(60)
            except AssertionError:
                pass
        finally:
            if trace and g.proc.poll() is None:
                # Killing strace alone would detach it and leave the VMM running.
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    if counter:
        r["calls"] = counter.count(r)
    if trace:
        r["calls"] = count_strace(trace, r)
    return r


STRACE_RE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\d+\.\d+)\s+(madvise|fallocate)\((.*)")


def count_strace(trace, r):
    """Counts madvise and fallocate calls in the inflate and the deflate windows of an strace
    log, with a breakdown by kind (MADV_DONTNEED, fallocate mode, ...) and the bytes named."""
    out = {p: {"calls": 0, "bytes": 0, "kinds": collections.Counter()} for p in WINDOWS}
    with open(trace, errors="replace") as f:
        for line in f:
            m = STRACE_RE.match(line)
            if not m:
                continue  # "<... resumed>" halves, exits, signals
            t, name, rest = float(m.group(2)), m.group(3), m.group(4)
            argv = [a.strip() for a in rest.split(")")[0].split(" <unfinished")[0].split(",")]
            if name == "madvise" and len(argv) > 2:
                kind, length = argv[2], argv[1]
            elif name == "fallocate" and len(argv) > 3:
                kind, length = argv[1].replace("FALLOC_FL_", ""), argv[3]
            else:
                kind, length = "?", "0"
            for p, (lo, hi) in WINDOWS.items():
                if r["mark_" + lo] <= t < r["mark_" + hi]:
                    out[p]["calls"] += 1
                    out[p]["kinds"]["%s %s" % (name, kind)] += 1
                    try:
                        out[p]["bytes"] += int(length, 0)
                    except ValueError:
                        pass
    return out


def calls_line(label, phase, c):
    kinds = ", ".join("%s: %d" % kv for kv in sorted(c["kinds"].items()))
    return "%-10s %s: %d calls, %.1f MiB named (%s)" % (label, phase, c["calls"],
                                                         c["bytes"] / MIB, kinds or "none")


def emit_run(i, vmm, r):
    label = "run %d %-10s" % (i, LABEL[vmm])
    emit("%s guest-RAM RSS %.0f -> %.0f MiB, VMM RSS %.0f -> %.0f MiB, MemTotal -%.0f MiB, "
         "poll %.0f ms" % (label, r["rss_before"][1] / 1024, r["rss_after"][1] / 1024,
                           r["rss_before"][0] / 1024, r["rss_after"][0] / 1024,
                           r["memtotal_drop_mib"], r["poll_ms"]))
    for p in PHASES:
        emit("%s %s %.2f s (first change %.2f s); CPU: main thread %.2f s, others (vCPU) %.2f s"
             % (label, p, r[p + "_s"], r[p + "_first_s"], r[p + "_cpu"][0], r[p + "_cpu"][1]))
        vm = r["guest_vmstat"][p]
        emit("%s %s: guest vmstat %s" % (label, p, " ".join("%s +%d" % kv for kv in
                                                             sorted(vm.items())) or "-"))
        if p in r.get("exits", {}):
            exits = r["exits"][p]
            emit("%s %s: %d KVM exits (%s)" % (label, p, sum(exits.values()), ", ".join(
                "%s %d" % kv for kv in exits.most_common(6))))
    for p in WINDOWS:
        c = r.get("calls", {}).get(p)
        if c and (p in PHASES or c["calls"]):
            emit("run %d %s" % (i, calls_line(LABEL[vmm], p, c)))
    if "device_discard_calls" in r:
        emit("%s inflate: %d discard calls by the device's own count (info.balloon.counters)" %
             (label, r["device_discard_calls"]))


VMMS = ["tidal", "qemu"]
LABEL = {"tidal": "tidal", "qemu": "qemu -M pc"}


THP = "/sys/kernel/mm/transparent_hugepage/"


def thp_settings():
    """(shmem_enabled, enabled): the host's transparent huge page modes, e.g. advise, always."""
    out = []
    for name in ("shmem_enabled", "enabled"):
        try:
            with open(THP + name) as f:
                out.append(re.search(r"\[(\w+)\]", f.read()).group(1))
        except (OSError, AttributeError):
            out.append("?")
    return tuple(out)


def run(args, kernel, initrd):
    log = os.path.join(args.build_dir, "bench-balloon.log")
    if args.rig_thp:
        # Only in the rig's throwaway L1: on a real host this is the administrator's choice.
        if os.environ.get("TIDAL_IN_RIG") != "1":
            sys.exit("--rig-thp: only inside the nested rig; set %s yourself" % THP)
        for name, val in zip(("shmem_enabled", "enabled"), args.rig_thp.split(",")):
            with open(THP + name, "w") as f:
                f.write(val)
    counter = None
    if args.count in ("auto", "ftrace"):
        try:
            counter = FtraceCounter()
        except OSError as e:
            if args.count == "ftrace":
                raise
            args.count = "strace" if shutil.which("strace") else "none"
            print("no ftrace histogram triggers (%s): counting with %s" % (e, args.count),
                  flush=True)
    try:
        timed = {v: [] for v in VMMS}
        for i in range(args.runs):
            for vmm in VMMS:  # interleaved, so drift in the rig hits both alike
                r = session(vmm, args, kernel, initrd, log, counter=counter)
                timed[vmm].append(r)
                emit_run(i + 1, vmm, r)
    finally:
        if counter:
            counter.close()

    calls = {}  # vmm -> [per-run {phase: counts}]
    if counter:
        for vmm in VMMS:
            calls[vmm] = [r["calls"] for r in timed[vmm]]
    elif args.count == "strace":
        for vmm in VMMS:  # separate runs: strace stops the VMM at every counted call
            trace = os.path.join(tempfile.mkdtemp(prefix="tidal-bench-"), "strace.out")
            r = session(vmm, args, kernel, initrd, log, trace=trace)
            calls[vmm] = [r["calls"]]
            for p in WINDOWS:
                if p in PHASES or r["calls"][p]["calls"]:
                    emit("strace %s" % calls_line(LABEL[vmm], p, r["calls"][p]))
                if p in PHASES:
                    emit("strace %-10s %s %.2f s (traced)" % (LABEL[vmm], p, r[p + "_s"]))

    def med(vmm, key, f=lambda x: x):
        return median([f(r[key]) for r in timed[vmm]])

    def med_calls(vmm, phase):
        return median([c[phase]["calls"] for c in calls[vmm]])

    def ratio(a, b):
        return "%.2f" % (a / b) if b else "-"

    def fraction(a, b):  # small ratios read better as 1/N
        return "%.4f (1/%.0f)" % (a / b, b / a) if a and b else ratio(a, b)

    rss = lambda i: (lambda x: x[i] / 1024.0)  # noqa: E731 (total, guest RAM) KiB -> MiB
    # (what, per-VMM value, its format, ratio format, target)
    rows = [
        ("inflate %d MiB (s)" % args.inflate, lambda v: med(v, "inflate_s"), "%.2f", ratio,
         "<= 0.5"),
        ("deflate %d MiB (s)" % args.inflate, lambda v: med(v, "deflate_s"), "%.2f", ratio, ""),
    ]
    if calls:
        rows += [
            ("discard syscalls per MiB inflated",
             lambda v: med_calls(v, "inflate") / float(args.inflate), "%.2f", fraction,
             "<= 1/64"),
            ("madvise/fallocate calls during deflate", lambda v: med_calls(v, "deflate"), "%d",
             fraction, ""),
        ]
    if all(r.get("exits") for v in VMMS for r in timed[v]):
        rows += [
            ("KVM exits during inflate, per MiB",
             lambda v: median([sum(r["exits"]["inflate"].values()) for r in timed[v]]) /
             float(args.inflate), "%.0f", ratio, ""),
            ("of which nested page faults, per MiB",
             lambda v: median([r["exits"]["inflate"].get("npf", 0) +
                               r["exits"]["inflate"].get("ept-violation", 0)
                               for r in timed[v]]) / float(args.inflate), "%.0f", ratio, ""),
        ]
    rows += [
        ("guest-RAM RSS before inflate (MiB)", lambda v: med(v, "rss_before", rss(1)), "%.0f",
         None, ""),
        ("guest-RAM RSS after inflate (MiB)", lambda v: med(v, "rss_after", rss(1)), "%.0f",
         None, ""),
        ("VMM RSS before inflate (MiB)", lambda v: med(v, "rss_before", rss(0)), "%.0f", None,
         ""),
        ("VMM RSS after inflate (MiB)", lambda v: med(v, "rss_after", rss(0)), "%.0f", None, ""),
    ]
    how = {"auto": "-", "none": "-",
           "strace": "one strace run of each VMM",
           "ftrace": "ftrace syscall histograms in the timed runs"}
    emit("virtio-balloon, %d MiB guest, %d vCPU, touched %d MiB, balloon 0 -> %d -> 0 MiB, "
         "median of %d runs; syscalls counted by %s" %
         (args.memory, args.cpus, args.touch, args.inflate, args.runs,
          how["ftrace" if counter else args.count]))
    emit("host transparent huge pages: shmem_enabled=%s (tidal's memfd), enabled=%s "
         "(QEMU's anonymous RAM)" % thp_settings())
    emit("tidal --balloon %s, driven through %s; qemu -device virtio-balloon-pci (its "
         "defaults), driven through QMP; polled every %d ms" %
         (args.tidal_balloon, "tidalctl" if args.tidal_client == "tidalctl" else
          "its control socket", POLL_S * 1000))
    emit("| | tidal | qemu -M pc | tidal / qemu | target |")
    emit("|---|---|---|---|---|")
    for name, fn, fmt, rfmt, target in rows:
        a, b = fn("tidal"), fn("qemu")
        emit("| %s | %s | %s | %s | %s |" % (name, fmt % a, fmt % b, rfmt(a, b) if rfmt else "",
                                              target))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tidal", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory", type=int, default=512, help="guest MiB")
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--touch", type=int, default=400, help="MiB the guest touches then frees")
    ap.add_argument("--inflate", type=int, default=384, help="balloon size, MiB")
    ap.add_argument("--tidal-balloon", default=TIDAL_BALLOON, help="tidal's --balloon list")
    ap.add_argument("--tidal-client", choices=["socket", "tidalctl"], default="socket",
                    help="how the timed loop talks to tidal: one connection to its control "
                    "socket kept open, like QMP (default), or a tidalctl process per request")
    ap.add_argument("--count", choices=["auto", "ftrace", "strace", "none"], default="auto",
                    help="how to count discard syscalls: ftrace histogram triggers during the "
                    "timed runs (needs root and CONFIG_HIST_TRIGGERS), one extra strace run "
                    "per VMM, or not at all; auto: ftrace, else strace")
    ap.add_argument("--rig-thp", metavar="SHMEM,ANON",
                    help="in the nested rig only: first set L1's transparent huge page modes "
                    "for shmem (tidal's memfd) and anonymous memory (QEMU's RAM), e.g. "
                    "never,never; the rig's own are advise,always")
    add_rig_args(ap)
    args = ap.parse_args()
    if args.rig_thp and len(args.rig_thp.split(",")) != 2:
        ap.error("--rig-thp takes SHMEM,ANON, e.g. never,never")
    args.tidal = os.path.abspath(args.tidal)
    args.build_dir = os.path.abspath(args.build_dir)
    args.tidalctl = os.path.join(args.build_dir, "src", "memctl", "tidalctl")

    if args.inside and args.count == "strace" and not shutil.which("strace"):
        print("strace not found (apt-get install strace, or --count none)", file=sys.stderr)
        return 2
    return main_here_or_in_rig(__file__, args, run, "bench-balloon-rig.log")

if __name__ == "__main__":
    sys.exit(main())
