#!/usr/bin/env python3
"""Dynamic memory, shrink and grow: tidal's controller vs QEMU 7.2 with virtio-mem-pci and with
virtio-balloon-pci.

The scenario (the project's issue): a guest of up to 1 GiB touches 880 MiB (the issue says 900;
that does not fit a 1 GiB tidal guest grown from 256 MiB), frees it, is shrunk
to 256 MiB, and is grown back to 1 GiB. Measured: the time to reach each target, the reclaim
rate, and the VMM's host RSS before and after the shrink. Each VMM boots the same kernel and
test guest, 1 vCPU.

- tidal: `--memory startup=256M,minimum=256M,maximum=1G,buffer=30` (as the e2e test).
  The guest grows to 1 GiB under the controller: it allocates in steps (`alloc N`, N at most
  48 MiB and at most MemAvailable - 32 MiB, or the guest, which has no swap, is OOM-killed),
  each step waiting for two fresh statistics reports and then for status OK (or assigned =
  maximum), the way a workload grows, since memory arrives once a second. Demand with 880 MiB held is about
  970 MiB, so the controller wants maximum (1 GiB); after `free all` it wants minimum (256 MiB).
  shrink: timed from `free all` until info.memory.assigned_bytes reaches 256 MiB. That is
  the controller end to end: it waits for a low statistics report to be confirmed by the next
  one (asked for 250 ms later), then lowers virtio-mem's requested size by the whole gap (up to
  its largest step). So it is also reported from the controller's first lowering of the
  requested size to done, and as the mechanism: how long virtio-mem was behind its request
  (plugged > requested), by the device's own clock (`unplug_behind_us` in info), of which the
  host's share (`request_us`: tidal carrying out the requests); the rest is the guest's driver
  offlining memory. grow: timed from the first `alloc` of the same steps until assigned is
  back at 1 GiB, which includes the guest touching the memory and waiting for the controller;
  the plug mechanism likewise from `plug_behind_us`.
- QEMU virtio-mem, grown in steps (vmem-steps; the comparison for the shrink target): the same
  device and command line as below but `requested-size=0` at boot, so that the guest has the
  same history as tidal's: it allocates in the same steps (grow_by_steps' rule) and after each
  one requested-size is raised over QMP to what tidal's controller would ask,
  wanted = (256 MiB + size - MemAvailable) x (1 + buffer), i.e. demand (assigned minus what
  the guest has available, as src/vmm/dynmem/demand.c with its overhead term) plus the
  buffer, rounded up to 2 MiB and clamped to the region; each step waits until `size`
  reaches it, and repeats while the guest's figures, read again, want more (tidal's status
  OK). If the rule ends below the region (tidal ends at maximum), the rest is plugged before
  `free all`. shrink: requested-size 0 as below; grow: the same steps again, plug rate over the
  time size was behind requested-size.
- QEMU virtio-mem, plugged at boot (vmem): `-m 256M,maxmem=2G,slots=1`, a 768 MiB
  memory-backend-ram and `virtio-mem-pci,block-size=2M,requested-size=768M`; the kernel
  command line gets `memhp_default_state=online memory_hotplug.online_policy=auto-movable`, as
  tidal adds it. The guest touches the memory at once and frees it; shrink: QMP `qom-set`
  requested-size 0, timed until `qom-get` size reaches 0; grow: requested-size 768M, until size
  is back at 768 MiB (the memory is plugged, not touched). The mechanism, as tidal's device
  clock: from QMP's answer to `qom-set` (QEMU has set the size by then) to QEMU's last
  `virtio_mem_send_response`, from its log trace backend with wall-clock timestamps (`-trace`,
  `-msg timestamp=on`).
- QEMU virtio-balloon: `-m 1024`, virtio-balloon-pci (its defaults); touch 880 MiB and free;
  shrink: QMP `balloon` 256 MiB, timed until `query-balloon` actual reaches it; grow: `balloon`
  1024 MiB, until actual is back (memory handed back, not touched).

All polled every 50 ms through one connection to the control socket or QMP, kept open. Discard
syscalls (madvise, fallocate) and KVM exits during the shrink are counted with ftrace histogram
triggers as in bench/balloon.py, where available.

Runs directly where /dev/kvm exists, else inside the nested rig (all VMMs in the same L1, so only
the ratios mean anything). Usage:
  bench/dynmem.py --tidal build/src/vmm/tidal --build-dir build --runs 3
"""
import argparse
import collections
import json
import os
import re
import sys
import tempfile
import threading
import time

import balloon
from balloon import FALLOC, MADV, FtraceCounter, Qmp, thp_settings
from common import CMDLINE, Guest, add_rig_args, emit, main_here_or_in_rig, median
from guest import GuestError

MIB = 1 << 20
GIB = 1 << 30
POLL_S = 0.05
HOTPLUG_CMDLINE = "memhp_default_state=online memory_hotplug.online_policy=auto-movable"
VMMS = ["tidal", "vmem-steps", "vmem", "balloon"]
VMEM = ("vmem-steps", "vmem")
LABEL = {"tidal": "tidal", "vmem-steps": "qemu virtio-mem (grown in steps)",
         "vmem": "qemu virtio-mem (plugged at boot)", "balloon": "qemu virtio-balloon"}


class TidalApi(balloon.TidalApi):
    """tidal's control socket as bench/balloon.py speaks it, plus the memory figures."""

    def memory(self):
        info = self.execute({"cmd": "info"})["info"]
        m, b = info["memory"], info["balloon"] or {}
        vm = m.get("virtio_mem") or {}
        vc = vm.get("counters") or {}
        return {"t": time.monotonic(), "assigned": m["assigned_bytes"],
                "target": m.get("target_bytes"), "status": m.get("status"),
                "demand": m.get("demand_bytes") or 0,
                "requested": vm.get("requested_bytes", 0), "plugged": vm.get("plugged_bytes", 0),
                "stuck": vm.get("stuck_bytes", 0), "balloon": b.get("actual_bytes", 0),
                "stats_count": b.get("stats_count", 0),
                "reported": (b.get("counters") or {}).get("reported_bytes", 0),
                "unplug_behind_us": vc.get("unplug_behind_us", 0),
                "plug_behind_us": vc.get("plug_behind_us", 0),
                "request_us": vc.get("request_us", 0),
                "unplug_requests": vc.get("unplug_requests", 0)}


class Sampler:
    """Polls tidal's memory every POLL_S in the background; keeps the whole timeline."""

    def __init__(self, sock):
        self.api = TidalApi(sock)
        self.samples = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stop.is_set():
                s = self.api.memory()
                with self.cond:
                    self.samples.append(s)
                    self.cond.notify_all()
                time.sleep(POLL_S)
        except (OSError, EOFError, RuntimeError, ValueError) as e:
            self.error = e
            with self.cond:
                self.cond.notify_all()

    def latest(self):
        with self.cond:
            while not self.samples and not self.error:
                self.cond.wait(1)
            if self.error:
                raise AssertionError("control socket: %s" % self.error)
            return self.samples[-1]

    def wait(self, what, pred, timeout):
        """Waits for a sample (taken after the call) satisfying pred; returns it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            n = len(self.samples)
            while True:
                for s in self.samples[n:]:
                    if pred(s):
                        return s
                n = len(self.samples)
                if self.error:
                    raise AssertionError("control socket: %s" % self.error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %d s waiting for %s; memory: %r" %
                                         (timeout, what, self.samples[-1] if self.samples
                                          else None))
                self.cond.wait(min(left, 0.5))

    def window(self, t0, t1):
        with self.cond:
            return [s for s in self.samples if t0 <= s["t"] <= t1]

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.api.close()


def rss_split_kib(pid):
    """(total RSS, RSS of guest RAM) in KiB from /proc/PID/smaps. Guest RAM: tidal's memfd
    mappings (boot RAM and the hot-plug region, split by PROT_NONE runs), QEMU's anonymous RAM
    blocks (pc.ram, the virtio-mem backend): anonymous mappings of 100 MiB or more."""
    total = guest = 0
    is_guest = False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                fields = line.split()
                path = fields[5] if len(fields) > 5 else ""
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                is_guest = path.startswith("/memfd:") or (not path and hi - lo >= 100 * MIB)
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                total += rss
                if is_guest:
                    guest += rss
    return total, guest


def ftrace_delta(counter, before, after, tids):
    """Discard syscalls and KVM exits of the VMM's threads between two snapshots."""
    calls, exits = collections.Counter(), collections.Counter()
    for key, (n, _) in after.items():
        name, tid, kind = key
        n0 = before.get(key, (0, 0))[0]
        if tid not in tids or n <= n0:
            continue
        if name == "exit":
            exits[counter.exit_names.get(kind, hex(kind))] += n - n0
        else:
            calls["%s %s" % (name, (MADV if name == "madvise" else FALLOC).get(kind, kind))] += \
                n - n0
    return calls, exits


def grow_by_steps(g, smp, touch, step, maximum, timeout=120):
    """The guest takes memory step by step, the way a workload grows as fast as it is given
    memory: each step is at most `step` MiB and at most what the guest has available less a
    32 MiB margin (a guest without swap that takes more than it has is OOM-killed, and init's
    death panics it); then it waits for two fresh statistics reports and for tidal to catch up
    (status OK, or assigned at maximum)."""
    held = 0
    while held < touch:
        # At maximum nothing more will come and the guest stands still: a smaller margin.
        margin = 8 if smp.latest()["assigned"] >= maximum else 32
        avail = g.meminfo()["MemAvailable"] // 1024 - margin
        n = min(step, touch - held, avail)
        if n >= 4:
            g.cmd("alloc %d" % n, timeout=600)
            held += n
        seen = smp.latest()["stats_count"]
        smp.wait("two statistics reports", lambda s: s["stats_count"] >= seen + 2, 60)
        smp.wait("status OK with %d MiB held" % held,
                 lambda s: s["status"] == "OK" or s["assigned"] >= maximum, timeout)
        if n < 4 and smp.latest()["assigned"] >= maximum:
            raise AssertionError("no room for %d MiB more at maximum" % (touch - held))
    return held


def session_tidal(args, kernel, initrd, log, counter):
    tmp = tempfile.mkdtemp(prefix="tidal-bench-")  # /tmp: 9p cannot hold Unix sockets
    sock = os.path.join(tmp, "ctl.sock")
    mem = "startup=%dM,minimum=%dM,maximum=%dM,buffer=%d" % (
        args.low, args.low, args.high, args.buffer)
    argv = [args.tidal, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", CMDLINE,
            "--memory", mem, "--cpus", str(args.cpus), "--api-socket", sock] + args.tidal_arg
    low, high = args.low * MIB, args.high * MIB
    tol = args.tolerance * MIB
    r = {"config": mem}
    with Guest(argv, log) as g:
        pid = g.proc.pid
        g.wait_ready(timeout=300)
        smp = Sampler(sock)
        try:
            grow_by_steps(g, smp, args.touch, args.step, high)
            s = smp.wait("assigned at maximum", lambda s: s["assigned"] >= high - tol, 60)
            r["assigned_before"] = s["assigned"]
            r["rss_before"] = rss_split_kib(pid)
            r["memtotal_high_kib"] = g.meminfo()["MemTotal"]

            tids = FtraceCounter.tids(pid)
            snap0 = counter.snapshot() if counter else None
            t0 = time.monotonic()
            g.cmd("free all", timeout=300)
            done = smp.wait("assigned down to %d MiB" % args.low,
                            lambda s: s["assigned"] <= low + tol, args.timeout)
            t1 = done["t"]
            snap1 = counter.snapshot() if counter else None
            r["rss_after"] = rss_split_kib(pid)
            r["assigned_after"] = done["assigned"]
            r["shrink_s"] = t1 - t0
            w = smp.window(t0, t1)
            req0 = w[0]["requested"]
            first = next((s for s in w if s["requested"] < req0 or s["balloon"] > w[0]["balloon"]),
                         done)
            r["shrink_first_s"] = first["t"] - t0
            r["shrink_mech_span_s"] = t1 - first["t"]
            r["unplugged"] = w[0]["plugged"] - done["plugged"]
            # The device's own clocks (src/virtio-mem/metrics.h): exact, not polled.
            r["unplug_dev_s"] = (done["unplug_behind_us"] - w[0]["unplug_behind_us"]) / 1e6
            r["unplug_host_s"] = (done["request_us"] - w[0]["request_us"]) / 1e6
            r["unplug_requests"] = done["unplug_requests"] - w[0]["unplug_requests"]
            r["rounds"] = len({s["requested"] for s in w})
            r["balloon_max"] = max(s["balloon"] for s in w)
            # Free page reporting in the same window: the pages a report holds cannot be taken
            # by the guest's virtio-mem driver until the host answers.
            r["reported_in_shrink"] = done["reported"] - w[0]["reported"]
            r["stuck_max"] = max(s["stuck"] for s in w)
            after = [s["demand"] for s in w if s["t"] >= first["t"]] or [0]
            r["demand_range"] = (min(after) // MIB, max(after) // MIB)
            r["path"] = " ".join("%d" % (s["target"] // MIB) for i, s in enumerate(w)
                                 if i == 0 or s["target"] != w[i - 1]["target"])
            if counter:
                r["calls"], r["exits"] = ftrace_delta(counter, snap0, snap1,
                                                      tids | FtraceCounter.tids(pid))
            time.sleep(2)
            r["memtotal_low_kib"] = g.meminfo()["MemTotal"]

            t2 = time.monotonic()
            grow_by_steps(g, smp, args.touch, args.step, high)
            done = smp.wait("assigned back at maximum", lambda s: s["assigned"] >= high - tol,
                            args.timeout)
            r["grow_s"] = done["t"] - t2
            w = smp.window(t2, done["t"])
            r["plugged"] = done["plugged"] - w[0]["plugged"]
            r["plug_busy_s"] = (done["plug_behind_us"] - w[0]["plug_behind_us"]) / 1e6
            r["poll_ms"] = 0
        finally:
            smp.close()
        g.send("poweroff")
        try:
            g.wait_exit(60)
        except AssertionError:
            pass
    return r


def wanted_plug(args, plugged, meminfo, region):
    """What tidal's controller would ask of virtio-mem for this guest (src/vmm/dynmem):
    demand = assigned - MemAvailable (used plus the overhead outside MemTotal), wanted = demand
    x (1 + buffer), rounded up to 2 MiB, clamped to [minimum, maximum]; virtio-mem gets
    wanted - startup."""
    demand = args.low * MIB + plugged - meminfo["MemAvailable"] * 1024
    want = demand * (100 + args.buffer) // 100
    want = (want + 2 * MIB - 1) // (2 * MIB) * (2 * MIB)
    want = min(max(want, args.low * MIB), args.high * MIB)
    return min(want - args.low * MIB, region)


def grow_vmem_by_steps(g, set_requested, plugged_now, args, region):
    """QEMU's virtio-mem guest grown the way tidal's is (grow_by_steps): the same alloc steps;
    after each one requested-size is raised (never lowered) to what tidal's controller would
    want, and the step waits until the device's size reaches it, again while the guest's
    fresh figures want more (tidal waits for status OK). Returns the steps, the requested sizes
    in MiB, the seconds size was behind requested-size, and whether the rule ended below the
    region (tidal ends at maximum)."""
    held = steps = 0
    busy = 0.0
    requested = plugged_now()
    path = [requested // MIB]
    while held < args.touch:
        margin = 8 if requested >= region else 32
        avail = g.meminfo()["MemAvailable"] // 1024 - margin
        n = min(args.step, args.touch - held, avail)
        took = n >= 4 or 0 < n == args.touch - held  # the last few MiB too
        if took:
            g.cmd("alloc %d" % n, timeout=600)
            held += n
            steps += 1
        while True:
            want = wanted_plug(args, plugged_now(), g.meminfo(), region)
            if want <= requested:
                break
            requested = want
            path.append(requested // MIB)
            t = time.monotonic()
            set_requested(requested)
            poll_until("virtio-mem size %d MiB" % (requested // MIB), plugged_now,
                       lambda v: v >= requested, args.timeout)
            busy += time.monotonic() - t
        if not took and requested >= region:
            if args.touch - held > 8:  # QEMU's guest has a little less MemTotal than tidal's
                raise AssertionError("no room for %d MiB more at maximum" % (args.touch - held))
            break
        if not took and want <= requested:
            raise AssertionError("stalled at %d MiB held, %d MiB plugged" %
                                 (held, requested // MIB))
    return {"steps": steps, "path": " ".join("%d" % p for p in path), "busy_s": busy,
            "topped_up": requested < region, "held": held}


def qemu_base(args, kernel, initrd, mem, cmdline):
    return ["qemu-system-x86_64", "-accel", "kvm", "-M", "pc", "-cpu", "host", "-m", mem,
            "-smp", str(args.cpus), "-display", "none", "-nodefaults", "-no-user-config",
            "-serial", "stdio", "-kernel", kernel, "-initrd", initrd, "-append", cmdline]


def poll_until(what, read, pred, timeout):
    """Polls read() every POLL_S until pred(value); returns (seconds, value, poll times)."""
    t0 = time.monotonic()
    polls = []
    while True:
        t = time.monotonic()
        v = read()
        polls.append(time.monotonic() - t)
        if pred(v):
            return time.monotonic() - t0, v, polls
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out after %d s waiting for %s (at %r)" %
                                 (timeout, what, v))
        time.sleep(POLL_S)


def session_qemu(vmm, args, kernel, initrd, log, counter):
    tmp = tempfile.mkdtemp(prefix="tidal-bench-")
    sock = os.path.join(tmp, "qmp.sock")
    low, high = args.low * MIB, args.high * MIB
    region = high - low
    at_boot = region if vmm == "vmem" else 0
    if vmm in VMEM:
        argv = qemu_base(args, kernel, initrd, "%dM,maxmem=%dM,slots=1" % (args.low, 2 * args.high),
                         CMDLINE + " " + HOTPLUG_CMDLINE)
        argv += ["-object", "memory-backend-ram,id=vmem0,size=%dM" % (region // MIB),
                 "-device", "virtio-mem-pci,id=vm0,memdev=vmem0,block-size=2M,"
                 "requested-size=%dM" % (at_boot // MIB)]
        # QEMU's log trace backend, with wall-clock timestamps: when each unplug request came
        # and each answer went, to time the driver as tidal's device clock does.
        argv += ["-msg", "timestamp=on", "-trace", "virtio_mem_unplug_request",
                 "-trace", "virtio_mem_send_response"]
        path = "/machine/peripheral/vm0"

        def set_size(q, n):
            q.execute("qom-set", path=path, property="requested-size", value=n)

        def guest_size(q):  # what the guest can use, as tidal's assigned
            return low + q.execute("qom-get", path=path, property="size")
    else:
        at_boot = region
        argv = qemu_base(args, kernel, initrd, "%dM" % args.high, CMDLINE)
        argv += ["-device", "virtio-balloon-pci"]

        def set_size(q, n):
            q.execute("balloon", value=low + n)

        def guest_size(q):
            return q.execute("query-balloon")["actual"]
    argv += ["-qmp", "unix:%s,server=on,wait=off" % sock]
    r = {"config": " ".join(argv[argv.index("-m"):argv.index("-m") + 2] +
                            [a for a in argv if a.startswith(("memory-backend", "virtio-"))])}
    with Guest(argv, log) as g:
        pid = g.proc.pid
        g.wait_ready(timeout=300)
        q = Qmp(sock, args.high)
        poll_until("the guest at %d MiB" % ((low + at_boot) // MIB), lambda: guest_size(q),
                   lambda v: v == low + at_boot, 120)
        if vmm == "vmem-steps":
            st = grow_vmem_by_steps(g, lambda n: set_size(q, n), lambda: guest_size(q) - low,
                                    args, region)
            r["steps"], r["step_path"], r["topped_up"] = st["steps"], st["path"], st["topped_up"]
            r["held"] = st["held"]
            if st["topped_up"]:
                set_size(q, region)
                poll_until("the guest at %d MiB" % args.high, lambda: guest_size(q),
                           lambda v: v == high, args.timeout)
        else:
            g.cmd("alloc %d" % args.touch, timeout=600)
        r["memtotal_high_kib"] = g.meminfo()["MemTotal"]
        g.cmd("free all", timeout=300)
        r["assigned_before"] = guest_size(q)
        r["rss_before"] = rss_split_kib(pid)
        tids = FtraceCounter.tids(pid)
        snap0 = counter.snapshot() if counter else None
        t0 = time.monotonic()
        set_size(q, 0)
        asked = time.time()  # once QEMU has answered: it set the size before it did
        try:
            _, v, polls = poll_until("shrink to %d MiB" % args.low, lambda: guest_size(q),
                                     lambda v: v <= low, args.timeout)
            r["shrink_s"] = time.monotonic() - t0
            if vmm in VMEM:
                r["unplug_dev_s"], r["unplug_requests"] = qemu_unplug_trace(g, asked,
                                                                            time.time())
        except AssertionError as e:  # e.g. virtio-mem blocks Linux cannot unplug
            print("%s: %s" % (LABEL[vmm], e), flush=True)
            v, polls = guest_size(q), []
            r["shrink_s"] = float("nan")
        snap1 = counter.snapshot() if counter else None
        r["rss_after"] = rss_split_kib(pid)
        r["assigned_after"] = v
        r["unplugged"] = r["assigned_before"] - v
        r["poll_ms"] = 1000 * median(polls)
        if counter:
            r["calls"], r["exits"] = ftrace_delta(counter, snap0, snap1,
                                                  tids | FtraceCounter.tids(pid))
        time.sleep(2)
        r["memtotal_low_kib"] = g.meminfo()["MemTotal"]
        t2 = time.monotonic()
        if vmm == "vmem-steps":  # as tidal's grow: the guest allocating in the same steps
            try:
                st = grow_vmem_by_steps(g, lambda n: set_size(q, n),
                                        lambda: guest_size(q) - low, args, region)
                if st["topped_up"]:
                    busy = time.monotonic()
                    set_size(q, region)
                    poll_until("grow to %d MiB" % args.high, lambda: guest_size(q),
                               lambda v: v >= high, args.timeout)
                    st["busy_s"] += time.monotonic() - busy
                v = guest_size(q)
                r["grow_s"] = time.monotonic() - t2
                r["plug_busy_s"] = st["busy_s"]
            except (AssertionError, GuestError) as e:
                # Seen in the nested rig: the guest reset while re-plugging and allocating.
                # The shrink, measured before, still stands.
                print("%s: grow failed: %s" % (LABEL[vmm], str(e)[:300]), flush=True)
                r["grow_error"] = str(e).splitlines()[0][:120]
                v = r["assigned_after"]
                r["grow_s"] = r["plug_busy_s"] = float("nan")
        else:
            set_size(q, region)
            _, v, _ = poll_until("grow to %d MiB" % args.high, lambda: guest_size(q),
                                 lambda v: v >= high, args.timeout)
            r["grow_s"] = time.monotonic() - t2
            r["plug_busy_s"] = r["grow_s"]
        r["plugged"] = v - r["assigned_after"]
        q.close()
        g.send("poweroff")
        try:
            g.wait_exit(60)
        except AssertionError:
            pass
    return r


TRACE = re.compile(r"^\d+@(\d+\.\d+):(virtio_mem_unplug_request|virtio_mem_send_response)\b",
                   re.M)


def qemu_unplug_trace(g, start, end):
    """From QEMU's trace on stderr: (seconds from start to the last answer before end, unplug
    requests in between)."""
    last, requests = start, 0
    for m in TRACE.finditer(g.stderr()):
        t = float(m.group(1))
        if start <= t <= end:
            if m.group(2) == "virtio_mem_unplug_request":
                requests += 1
            else:
                last = t
    return last - start, requests


def gibps(nbytes, s):
    return nbytes / float(GIB) / s if s and s == s and s > 0 else float("nan")


def emit_run(i, vmm, r):
    label = "run %d %-33s" % (i, LABEL[vmm])
    emit("%s shrink %d -> %d MiB in %.2f s (%.2f GiB/s); VMM RSS %.0f -> %.0f MiB, guest-RAM "
         "RSS %.0f -> %.0f MiB; MemTotal %.0f -> %.0f MiB" % (
             label, r["assigned_before"] // MIB, r["assigned_after"] // MIB, r["shrink_s"],
             gibps(r["unplugged"], r["shrink_s"]), r["rss_before"][0] / 1024.0,
             r["rss_after"][0] / 1024.0, r["rss_before"][1] / 1024.0, r["rss_after"][1] / 1024.0,
             r["memtotal_high_kib"] / 1024.0, r["memtotal_low_kib"] / 1024.0))
    if vmm == "tidal":
        emit("%s shrink: first unplug request %.2f s after free, then %.2f s to done; "
             "virtio-mem behind its request %.3f s (device clock) for %d MiB unplugged in %d "
             "requests (%.2f GiB/s), of which the host %.3f s; targets %s MiB (demand meanwhile "
             "%d-%d MiB); balloon used up to %d MiB, stuck up to %d MiB; free page reporting "
             "meanwhile %d MiB" % (
                 label, r["shrink_first_s"], r["shrink_mech_span_s"], r["unplug_dev_s"],
                 r["unplugged"] // MIB, r["unplug_requests"],
                 gibps(r["unplugged"], r["unplug_dev_s"]), r["unplug_host_s"], r["path"],
                 r["demand_range"][0], r["demand_range"][1],
                 r["balloon_max"] // MIB, r["stuck_max"] // MIB,
                 r.get("reported_in_shrink", 0) // MIB))
        emit("%s grow (guest allocating in steps): %.2f s; virtio-mem behind its request "
             "%.2f s (device clock) for %d MiB plugged (%.2f GiB/s)" % (
                 label, r["grow_s"], r["plug_busy_s"], r["plugged"] // MIB,
                 gibps(r["plugged"], r["plug_busy_s"])))
    if vmm in VMEM and "unplug_dev_s" in r:
        emit("%s shrink: virtio-mem behind its request %.3f s (QEMU's trace) for %d MiB "
             "unplugged in %d requests (%.2f GiB/s)" % (
                 label, r["unplug_dev_s"], r["unplugged"] // MIB, r["unplug_requests"],
                 gibps(r["unplugged"], r["unplug_dev_s"])))
    if vmm == "vmem-steps":
        emit("%s grown from boot in %d alloc steps to %d MiB held, requested-size %s MiB%s" % (
            label, r["steps"], r["held"], r["step_path"],
            ", then the rest of the region" if r["topped_up"] else ""))
        if "grow_error" in r:
            emit("%s grow (guest allocating in steps) FAILED: %s" % (label, r["grow_error"]))
        emit("%s grow (guest allocating in steps): %.2f s; virtio-mem behind its request "
             "%.2f s for %d MiB plugged (%.2f GiB/s); poll %.0f ms" % (
                 label, r["grow_s"], r["plug_busy_s"], r["plugged"] // MIB,
                 gibps(r["plugged"], r["plug_busy_s"]), r["poll_ms"]))
    elif vmm != "tidal":
        emit("%s grow %d MiB: %.2f s (%.2f GiB/s); poll %.0f ms" % (
            label, r["plugged"] // MIB, r["grow_s"], gibps(r["plugged"], r["grow_s"]),
            r["poll_ms"]))
    if "calls" in r:
        emit("%s shrink: discard syscalls %d (%s); KVM exits %d (%s)" % (
            label, sum(r["calls"].values()),
            ", ".join("%s: %d" % kv for kv in sorted(r["calls"].items())) or "none",
            sum(r["exits"].values()),
            ", ".join("%s %d" % kv for kv in r["exits"].most_common(5)) or "-"))


def run(args, kernel, initrd):
    log = os.path.join(args.build_dir, "bench-dynmem.log")
    counter = None
    try:
        counter = FtraceCounter()
    except OSError as e:
        print("no ftrace histogram triggers (%s): syscalls not counted" % e, flush=True)
    timed = {v: [] for v in args.vmms}
    try:
        for i in range(args.runs):
            # Interleaved, so drift in the rig hits all alike, and in turns reversed: the first
            # session in a fresh L1 is the slow one, whichever VMM it is.
            for vmm in (args.vmms if i % 2 == 0 else args.vmms[::-1]):
                if vmm == "tidal":
                    r = session_tidal(args, kernel, initrd, log, counter)
                else:
                    r = session_qemu(vmm, args, kernel, initrd, log, counter)
                timed[vmm].append(r)
                emit_run(i + 1, vmm, r)
    finally:
        if counter:
            counter.close()

    def med(vmm, f):
        return median([f(r) for r in timed[vmm]])

    nan = float("nan")
    cols = args.vmms
    rows = [
        ("shrink %d -> %d MiB, end to end (s)" % (args.high, args.low),
         lambda v: med(v, lambda r: r["shrink_s"]), "%.2f"),
        ("of which from the first unplug request (s)",
         lambda v: med(v, lambda r: r["shrink_mech_span_s"]) if v == "tidal" else nan, "%.2f"),
        ("virtio-mem behind its request, unplugging (s; tidal: device clock, QEMU: its trace)",
         lambda v: med(v, lambda r: r.get("unplug_dev_s", nan)), "%.3f"),
        ("of which the host carrying out requests (s)",
         lambda v: med(v, lambda r: r["unplug_host_s"]) if v == "tidal" else nan, "%.3f"),
        ("unplug requests", lambda v: med(v, lambda r: r.get("unplug_requests", nan)), "%.0f"),
        ("reclaim rate, end to end (GiB/s)",
         lambda v: med(v, lambda r: gibps(r["unplugged"], r["shrink_s"])), "%.2f"),
        ("reclaim rate, mechanism (GiB/s)",
         lambda v: med(v, lambda r: gibps(r["unplugged"], r.get("unplug_dev_s", r["shrink_s"]))),
         "%.2f"),
        ("guest size after shrink (MiB)",
         lambda v: med(v, lambda r: r["assigned_after"] / MIB), "%.0f"),
        ("VMM RSS before / after shrink (MiB)",
         lambda v: (med(v, lambda r: r["rss_before"][0] / 1024.0),
                    med(v, lambda r: r["rss_after"][0] / 1024.0)), "%.0f / %.0f"),
        ("guest-RAM RSS after shrink (MiB)",
         lambda v: med(v, lambda r: r["rss_after"][1] / 1024.0), "%.0f"),
    ]
    if all("calls" in r for v in cols for r in timed[v]):
        rows += [("discard syscalls during shrink",
                  lambda v: med(v, lambda r: sum(r["calls"].values())), "%d"),
                 ("KVM exits during shrink",
                  lambda v: med(v, lambda r: sum(r["exits"].values())), "%d")]
    rows += [
        ("grow %d -> %d MiB (s; tidal and grown in steps: guest allocating)" %
         (args.low, args.high), lambda v: med(v, lambda r: r["grow_s"]), "%.2f"),
        ("plug rate, mechanism (GiB/s)",
         lambda v: med(v, lambda r: gibps(r["plugged"], r["plug_busy_s"])), "%.2f"),
    ]
    emit("dynamic memory: touch %d MiB, free, shrink %d -> %d MiB, grow back; %d vCPU, median "
         "of %d runs, polled every %d ms" % (args.touch, args.high, args.low, args.cpus,
                                             args.runs, POLL_S * 1000))
    emit("host transparent huge pages: shmem_enabled=%s (tidal's memfd), enabled=%s "
         "(QEMU's anonymous RAM)" % thp_settings())
    for v in cols:
        emit("%s: %s" % (LABEL[v], timed[v][0]["config"]))

    def fmt(f, x):
        if isinstance(x, tuple):
            return f % x if all(y == y for y in x) else "-"
        return f % x if x == x else "-"
    emit("| | %s |" % " | ".join(LABEL[v] for v in cols))
    emit("|---|" + "---|" * len(cols))
    for name, fn, f in rows:
        emit("| %s | %s |" % (name, " | ".join(fmt(f, fn(v)) for v in cols)))
    if "tidal" in cols:
        t_e2e = med("tidal", lambda r: r["shrink_s"])
        t_mech = med("tidal", lambda r: r["unplug_dev_s"])
        note = {"vmem-steps": " [same growth history: the comparison for the target]",
                "vmem": " [QEMU's guest had all memory plugged at boot]"}
        for v in cols:
            if v == "tidal":
                continue
            q = med(v, lambda r: r["shrink_s"])
            q_mech = med(v, lambda r: r.get("unplug_dev_s", r["shrink_s"]))
            emit("shrink speed, tidal vs %s: end to end %.2fx, mechanism %.2fx (>1: tidal "
                 "faster)%s" % (LABEL[v], q / t_e2e, q_mech / t_mech, note.get(v, "")))
            if v in VMEM:
                pairs = ["%.2f" % (a.get("unplug_dev_s", nan) / b["unplug_dev_s"])
                         for a, b in zip(timed[v], timed["tidal"])]
                emit("  mechanism run by run: %s" % " ".join(pairs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tidal", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--low", type=int, default=256, help="MiB: startup/minimum, shrink target")
    ap.add_argument("--high", type=int, default=1024, help="MiB: maximum, grow target")
    ap.add_argument("--touch", type=int, default=880,
                    help="MiB the guest touches then frees (900 does not fit a 1 GiB tidal guest "
                    "grown from 256 MiB: it holds at most ~897 MiB)")
    ap.add_argument("--step", type=int, default=48,
                    help="MiB per alloc step under tidal, at most (see grow_by_steps)")
    ap.add_argument("--buffer", type=int, default=30, help="tidal's buffer, percent")
    ap.add_argument("--tolerance", type=int, default=16,
                    help="MiB: a target counts as reached within this (the controller's dead "
                    "band at these sizes)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per shrink or grow")
    ap.add_argument("--tidal-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for tidal (repeat), e.g. "
                    "--tidal-arg=--balloon --tidal-arg=free-page-reporting=off")
    ap.add_argument("--vmms", default=",".join(VMMS), help="subset of %s" % ",".join(VMMS))
    add_rig_args(ap)
    args = ap.parse_args()
    args.vmms = args.vmms.split(",")
    if set(args.vmms) - set(VMMS):
        ap.error("--vmms: one or more of %s" % ",".join(VMMS))
    args.tidal = os.path.abspath(args.tidal)
    args.build_dir = os.path.abspath(args.build_dir)

    return main_here_or_in_rig(__file__, args, run, "bench-dynmem-rig.log")

if __name__ == "__main__":
    sys.exit(main())
