#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Integration tests of tidald (docs/tidald.md): the real daemon over its real socket with
dozens of simulated VMM clients speaking docs/memctl-protocol.md. No KVM needed.

    run.py TIDALD                      run every case
    run.py TIDALD CASE...              run the named cases
    run.py --client SOCK NAME STARTUP  one simulated VM until killed (used by the cases)
    run.py --admin SOCK JSON           one admin request, prints the reply (run as another uid)

Every wait polls with a deadline; nothing asserts on elapsed time.
"""
import errno
import json
import os
import re
import select
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

    def report(self):
        if self.state != "running" or not self.sock:
            return
        if self.assigned > self.grant:
            self.assigned = max(self.grant, self.assigned - self.SHRINK_STEP)
        else:
            self.assigned = self.grant
        demand = self.demand
        status = "OK"
        if demand is not None:
            want = demand * (100 + self.settings["buffer"]) // 100
            status = "Warning" if self.assigned < demand else "Low" if self.assigned < want else "OK"
        self.send(dict(msg="report", assigned_bytes=self.assigned, demand_bytes=demand,
                       fresh=demand is not None, pressure=0, status=status, balloon_bytes=0,
                       vmem_plugged_bytes=0,
                       smart_paging=dict(active=False, file_bytes=0, pages_in=0, pages_out=0,
                                         active_ms=0)))

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
    def __init__(self, tidald, workdir, host_memory="4G", extra=()):
        self.tidald, self.host_memory, self.extra = tidald, host_memory, list(extra)
        self.path = os.path.join(workdir, "tidald.sock")
        self.log = open(os.path.join(workdir, "tidald.log"), "ab")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.tidald, "--socket", self.path, "--host-memory",
                                      self.host_memory, "-v"] + self.extra,
                                     stdout=self.log, stderr=self.log)
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

    def alive(self):
        return self.proc.poll() is None

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
    mode = os.stat(d.path).st_mode & 0o777
    check(mode == 0o660, "socket mode %o, not 660" % mode)
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
]


def run_case(tidald, name, fn, memory, flags):
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
    d = Daemon(tidald, workdir, memory, extra)
    d.http_port = port
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
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    tidald, only = argv[1], set(argv[2:])
    failed = []
    for name, fn, memory, flags in CASES:
        if only and name not in only:
            continue
        print("case %s" % name, flush=True)
        try:
            run_case(tidald, name, fn, memory, flags)
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
