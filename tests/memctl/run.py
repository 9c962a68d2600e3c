#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Integration tests of tidald (docs/tidald.md): the real daemon over its real socket with
dozens of simulated VMM clients speaking docs/memctl-protocol.md. No KVM needed.

    run.py [--tidalctl PATH] TIDALD    run every case (with PATH, many_clients runs the real
                                       tidalctl against the daemon too)
    run.py [--tidalctl PATH] TIDALD CASE...  run the named cases
    run.py --client SOCK NAME STARTUP  one simulated VM until killed (used by the cases)
    run.py --admin SOCK JSON           one admin request, prints the reply (run as another uid)

Every wait polls with a deadline; nothing asserts on elapsed time.
"""
import errno
import grp
import json
import os
import re
import resource
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

MiB = 1 << 20
GiB = 1 << 30
DEADLINE = 20.0  # seconds a condition may take before the case fails
LINE_MAX = 16 * 1024


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Client:
    """One simulated VMM: registers, reports, and obeys targets by moving its assigned memory
    toward the grant over its next reports (down in steps, as a balloon would; up at once)."""

    SHRINK_STEP = 128 * MiB

    def __init__(self, path, name, startup=512 * MiB, minimum=256 * MiB, maximum=4 * GiB,
                 buffer=20, weight=5000, demand=None, reconnect=False):
        self.path, self.name = path, name
        self.settings = dict(startup_bytes=startup, minimum_bytes=minimum,
                             maximum_bytes=maximum, buffer=buffer, weight=weight)
        self.demand = demand
        self.reconnect = reconnect
        self.state = "new"  # new, waiting, running, refused, closed
        self.assigned = 0
        self.grant = 0
        self.targets = []
        self.messages = []  # every message received, in order
        self.sock = None
        self.buf = b""
        self.last_report = 0.0
        # Smart paging after a partial restart grant: the guest boots with its startup memory,
        # the grant stays resident, the gap is paged; it ends once the balloon brings the guest
        # within the grant (balloon_up False: the guest's driver is not up yet).
        self.paging = False
        self.balloon_up = True
        self.paging_ms = 0
        self.stuck = False  # a guest that cannot give memory back: it ignores lower targets
        self.connect()
        self.register(running=False)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
        self.sock.setblocking(False)
        self.buf = b""

    def send(self, obj):
        self.send_raw((json.dumps(obj) + "\n").encode())

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, BlockingIOError):
            self.lost()

    def register(self, running):
        msg = dict(msg="register", name=self.name, uuid="", running=running, **self.settings)
        if running:
            msg.update(assigned_bytes=self.assigned, grant_bytes=self.grant)
        self.state = "running" if running else "waiting"
        self.send(msg)

    def lost(self):
        if self.sock:
            self.sock.close()
        self.sock = None
        if self.state != "refused":
            self.state = "closed"

    def try_reconnect(self):
        try:
            self.connect()
        except OSError:
            self.sock = None
            return
        self.register(running=True)

    def handle(self, m):
        self.messages.append(m)
        if m["msg"] == "admitted":
            self.state, self.grant, self.assigned = "running", m["grant_bytes"], m["grant_bytes"]
            if self.grant < self.settings["startup_bytes"]:
                self.assigned, self.paging = self.settings["startup_bytes"], True
        elif m["msg"] == "refused":
            self.state = "refused"
        elif m["msg"] == "target":
            self.grant = m["target_bytes"]
            self.targets.append(m["target_bytes"])

    def pump(self):
        if not self.sock:
            if self.reconnect and self.state == "closed":
                self.try_reconnect()
            return
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.lost()
                return
            self.buf += data
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.handle(json.loads(line))

    def restart(self):
        """The guest reboots: it asks for its startup memory again."""
        self.state = "waiting"
        self.send(dict(msg="restart"))

    def report(self):
        if self.state != "running" or not self.sock:
            return
        if self.paging and not self.balloon_up:
            self.paging_ms += 100
        elif self.assigned > self.grant and not self.stuck:
            self.assigned = max(self.grant, self.assigned - self.SHRINK_STEP)
        elif self.assigned > self.grant:
            pass
        else:
            self.assigned = self.grant
        # A guest booting under smart paging has no statistics until its balloon driver is up.
        demand = None if self.paging and not self.balloon_up else self.demand
        status = "OK"
        if demand is not None:
            want = demand * (100 + self.settings["buffer"]) // 100
            status = "Warning" if self.assigned < demand else "Low" if self.assigned < want else "OK"
        self.send(dict(msg="report", assigned_bytes=self.assigned, demand_bytes=demand,
                       fresh=demand is not None, pressure=0, status=status, balloon_bytes=0,
                       vmem_plugged_bytes=0,
                       smart_paging=self.paging_report()))

    def paging_report(self):
        if self.paging and self.assigned <= self.grant:
            self.paging = False  # the balloon brought the guest within its grant
        gap = self.settings["startup_bytes"] - self.grant if self.paging else 0
        return dict(active=self.paging, file_bytes=max(gap, 0), pages_in=7 if self.paging else 0,
                    pages_out=gap // 4096 if self.paging else 0,
                    active_ms=self.paging_ms if self.paging else 0)

    def step(self, now):
        self.pump()
        if now - self.last_report >= 0.1:
            self.report()
            self.last_report = now

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None


def run_until(cond, clients=(), what="condition", deadline=DEADLINE):
    """Steps the clients until cond() holds; fails after the deadline."""
    end = time.monotonic() + deadline
    while True:
        now = time.monotonic()
        for c in clients:
            c.step(now)
        if cond():
            return
        if now > end:
            raise Failure("timed out waiting for " + what)
        time.sleep(0.02)


def settle(clients, quiet=1.5, deadline=DEADLINE):
    """Steps until no client got a target for `quiet` seconds (the loop converged)."""
    state = {"count": -1, "since": time.monotonic()}

    def quiet_now():
        count = sum(len(c.targets) for c in clients) + sum(c.assigned != c.grant for c in clients)
        if count != state["count"]:
            state.update(count=count, since=time.monotonic())
        return time.monotonic() - state["since"] >= quiet

    run_until(quiet_now, clients, "the grants to settle", deadline)


def admin(path, request, raw=False):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(path)
        s.sendall(request if raw else (json.dumps(request) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            data = s.recv(1 << 20)
            if not data:
                break
            buf += data
        return json.loads(buf.split(b"\n")[0]) if buf else None


def vms_by_name(path):
    reply = admin(path, {"cmd": "list"})
    check(reply["ok"], "list failed: %r" % reply)
    return {v["name"]: v for v in reply["vms"]}, reply["host"]


class Daemon:
    def __init__(self, tidald, workdir, host_memory="4G", extra=(), nofile=None):
        self.tidald, self.host_memory, self.extra = tidald, host_memory, list(extra)
        self.nofile = nofile  # a descriptor limit for the daemon
        self.path = os.path.join(workdir, "tidald.sock")
        self.log = open(os.path.join(workdir, "tidald.log"), "ab")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.tidald, "--socket", self.path, "--host-memory",
                                      self.host_memory, "-v"] + self.extra,
                                     stdout=self.log, stderr=self.log,
                                     preexec_fn=self._limits)
        end = time.monotonic() + DEADLINE
        while True:
            check(self.proc.poll() is None, "tidald exited at start: %s" % self.proc.returncode)
            try:
                if admin(self.path, {"cmd": "list"})["ok"]:
                    return
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            check(time.monotonic() < end, "tidald did not start listening")
            time.sleep(0.02)

    def _limits(self):
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def alive(self):
        return self.proc.poll() is None

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise Failure("tidald did not exit on SIGTERM")
            check(rc == 0, "tidald exited with %d on SIGTERM" % rc)
        self.log.close()


# The cases. Each gets a fresh daemon in its own directory.

def case_register_and_list(d):
    clients = [Client(d.path, "vm-%02d" % i, startup=64 * MiB, minimum=32 * MiB,
                      maximum=512 * MiB, demand=48 * MiB) for i in range(40)]
    run_until(lambda: all(c.state == "running" for c in clients), clients, "40 admissions")
    vms, host = vms_by_name(d.path)
    check(len(vms) == 40, "list shows %d VMs, not 40" % len(vms))
    v = vms["vm-07"]
    check(v["state"] == "running" and v["uid"] == os.getuid() and v["pid"] == os.getpid(),
          "list entry: %r" % v)
    check(v["startup_bytes"] == 64 * MiB and v["minimum_bytes"] == 32 * MiB and
          v["maximum_bytes"] == 512 * MiB and v["weight"] == 5000 and v["buffer"] == 20,
          "settings in list: %r" % v)
    run_until(lambda: vms_by_name(d.path)[0]["vm-07"]["demand_bytes"] == 48 * MiB, clients,
              "the demand to show")
    check(host["budget_bytes"] == 4 * GiB, "budget %r" % host)
    check(host["granted_bytes"] == sum(v["grant_bytes"] for v in vms.values()),
          "granted is not the sum of the grants")
    # Duplicate names are refused.
    dup = Client(d.path, "vm-07", startup=64 * MiB, minimum=32 * MiB, maximum=512 * MiB)
    run_until(lambda: dup.state == "refused", [dup], "the duplicate to be refused")
    check("already registered" in dup.messages[-1]["error"], "duplicate: %r" % dup.messages)
    run_until(lambda: dup.sock is None, [dup], "the daemon to hang up on the duplicate")
    check(len(vms_by_name(d.path)[0]) == 40, "the duplicate was registered")
    for c in clients:
        c.close()
    run_until(lambda: not vms_by_name(d.path)[0], [], "closed VMs to leave the list")


def case_admission_refused(d):
    # Budget 1 GiB, held by two light VMs of 512 MiB that may shrink to 384 MiB: 256 MiB can
    # be found for a heavier newcomer that needs 512.
    held = [Client(d.path, "a%d" % i, startup=384 * MiB, minimum=384 * MiB, maximum=1 * GiB,
                   weight=1000, demand=600 * MiB) for i in range(2)]
    run_until(lambda: all(c.state == "running" for c in held), held, "two admissions")
    settle(held)
    big = Client(d.path, "vm4", startup=512 * MiB, minimum=256 * MiB, maximum=1 * GiB,
                 weight=5000)
    run_until(lambda: big.state == "refused", held + [big], "the refusal")
    m = big.messages[-1]
    check(m["msg"] == "refused" and m["needed_bytes"] == 512 * MiB, "refusal: %r" % m)
    check(m["found_bytes"] < 512 * MiB, "found %d is not below needed" % m["found_bytes"])
    check(m["found_bytes"] == 256 * MiB, "found %d, not 256 MiB" % m["found_bytes"])
    found = "256 MiB"
    check("cannot admit vm4" in m["error"] and "512 MiB" in m["error"] and
          "could be found" in m["error"] and found in m["error"],
          "the message does not say needed and found: %r" % m["error"])
    check("vm4" not in vms_by_name(d.path)[0], "a refused VM stays in the list")
    grants = {c.name: c.grant for c in held}
    check(all(g == 512 * MiB for g in grants.values()), "a refusal moved grants: %r" % grants)


def case_squeeze_lower_weights(d):
    # Budget 2 GiB, filled by three light VMs that want more than they get.
    light = [Client(d.path, "light%d" % i, startup=512 * MiB, minimum=256 * MiB,
                    maximum=2 * GiB, weight=1000, demand=600 * MiB) for i in range(3)]
    run_until(lambda: all(c.state == "running" for c in light), light, "light admissions")
    settle(light)
    before = {c.name: c.grant for c in light}
    heavy = Client(d.path, "heavy", startup=512 * MiB, minimum=256 * MiB, maximum=2 * GiB,
                   weight=9000, demand=400 * MiB)
    run_until(lambda: heavy.state in ("running", "refused"), light + [heavy],
              "the heavy VM's admission")
    check(heavy.state == "running", "heavy refused: %r" % heavy.messages)
    shrunk = [c.name for c in light if c.grant < before[c.name]]
    check(shrunk, "no light VM was told to shrink: %r -> %r" %
          (before, {c.name: c.grant for c in light}))
    vms, host = vms_by_name(d.path)
    reserved = sum(max(v["grant_bytes"], v["assigned_bytes"]) for v in vms.values())
    check(reserved <= host["budget_bytes"], "overcommitted: %d > %d" %
          (reserved, host["budget_bytes"]))
    check(all(v["grant_bytes"] >= v["minimum_bytes"] for v in vms.values()), "below minimum")


def case_spike_takes_from_lightest(d):
    # Budget 3 GiB; each wants 960 MiB (800 + 20 %): 2880 MiB, all fit.
    weights = {"light": 1000, "medium": 5000, "heavy": 9000}
    cs = {n: Client(d.path, n, startup=512 * MiB, minimum=256 * MiB, maximum=4 * GiB,
                    weight=w, demand=800 * MiB) for n, w in weights.items()}
    clients = list(cs.values())
    run_until(lambda: all(c.state == "running" for c in clients), clients, "admissions")
    settle(clients)
    before = {n: c.grant for n, c in cs.items()}
    check(all(g >= 900 * MiB for g in before.values()), "not converged: %r" % before)
    # The heavy VM now needs 1260 MiB: 300 more, 192 of them free, the rest from a buffer.
    cs["heavy"].demand = 1050 * MiB
    run_until(lambda: cs["heavy"].grant >= before["heavy"] + 250 * MiB, clients,
              "the heavy VM to grow")
    settle(clients)
    after = {n: c.grant for n, c in cs.items()}
    check(after["light"] < before["light"], "the lightest did not give: %r -> %r" %
          (before, after))
    check(after["medium"] >= before["medium"] - 32 * MiB,
          "the medium VM lost memory before the lightest ran out: %r -> %r" % (before, after))
    check(before["light"] - after["light"] >= before["medium"] - after["medium"],
          "medium gave more than light: %r -> %r" % (before, after))


def case_kill_client_frees_grant(d):
    keep = Client(d.path, "keeper", startup=256 * MiB, minimum=128 * MiB, maximum=1 * GiB,
                  demand=200 * MiB)
    proc = subprocess.Popen([sys.executable, __file__, "--client", d.path, "victim",
                             str(1 * GiB)])
    try:
        run_until(lambda: vms_by_name(d.path)[0].get("victim", {}).get("state") == "running",
                  [keep], "the victim's admission")
        _, host = vms_by_name(d.path)
        check(host["granted_bytes"] >= 1 * GiB, "victim's grant missing: %r" % host)
        proc.kill()
        proc.wait()
        run_until(lambda: "victim" not in vms_by_name(d.path)[0], [keep],
                  "the killed VM to leave")
        vms, host = vms_by_name(d.path)
        check(host["granted_bytes"] == vms["keeper"]["grant_bytes"],
              "the killed VM's grant is still counted: %r" % host)
    finally:
        proc.kill()
        proc.wait()


def case_daemon_restart(d):
    clients = [Client(d.path, "r%02d" % i, startup=256 * MiB, minimum=128 * MiB,
                      maximum=1 * GiB, weight=1000 + 800 * i, demand=(200 + 40 * i) * MiB,
                      reconnect=True) for i in range(12)]
    run_until(lambda: all(c.state == "running" for c in clients), clients, "admissions")
    settle(clients)
    before = {n: v["grant_bytes"] for n, v in vms_by_name(d.path)[0].items()}
    d.kill9()
    run_until(lambda: all(c.state == "closed" for c in clients), clients,
              "the clients to see the daemon go")
    check(all(c.assigned == before[c.name] for c in clients), "clients lost memory")
    d.start()
    run_until(lambda: len(vms_by_name(d.path)[0]) == 12, clients, "12 VMs to re-register")
    after = {n: v["grant_bytes"] for n, v in vms_by_name(d.path)[0].items()}
    check(after == before, "grants after the restart differ: %r != %r" % (before, after))
    settle(clients)
    after = {n: v["grant_bytes"] for n, v in vms_by_name(d.path)[0].items()}
    check(after == before, "grants moved after the restart: %r != %r" % (before, after))


def case_other_uid_cannot_set(d):
    st = os.stat(d.path)
    check(st.st_mode & 0o777 == 0o660, "socket mode %o, not 660" % (st.st_mode & 0o777))
    # run_case gave --socket-group nogroup (root) or the caller's own group
    want_gid = grp.getgrnam("nogroup").gr_gid if os.getuid() == 0 else os.getgid()
    check(st.st_gid == want_gid, "socket group %d, not %d" % (st.st_gid, want_gid))
    if os.getuid() != 0:
        print("  SKIP: the other-uid part needs root (setpriv to user nobody)")
        return
    vm = Client(d.path, "owned", startup=256 * MiB, minimum=128 * MiB, maximum=1 * GiB,
                demand=100 * MiB)
    run_until(lambda: vm.state == "running", [vm], "admission")
    req = json.dumps({"cmd": "set", "name": "owned", "weight": 1})
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, __file__, "--admin", d.path, req],
                         capture_output=True, text=True, timeout=DEADLINE)
    check(out.returncode == 0, "admin as nobody failed: %s" % out.stderr)
    reply = json.loads(out.stdout)
    check(reply["ok"] is False and "permission denied" in reply["error"],
          "nobody changed root's VM: %r" % reply)
    check(vms_by_name(d.path)[0]["owned"]["weight"] == 5000, "the weight changed")
    # Its owner (root) may; the VM is told.
    reply = admin(d.path, {"cmd": "set", "name": "owned", "weight": 7000, "buffer": 50})
    check(reply["ok"] and reply["vm"]["weight"] == 7000 and reply["vm"]["buffer"] == 50,
          "owner's set: %r" % reply)
    run_until(lambda: any(m["msg"] == "settings" for m in vm.messages), [vm],
              "the settings message")
    m = [m for m in vm.messages if m["msg"] == "settings"][-1]
    check(m["weight"] == 7000 and m["buffer"] == 50, "settings sent: %r" % m)
    # The runtime rules hold: minimum may not be raised.
    reply = admin(d.path, {"cmd": "set", "name": "owned", "minimum_bytes": 256 * MiB})
    check(reply["ok"] is False and "minimum" in reply["error"], "raised minimum: %r" % reply)


def expect_error_and_close(path, payload, what):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(path)
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            buf += data
        lines = [json.loads(l) for l in buf.split(b"\n") if l]
        check(lines, "%s: no answer" % what)
        last = lines[-1]
        check(last.get("msg") == "error" or last.get("ok") is False,
              "%s: answer %r is not an error" % (what, last))
        return last


def case_malformed_input(d):
    reg = json.dumps(dict(msg="register", name="m1", uuid="", startup_bytes=256 * MiB,
                          minimum_bytes=128 * MiB, maximum_bytes=1 * GiB, buffer=20,
                          weight=5000, running=False)) + "\n"
    cases = [
        (b"not json\n", "not JSON"),
        (b"[1,2,3]\n", "not an object"),
        (b"{\"msg\":\"report\",\"assigned_bytes\":1}\n", "report before register"),
        (b"{\"msg\":\"target\",\"target_bytes\":1}\n", "a daemon message from a VM"),
        (b"{\"msg\":\"register\",\"name\":\"../etc\"}\n", "bad name"),
        (reg.replace("268435456", "-1").encode(), "negative number"),
        (reg.replace("\"buffer\": 20", "\"buffer\": 1").encode(), "bad settings"),
        (reg.encode() + reg.encode(), "register twice"),
        (b"{\"msg\":\"register\"," + b" " * (LINE_MAX + 10) + b"}\n", "an oversized line"),
        (b"x" * 100000, "a line that never ends"),
        (b"{\"cmd\":\"list\"}\nnot json\n", "admin: not JSON"),
        (b"{\"cmd\":\"reboot-the-host\"}\n", "admin: unknown command"),
        (b"\x00\xff\xfe garbage\n", "binary garbage"),
    ]
    for payload, what in cases:
        err = expect_error_and_close(d.path, payload, what)
        check(d.alive(), "tidald died on %s" % what)
    check("longer than" in expect_error_and_close(d.path, b"{" + b" " * 20000, "long")["error"],
          "the oversized line's error does not say so")
    # Admin errors that are not protocol violations keep the connection.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(d.path)
        f = s.makefile("rwb")
        f.write(b"{\"cmd\":\"set\",\"name\":\"nosuchvm\",\"weight\":1}\n{\"cmd\":\"list\"}\n")
        f.flush()
        first, second = json.loads(f.readline()), json.loads(f.readline())
        check(first["ok"] is False and "no VM" in first["error"], "set unknown: %r" % first)
        check(second["ok"] is True, "list after a refused set: %r" % second)
    check(admin(d.path, {"cmd": "list"})["ok"], "tidald does not answer after bad input")


def case_hung_client(d):
    clients = [Client(d.path, "h%02d" % i, startup=64 * MiB, minimum=32 * MiB,
                      maximum=256 * MiB, demand=40 * MiB) for i in range(30)]
    run_until(lambda: all(c.state == "running" for c in clients), clients, "admissions")
    # An admin that asks and asks but never reads: its replies pile up past the bound.
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.connect(d.path)
    hung.setblocking(False)
    sent = 0
    request = b"{\"cmd\":\"list\"}\n" * 64
    end = time.monotonic() + DEADLINE
    dropped = False
    while not dropped:
        check(time.monotonic() < end, "the hung client was never dropped")
        try:
            sent += hung.send(request)
        except BlockingIOError:
            select.select([], [hung], [], 0.05)
        except (BrokenPipeError, ConnectionResetError):
            dropped = True
        # Meanwhile everyone else is served.
        check(admin(d.path, {"cmd": "list"})["ok"], "the daemon stalled")
        for c in clients:
            c.step(time.monotonic())
    hung.close()
    # A connection that never says anything is dropped too (after 10 s).
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(d.path)
    silent.setblocking(False)

    def silent_closed():
        try:
            return silent.recv(1) == b""
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
    run_until(silent_closed, clients, "the silent connection to be dropped", 30)
    silent.close()
    check(all(c.state == "running" for c in clients), "a VM was dropped")


def case_out_of_descriptors(d):
    """With its descriptors used up (limit 32), tidald neither spins on the readable listening
    socket nor floods its log: it stops accepting for a second at a time, keeps serving the
    connections it has, and takes the waiting ones once descriptors free up."""
    held = []
    for _ in range(48):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.path)  # the backlog takes them even when the daemon cannot accept
        held.append(s)
    t0 = time.monotonic()
    time.sleep(3)
    cpu = d.cpu_seconds()
    warnings = d.log_text().count("cannot accept connections now")
    check(1 <= warnings <= 10, "%d warnings about accepting in 3 s" % warnings)
    check(cpu < 0.5 * (time.monotonic() - t0), "tidald spun: %.2f s of CPU" % cpu)
    for s in held:
        s.close()
    end = time.monotonic() + DEADLINE
    while True:
        try:
            if admin(d.path, {"cmd": "list"})["ok"]:
                break
        except OSError:
            pass
        check(time.monotonic() < end, "tidald did not accept again")
        time.sleep(0.2)


def case_systemd_activation(d):
    """As systemd runs it (tidald.socket, Type=notify, WatchdogSec=): socket-activated by
    systemd-socket-activate, tidald takes the listening socket it is given, says READY=1 and
    STATUS= on $NOTIFY_SOCKET, pings WATCHDOG=1 within the interval, says STOPPING=1 on
    SIGTERM, and leaves the socket it did not create in place."""
    activate = shutil.which("systemd-socket-activate")
    if not activate:
        print("  SKIP: no systemd-socket-activate")
        return
    workdir = os.path.dirname(d.path)
    path = os.path.join(workdir, "activated.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(os.path.join(workdir, "notify"))
    notify.settimeout(DEADLINE)
    proc = subprocess.Popen([activate, "-l", path,
                             "-E", "NOTIFY_SOCKET=" + os.path.join(workdir, "notify"),
                             "-E", "WATCHDOG_USEC=2000000",
                             d.tidald, "--host-memory", "1G"],
                            stdout=d.log, stderr=d.log)
    try:
        end = time.monotonic() + DEADLINE
        while not os.path.exists(path):
            check(time.monotonic() < end and proc.poll() is None, "no activation socket")
            time.sleep(0.05)
        # The first connection starts tidald with the socket (LISTEN_FDS=1).
        check(admin(path, {"cmd": "list"})["ok"], "the activated daemon did not answer")
        seen = set()
        while not {"READY", "STATUS", "WATCHDOG"} <= seen:
            for line in notify.recv(4096).decode().splitlines():
                seen.add(line.split("=", 1)[0])
        proc.send_signal(signal.SIGTERM)
        while "STOPPING" not in seen:
            for line in notify.recv(4096).decode().splitlines():
                seen.add(line.split("=", 1)[0])
        check(proc.wait(timeout=DEADLINE) == 0, "tidald did not exit 0 on SIGTERM")
        check(os.path.exists(path), "tidald removed the socket systemd owns")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def listed_json(d):
    """`tidalctl --json list` when the test has tidalctl, else the same request over the socket."""
    if d.tidalctl:
        out = subprocess.run([d.tidalctl, "--socket", d.path, "--json", "list"],
                             capture_output=True, timeout=DEADLINE)
        check(out.returncode == 0, "tidalctl list failed: %s" % out.stderr.decode())
        reply = json.loads(out.stdout)
    else:
        reply = admin(d.path, {"cmd": "list"})
    check(reply["ok"], "list failed: %r" % reply)
    return {v["name"]: v for v in reply["vms"]}, reply["host"]


def metric(d, name, vm):
    text = admin(d.path, {"cmd": "metrics"})["text"]
    check_metrics_text(text)
    m = re.search(r'^%s\{vm="%s"\} (\S+)$' % (re.escape(name), re.escape(vm)), text, re.M)
    return m.group(1) if m else None


def case_restart_partial(d):
    """Smart paging (issue 6): a restart that cannot find its startup gets what can be found,
    if that is at least its minimum; a cold start in the same situation is refused."""
    # Budget 1 GiB. small settles at its want, 400 + 20 % = 480.
    small = Client(d.path, "small", startup=512 * MiB, minimum=128 * MiB, maximum=1 * GiB,
                   weight=1000, demand=400 * MiB)
    run_until(lambda: small.state == "running", [small], "small's admission")
    settle([small])
    check(small.grant == 480 * MiB, "small at %d MiB, not 480" % (small.grant // MiB))
    # A heavier VM (no statistics yet: it keeps what it gets) needs 896: 544 free + small's
    # buffer 80 + small's need above its minimum 272. small is squeezed to its minimum.
    heavy = Client(d.path, "heavy", startup=896 * MiB, minimum=256 * MiB, maximum=896 * MiB,
                   weight=9000)
    both = [small, heavy]
    run_until(lambda: heavy.state in ("running", "refused"), both, "heavy's admission")
    check(heavy.state == "running", "heavy refused: %r" % heavy.messages)
    check(small.grant == 128 * MiB, "small at %d MiB, not its minimum" % (small.grant // MiB))
    # Now the guests report: small idles (its want is its minimum), heavy wants 600 + 20 %.
    small.demand, heavy.demand = 64 * MiB, 600 * MiB
    settle(both)
    vms, host = vms_by_name(d.path)
    check(vms["small"]["grant_bytes"] == 128 * MiB and vms["heavy"]["grant_bytes"] == 720 * MiB,
          "not settled at 128 / 720: %r" % {n: v["grant_bytes"] for n, v in vms.items()})
    budget = host["budget_bytes"]

    # A cold start of 512 (minimum 128) now: free 1024 - 128 - 720 = 176, heavy's buffer
    # 720 - 600 = 120; small is at its minimum and heavy is heavier: found 296. Refused,
    # although 296 is above its minimum: partial grants are for restarts only.
    cold = Client(d.path, "cold", startup=512 * MiB, minimum=128 * MiB, maximum=1 * GiB,
                  weight=1000)
    run_until(lambda: cold.state == "refused", both + [cold], "the cold start's refusal")
    m = cold.messages[-1]
    check(m["needed_bytes"] == 512 * MiB and m["found_bytes"] == 296 * MiB,
          "cold refusal: %r" % m)
    check("cannot admit cold" in m["error"], "cold refusal message: %r" % m["error"])
    check(small.grant == 128 * MiB and heavy.grant == 720 * MiB, "a refusal moved grants")

    # small reboots. Its own 128 are free again: free 1024 - 720 = 304, plus heavy's buffer
    # 120 (any weight's buffer may go); heavy's need is kept (heavier). Found 424: between
    # small's minimum (128) and its startup (512), a whole number of 2 MiB blocks.
    expected = budget - 720 * MiB + (720 - 600) * MiB
    check(expected == 424 * MiB, "budget %d" % budget)
    small.balloon_up = False  # the guest's balloon driver is not up yet: smart paging runs
    small.restart()
    run_until(lambda: small.state in ("running", "refused"), both, "small's restart")
    m = small.messages[-1]
    check(m["msg"] == "admitted", "restart refused: %r" % m)
    check(m["grant_bytes"] == expected, "restart granted %d MiB, not %d" %
          (m["grant_bytes"] // MiB, expected // MiB))
    check(128 * MiB < m["grant_bytes"] < 512 * MiB and m["grant_bytes"] % (2 * MiB) == 0,
          "partial grant %d" % m["grant_bytes"])
    check(heavy.grant == 600 * MiB, "heavy kept its buffer: %d MiB" % (heavy.grant // MiB))

    # The VM reports smart paging; list and the metrics show it. The gap (512 - 424 = 88 MiB)
    # is in the paging file, not in host memory: nothing is overcommitted.
    def paging_shown():
        v = listed_json(d)[0]["small"]
        return v["smart_paging"]["active"] and v["smart_paging"]["file_bytes"] == 88 * MiB
    run_until(paging_shown, both, "smart paging in list")
    vms, host = listed_json(d)
    sp = vms["small"]["smart_paging"]
    check(sp["pages_out"] == 88 * MiB // 4096 and sp["pages_in"] == 7 and sp["active_ms"] > 0,
          "smart_paging in list: %r" % sp)
    check(vms["small"]["state"] == "running" and vms["small"]["assigned_bytes"] == 512 * MiB,
          "small in list: %r" % vms["small"])
    check(host["granted_bytes"] <= host["budget_bytes"], "granted past the budget: %r" % host)
    check(metric(d, "tidal_vm_smart_paging_active", "small") == "1", "paging metric")
    check(metric(d, "tidal_vm_smart_paging_file_bytes", "small") == str(88 * MiB),
          "paging file metric")
    check(metric(d, "tidal_vm_smart_paging_pages_out_total", "small") == str(88 * MiB // 4096),
          "pages out metric")
    check(metric(d, "tidal_vm_smart_paging_active_seconds", "small") is not None,
          "active seconds metric")
    check(metric(d, "tidal_vm_smart_paging_active", "heavy") == "0", "heavy pages")
    # While it pages, the daemon counts only the grant as held: heavy is not cut for the gap.
    settle(both)
    check(heavy.grant == 600 * MiB and small.grant == expected,
          "grants moved while paging: small %d, heavy %d" % (small.grant, heavy.grant))

    # The balloon driver comes up: the guest goes within its grant and smart paging ends.
    small.balloon_up = True
    run_until(lambda: not listed_json(d)[0]["small"]["smart_paging"]["active"], both,
              "smart paging to end")
    check(metric(d, "tidal_vm_smart_paging_active", "small") == "0", "paging metric after")

    # Then it balances like any VM: once heavy is gone it grows back past its startup.
    heavy.close()
    small.demand = 500 * MiB
    run_until(lambda: small.grant == 600 * MiB, [small], "small to grow back to 600 MiB")


def case_restart_partial_others_stuck(d):
    """A restart whose room depends on another VM shrinking, which it does not do within the
    admission wait, is not refused (that would stop a running guest): it starts with what is
    free at the deadline, if that reaches its minimum."""
    small = Client(d.path, "small", startup=512 * MiB, minimum=128 * MiB, maximum=1 * GiB,
                   weight=1000, demand=64 * MiB)
    run_until(lambda: small.state == "running", [small], "small's admission")
    settle([small])
    heavy = Client(d.path, "heavy", startup=256 * MiB, minimum=256 * MiB, maximum=896 * MiB,
                   weight=9000, demand=700 * MiB)
    both = [small, heavy]
    run_until(lambda: heavy.state == "running", both, "heavy's admission")
    settle(both)
    check(small.grant == 128 * MiB and heavy.grant == 840 * MiB,
          "not settled at 128 / 840: %d / %d" % (small.grant // MiB, heavy.grant // MiB))
    # small reboots: 1024 - 840 free plus heavy's buffer (140) is 324 MiB of its 512; heavy is
    # told to give its buffer back but cannot. At the deadline only 184 MiB are free.
    heavy.stuck = True
    small.restart()
    run_until(lambda: small.state in ("running", "refused"), both, "small's restart", 60)
    m = small.messages[-1]
    check(m["msg"] == "admitted", "restart refused: %r" % m)
    check(m["grant_bytes"] == 184 * MiB, "restart granted %d MiB, not the 184 free" %
          (m["grant_bytes"] // MiB))
    # While small pages, the host holds only its grant of it (the rest is in the file).
    vms, host = vms_by_name(d.path)
    check(host["reserved_bytes"] <= host["budget_bytes"], "more held than the budget: %r" % host)


def case_restart_below_minimum(d):
    """A restart that cannot find even its minimum is refused: smart paging bridges a gap, it
    does not run a VM below its minimum."""
    small = Client(d.path, "small", startup=512 * MiB, minimum=256 * MiB, maximum=1 * GiB,
                   weight=1000, demand=400 * MiB)
    run_until(lambda: small.state == "running", [small], "small's admission")
    settle([small])
    # heavy needs 768: 544 free + small's buffer 80 + small's need above its minimum 144.
    heavy = Client(d.path, "heavy", startup=768 * MiB, minimum=256 * MiB, maximum=1 * GiB,
                   weight=9000)
    both = [small, heavy]
    run_until(lambda: heavy.state == "running", both, "heavy's admission")
    check(small.grant == 256 * MiB, "small at %d MiB, not its minimum" % (small.grant // MiB))
    settle(both)
    # A VM that was running before a daemon restart comes back with 128 MiB: taken as it is,
    # past the budget (1152 of 1024 spoken for).
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as back:
        back.connect(d.path)
        back.sendall((json.dumps(dict(msg="register", name="back", uuid="", running=True,
                                      startup_bytes=128 * MiB, minimum_bytes=128 * MiB,
                                      maximum_bytes=128 * MiB, buffer=20, weight=5000,
                                      assigned_bytes=128 * MiB, grant_bytes=128 * MiB)) +
                      "\n").encode())
        run_until(lambda: "back" in vms_by_name(d.path)[0], both, "the VM to come back")
        # small reboots: free 1024 - 768 - 128 = 128; heavy and back have no statistics yet
        # and give nothing. 128 < small's minimum of 256: refused.
        small.restart()
        run_until(lambda: small.state == "refused", both, "the restart's refusal")
        m = small.messages[-1]
        check(m["needed_bytes"] == 512 * MiB and m["found_bytes"] == 128 * MiB,
              "refusal: %r" % m)
        check("cannot restart small" in m["error"] and "minimum of 256 MiB" in m["error"] and
              "128 MiB could be found" in m["error"],
              "refusal message: %r" % m["error"])
        run_until(lambda: small.sock is None, [small], "the daemon to hang up on small")
        vms = vms_by_name(d.path)[0]
        check("small" not in vms, "a refused restart stays in the list")
        check(vms["heavy"]["grant_bytes"] == 768 * MiB, "a refusal moved heavy's grant")


METRIC_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                         r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*\})? -?[0-9.e+]+$')


def check_metrics_text(text):
    names = set()
    for line in text.splitlines():
        if line.startswith("#"):
            check(re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", line),
                  "bad comment %r" % line)
            continue
        check(METRIC_LINE.match(line), "bad metric line %r" % line)
        names.add(line.split("{")[0].split(" ")[0])
    return names


def case_metrics(d):
    c = Client(d.path, "mvm", startup=256 * MiB, minimum=128 * MiB, maximum=1 * GiB,
               demand=300 * MiB)
    run_until(lambda: c.state == "running", [c], "admission")
    run_until(lambda: 'tidal_vm_demand_bytes{vm="mvm"} 314572800' in
              admin(d.path, {"cmd": "metrics"})["text"], [c], "the demand in the metrics")
    text = admin(d.path, {"cmd": "metrics"})["text"]
    names = check_metrics_text(text)
    for n in ("tidal_vm_assigned_bytes", "tidal_vm_demand_bytes", "tidal_vm_minimum_bytes",
              "tidal_vm_maximum_bytes", "tidal_vm_grant_bytes", "tidal_vm_balloon_bytes",
              "tidal_vm_vmem_plugged_bytes", "tidal_vm_status", "tidal_host_budget_bytes",
              "tidal_host_granted_bytes", "tidal_vm_smart_paging_active"):
        check(n in names, "metric %s missing" % n)
    check(re.search(r'^tidal_vm_status\{vm="mvm",status="(OK|Low|Warning)"\} 1$', text, re.M),
          "no status series with 1")
    check(len(re.findall(r'^tidal_vm_status\{vm="mvm"', text, re.M)) == 3, "status series")
    url = "http://127.0.0.1:%d" % d.http_port
    body = urllib.request.urlopen(url + "/metrics", timeout=DEADLINE).read().decode()
    check("tidal_host_budget_bytes" in body, "HTTP metrics: %r" % body[:200])
    check_metrics_text(body)
    try:
        urllib.request.urlopen(url + "/other", timeout=DEADLINE)
        raise Failure("/other did not get 404")
    except urllib.error.HTTPError as e:
        check(e.code == 404, "/other: %d" % e.code)
    # An oversized request is cut off; the daemon survives.
    with socket.create_connection(("127.0.0.1", d.http_port), timeout=DEADLINE) as s:
        try:
            s.sendall(b"GET /" + b"a" * 10000)
            s.recv(100)
        except (BrokenPipeError, ConnectionResetError):
            pass
    check(d.alive() and admin(d.path, {"cmd": "list"})["ok"], "tidald died on HTTP input")


MANY = 1000


def case_many_clients(d):
    """A thousand VMs from this one process: every one of them in tidalctl's list and metrics,
    replies far longer than a VM's control socket allows (64 KiB). They re-register as running
    (no admission), so the case does not depend on the host having 31 GiB for 1,000 x 32 MiB."""
    sel = selectors.DefaultSelector()
    names = ["many-%04d" % i for i in range(MANY)]
    try:
        for name in names:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.path)
            s.sendall((json.dumps(dict(msg="register", name=name, uuid="", running=True,
                                       startup_bytes=32 * MiB, minimum_bytes=32 * MiB,
                                       maximum_bytes=64 * MiB, buffer=20, weight=5000,
                                       assigned_bytes=32 * MiB, grant_bytes=32 * MiB)) +
                       "\n").encode())
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, name)

        def drain():
            # Nothing is expected (everyone sits at its minimum); a hang-up fails the case.
            for key, _ in sel.select(0):
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                check(data and b"error" not in data and b"refused" not in data,
                      "%s: %r" % (key.data, data[:200]))
            return True

        def listed():
            # A daemon that cannot queue the whole reply hangs up: no reply at all.
            reply = admin(d.path, {"cmd": "list"})
            check(reply is not None and reply["ok"], "no reply to list: %r" % reply)
            return reply["vms"]

        run_until(lambda: drain() and len(listed()) == MANY, what="%d VMs to register" % MANY)
        check(sorted(v["name"] for v in listed()) == names, "list over the socket")
        if not d.tidalctl:
            print("  (no --tidalctl: checked over the socket only)")
            return
        ctl = [d.tidalctl, "--socket", d.path]
        out = subprocess.run(ctl + ["--json", "list"], capture_output=True, timeout=DEADLINE)
        check(out.returncode == 0, "tidalctl list failed (%d): %s" %
              (out.returncode, out.stderr.decode(errors="replace")))
        check(len(out.stdout) > 64 * 1024, "the reply is only %d bytes" % len(out.stdout))
        listed = json.loads(out.stdout)
        check(listed["ok"] and sorted(v["name"] for v in listed["vms"]) == names,
              "tidalctl list --json does not show the %d VMs" % MANY)
        check(all(v["state"] == "running" and v["grant_bytes"] == 32 * MiB
                  for v in listed["vms"]), "a VM is not running at its grant")
        out = subprocess.run(ctl + ["metrics"], capture_output=True, timeout=DEADLINE)
        check(out.returncode == 0, "tidalctl metrics failed: %s" % out.stderr.decode())
        grants = re.findall(r'^tidal_vm_grant_bytes\{vm="many-\d{4}"\} 33554432$',
                            out.stdout.decode(), re.M)
        check(len(grants) == MANY, "metrics show %d grants, not %d" % (len(grants), MANY))
        drain()
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = [
    ("register_and_list", case_register_and_list, "4G", []),
    ("admission_refused", case_admission_refused, "1G", []),
    ("squeeze_lower_weights", case_squeeze_lower_weights, "2G", []),
    ("spike_takes_from_lightest", case_spike_takes_from_lightest, "3G", []),
    ("kill_client_frees_grant", case_kill_client_frees_grant, "4G", []),
    ("daemon_restart", case_daemon_restart, "4G", []),
    ("other_uid_cannot_set", case_other_uid_cannot_set, "4G", ["GROUP"]),
    ("malformed_input", case_malformed_input, "4G", []),
    ("hung_client", case_hung_client, "4G", []),
    ("metrics", case_metrics, "4G", ["HTTP"]),
    ("restart_partial", case_restart_partial, "1G", []),
    ("restart_partial_others_stuck", case_restart_partial_others_stuck, "1G", []),
    ("restart_below_minimum", case_restart_below_minimum, "1G", []),
    ("many_clients", case_many_clients, "4G", []),
    ("out_of_descriptors", case_out_of_descriptors, "4G", ["NOFILE"]),
    ("systemd_activation", case_systemd_activation, "4G", []),
]


def run_case(tidald, tidalctl, name, fn, memory, flags):
    workdir = tempfile.mkdtemp(prefix="tidald-test-")
    os.chmod(workdir, 0o755)  # user nobody connects in other_uid_cannot_set
    extra, port = [], None
    if "GROUP" in flags:
        extra += ["--socket-group", "nogroup" if os.getuid() == 0 else str(os.getgid())]
        if os.getuid() != 0:
            extra = []
    if "HTTP" in flags:
        port = free_port()
        extra += ["--metrics-listen", "127.0.0.1:%d" % port]
    d = Daemon(tidald, workdir, memory, extra, nofile=32 if "NOFILE" in flags else None)
    d.http_port = port
    d.tidalctl = tidalctl
    try:
        fn(d)
        check(d.alive(), "tidald died")
        d.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    except Exception:
        if d.alive():
            d.kill9()
        with open(os.path.join(workdir, "tidald.log"), "rb") as f:
            sys.stderr.write(f.read().decode(errors="replace")[-4000:])
        raise


def client_main(path, name, startup):
    """A simulated VM in its own process, until killed."""
    while True:
        try:
            c = Client(path, name, startup=int(startup), minimum=128 * MiB, maximum=4 * GiB,
                       demand=int(startup), reconnect=True)
            break
        except OSError:
            time.sleep(0.1)
    while True:
        c.step(time.monotonic())
        time.sleep(0.05)


def main(argv):
    if len(argv) >= 2 and argv[1] == "--client":
        client_main(*argv[2:5])
        return 0
    if len(argv) >= 2 and argv[1] == "--admin":
        print(json.dumps(admin(argv[2], json.loads(argv[3]))))
        return 0
    tidalctl = None
    if len(argv) >= 3 and argv[1] == "--tidalctl":
        tidalctl, argv = argv[2], argv[:1] + argv[3:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    tidald, only = argv[1], set(argv[2:])
    # many_clients holds a socket per VM, here and in the daemon (which inherits the limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < MANY + 256 and hard >= MANY + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (MANY + 256, hard))
    failed = []
    for name, fn, memory, flags in CASES:
        if only and name not in only:
            continue
        print("case %s" % name, flush=True)
        try:
            run_case(tidald, tidalctl, name, fn, memory, flags)
            print("  ok", flush=True)
        except (Failure, OSError, ValueError, KeyError) as e:
            print("  FAIL: %s: %s" % (type(e).__name__, e), flush=True)
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
