#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""tidalctl's host commands against the real tidald, without KVM.

Starts tidald on a socket in a temporary directory with --host-memory, registers two simulated
VMs over the real protocol (include/tidal/memctl-proto.h) and runs the real tidalctl list,
list --json, set, top and metrics, asserting on what they print and how they exit.

    ctl.py --tidald PATH --tidalctl PATH [-k SUBSTRING]

Exit 77 (skipped) when tidald has not been built.
"""
import argparse
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

MiB = 1 << 20
GiB = 1 << 30
HOST_MEMORY = 8 * GiB
EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
# Waiting for the daemon to do something (not an assertion on how fast): generous.
WAIT_S = 30
COLUMNS = ["Name", "State", "Startup", "Minimum", "Maximum", "Assigned", "Demand", "Buffer",
           "Weight", "Status"]

ARGS = None


class Daemon:
    """A tidald process listening on a socket in tmp; waits until it accepts connections."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "tidald.sock")
        self.proc = subprocess.Popen([ARGS.tidald, "--socket", self.path, "--host-memory",
                                      str(HOST_MEMORY)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + WAIT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"tidald exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.path)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("tidald does not listen on its socket")
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("tidald did not exit on SIGTERM")
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return self.proc.returncode, err


class FakeVM:
    """A simulated VMM: registers, reports, and collects what the daemon sends."""

    def __init__(self, daemon, name, startup, minimum, maximum, buffer=20, weight=5000):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT_S)
        self.sock.connect(daemon.path)
        self.messages = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.send({"msg": "register", "name": name, "uuid": "", "startup_bytes": startup,
                   "minimum_bytes": minimum, "maximum_bytes": maximum, "buffer": buffer,
                   "weight": weight, "running": False, "assigned_bytes": 0, "grant_bytes": 0})
        self.reader.start()
        answer = self.expect("admitted", "refused", "error")
        assert answer["msg"] == "admitted", f"{name} not admitted: {answer}"
        self.grant = answer["grant_bytes"]

    def _read(self):
        buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.messages.put(None)
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.messages.put(json.loads(line))

    def send(self, msg):
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def expect(self, *kinds):
        """The next message of one of these kinds, skipping targets the daemon sends anyway."""
        deadline = time.monotonic() + WAIT_S
        while True:
            msg = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            assert msg is not None, f"{self.name}: the daemon hung up"
            if msg["msg"] in kinds:
                return msg
            assert msg["msg"] == "target", f"{self.name}: unexpected {msg}"

    def report(self, assigned, demand, status, paging=False):
        self.send({"msg": "report", "assigned_bytes": assigned, "demand_bytes": demand,
                   "fresh": True, "pressure": 0, "status": status, "balloon_bytes": 0,
                   "vmem_plugged_bytes": max(0, assigned - self.grant),
                   "smart_paging": {"active": paging, "file_bytes": 64 * MiB if paging else 0,
                                    "pages_in": 10 if paging else 0,
                                    "pages_out": 20 if paging else 0,
                                    "active_ms": 1500 if paging else 0}})

    def close(self):
        # shutdown() first: close() alone would wait for the reader thread's recv() to return.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.reader.join(timeout=WAIT_S)
        self.sock.close()


def ctl(daemon, *args, socket_path=None):
    return subprocess.run([ARGS.tidalctl, "--socket", socket_path or daemon.path, *args],
                          capture_output=True, text=True, timeout=WAIT_S + 30)


def list_json(daemon):
    p = ctl(daemon, "list", "--json")
    assert p.returncode == 0, p.stderr
    reply = json.loads(p.stdout)
    assert reply["ok"] is True, reply
    return reply


def wait_for(daemon, what, predicate):
    """Polls list --json until predicate(reply) holds (the daemon works asynchronously)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        reply = list_json(daemon)
        if predicate(reply):
            return reply
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}; last reply {reply}")
        time.sleep(0.05)


def vm_of(reply, name):
    vms = [vm for vm in reply["vms"] if vm["name"] == name]
    assert len(vms) == 1, f"{name} in {reply}"
    return vms[0]


def fmt_size(n):
    """As format_size() in src/shared/parse.c."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    v, u = float(n), 0
    while v >= 1024 and u + 1 < len(units):
        v /= 1024
        u += 1
    return f"{int(v)} {units[u]}" if u == 0 or v == int(v) else f"{v:.1f} {units[u]}"


def parse_table(text):
    """The table's rows as dicts by column title, using the header's column positions."""
    lines = text.splitlines()
    header = lines[0]
    assert header.split() == COLUMNS, f"header: {header!r}"
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        # Columns are separated by two or more blanks; Status may hold one blank.
        cells = re.split(r" {2,}", line.strip())
        assert len(cells) == len(COLUMNS), f"row: {line!r}"
        rows.append(dict(zip(COLUMNS, cells)))
    return rows


class World:
    """The daemon and two simulated VMs, shared by the tests."""

    def __init__(self, tmp):
        self.daemon = Daemon(tmp)
        self.vms = {}
        # vm-light: plenty of memory for its demand; vm-heavy: demand above what it holds and
        # smart paging active.
        a = FakeVM(self.daemon, "vm-light", startup=1 * GiB, minimum=512 * MiB,
                   maximum=4 * GiB, buffer=20, weight=1000)
        b = FakeVM(self.daemon, "vm-heavy", startup=1 * GiB, minimum=512 * MiB,
                   maximum=2 * GiB, buffer=25, weight=9000)
        self.vms = {vm.name: vm for vm in (a, b)}
        a.report(assigned=1 * GiB, demand=256 * MiB, status="OK")
        b.report(assigned=1 * GiB, demand=1536 * MiB, status="Warning", paging=True)
        wait_for(self.daemon, "both VMs reported a demand",
                 lambda r: all(vm_of(r, n)["demand_bytes"] is not None for n in self.vms))

    def close(self):
        for vm in self.vms.values():
            vm.close()
        return self.daemon.stop()


def test_list_table(w):
    p = ctl(w.daemon, "list")
    assert p.returncode == 0, p.stderr
    reply = list_json(w.daemon)
    rows = {r["Name"]: r for r in parse_table(p.stdout)}
    assert set(rows) == {"vm-light", "vm-heavy"}, p.stdout
    for name, row in rows.items():
        vm = vm_of(reply, name)
        assert row["State"] == vm["state"] == "running", (row, vm)
        assert row["Startup"] == fmt_size(vm["startup_bytes"]) == "1 GiB", row
        assert row["Minimum"] == "512 MiB", row
        assert row["Assigned"] == fmt_size(vm["assigned_bytes"]), (row, vm)
        assert row["Demand"] == fmt_size(vm["demand_bytes"]), (row, vm)
        assert row["Weight"] == str(vm["weight"]), (row, vm)
        assert row["Buffer"] == f"{vm['buffer']}%", (row, vm)
    assert rows["vm-light"]["Maximum"] == "4 GiB" and rows["vm-heavy"]["Maximum"] == "2 GiB"
    assert rows["vm-light"]["Demand"] == "256 MiB", rows
    assert rows["vm-heavy"]["Demand"] == "1.5 GiB", rows
    assert rows["vm-light"]["Weight"] == "1000" and rows["vm-heavy"]["Weight"] == "9000"
    assert rows["vm-light"]["Buffer"] == "20%" and rows["vm-heavy"]["Buffer"] == "25%"
    assert rows["vm-light"]["Status"] == "OK", rows
    # Smart paging shows next to the status, as in Hyper-V Manager.
    assert rows["vm-heavy"]["Status"] == "Warning (Paging)", rows
    # Aligned: every row as long as the header's columns allow, numbers right-aligned.
    lines = p.stdout.splitlines()
    end = lines[0].index("Startup") + len("Startup")
    for line in lines[1:3]:
        assert line[end - 1] != " " and line[end] == " ", f"Startup not right-aligned: {line!r}"
    host = [line for line in lines if line.startswith("Host:")]
    assert len(host) == 1, p.stdout
    h = reply["host"]
    assert f"budget {fmt_size(h['budget_bytes'])}" in host[0], host
    assert f"granted {fmt_size(h['granted_bytes'])}" in host[0], host
    assert f"free {fmt_size(h['free_bytes'])}" in host[0], host
    assert h["budget_bytes"] == HOST_MEMORY, h


def test_list_json(w):
    p = ctl(w.daemon, "list", "--json")
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 1, "one line of JSON"
    reply = json.loads(p.stdout)
    assert reply["ok"] is True
    assert sorted(vm["name"] for vm in reply["vms"]) == ["vm-heavy", "vm-light"]
    assert vm_of(reply, "vm-heavy")["smart_paging"]["active"] is True
    for key in ["budget_bytes", "granted_bytes", "free_bytes"]:
        assert isinstance(reply["host"][key], int), reply["host"]


def test_set_applies_and_forwards(w):
    p = ctl(w.daemon, "set", "vm-light", "--weight", "7000", "--buffer", "30")
    assert p.returncode == 0, p.stderr
    rows = parse_table(p.stdout)
    assert len(rows) == 1 and rows[0]["Name"] == "vm-light", p.stdout
    assert rows[0]["Weight"] == "7000" and rows[0]["Buffer"] == "30%", rows
    # The daemon tells the VM.
    msg = w.vms["vm-light"].expect("settings")
    assert msg["weight"] == 7000 and msg["buffer"] == 30, msg
    vm = vm_of(list_json(w.daemon), "vm-light")
    assert vm["weight"] == 7000 and vm["buffer"] == 30, vm


def test_set_sizes(w):
    p = ctl(w.daemon, "set", "vm-light", "--minimum", "256M", "--maximum", "6G")
    assert p.returncode == 0, p.stderr
    row = parse_table(p.stdout)[0]
    assert row["Minimum"] == "256 MiB" and row["Maximum"] == "6 GiB", row
    vm = vm_of(list_json(w.daemon), "vm-light")
    assert vm["minimum_bytes"] == 256 * MiB and vm["maximum_bytes"] == 6 * GiB, vm


def test_set_refused_by_rule(w):
    # Minimum may not be raised while the VM runs (mem_settings_change()).
    p = ctl(w.daemon, "set", "vm-heavy", "--minimum", "768M")
    assert p.returncode == EXIT_FAILED, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("tidalctl: error: set: "), p.stderr
    assert "minimum can only be lowered while the VM runs" in p.stderr, p.stderr
    assert p.stdout == "", p.stdout
    p = ctl(w.daemon, "set", "vm-heavy", "--maximum", "1G")
    assert p.returncode == EXIT_FAILED, (p.returncode, p.stderr)
    assert "maximum can only be raised while the VM runs" in p.stderr, p.stderr
    # Out of range for the rules though within what tidalctl passes on.
    p = ctl(w.daemon, "set", "vm-heavy", "--buffer", "2")
    assert p.returncode == EXIT_FAILED, (p.returncode, p.stderr)
    vm = vm_of(list_json(w.daemon), "vm-heavy")
    assert vm["minimum_bytes"] == 512 * MiB and vm["maximum_bytes"] == 2 * GiB, vm
    assert vm["buffer"] == 25, vm
    # --json: the daemon's reply as it came, and still exit 1.
    p = ctl(w.daemon, "set", "vm-heavy", "--minimum", "768M", "--json")
    assert p.returncode == EXIT_FAILED
    reply = json.loads(p.stdout)
    assert reply["ok"] is False and "minimum" in reply["error"], reply


def test_set_unknown_vm(w):
    p = ctl(w.daemon, "set", "no-such-vm", "--weight", "1")
    assert p.returncode == EXIT_FAILED, (p.returncode, p.stderr)
    assert p.stderr.startswith("tidalctl: error: set: "), p.stderr


def test_set_usage(w):
    for args in (["set", "vm-light"], ["set"], ["set", "vm-light", "--weight", "10001"],
                 ["set", "vm-light", "--minimum", "lots"], ["set", "vm-light", "--interval", "1"],
                 ["list", "--weight", "5"], ["set", "a", "b", "--weight", "5"]):
        p = ctl(w.daemon, *args)
        assert p.returncode == EXIT_USAGE, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("tidalctl: error: "), (args, p.stderr)


def test_top(w):
    p = ctl(w.daemon, "top", "--count", "2", "--interval", "1")
    assert p.returncode == 0, p.stderr
    assert "\033" not in p.stdout, "no terminal control codes into a pipe"
    tables = p.stdout.split("\n\nName")
    assert len(tables) == 2, p.stdout
    assert p.stdout.count("Host:") == 2, p.stdout
    for t in (p.stdout, "Name" + tables[1]):
        assert {r["Name"] for r in parse_table(t)} == {"vm-light", "vm-heavy"}, t
    p = ctl(w.daemon, "top", "--count", "2", "--interval", "1", "--json")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(l)["ok"] for l in lines), p.stdout


def test_metrics(w):
    p = ctl(w.daemon, "metrics")
    assert p.returncode == 0, p.stderr
    samples = {}
    for line in p.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)', line)
        assert m, f"not Prometheus text: {line!r}"
        float(m.group(3))
        samples.setdefault(m.group(1), []).append(m.group(2) or "")
    reply = json.loads(ctl(w.daemon, "metrics", "--json").stdout)
    assert reply["ok"] is True and p.stdout.rstrip("\n") == reply["text"].rstrip("\n")
    per_vm = [n for n, labels in samples.items() if any('"vm-heavy"' in l for l in labels)]
    assert any("assigned" in n for n in per_vm), samples.keys()
    assert any("demand" in n for n in per_vm), samples.keys()
    assert any("budget" in n for n in samples), samples.keys()
    assert any("granted" in n for n in samples), samples.keys()


def test_unreachable(w):
    p = ctl(w.daemon, "list", socket_path=os.path.join(os.path.dirname(w.daemon.path), "none"))
    assert p.returncode == EXIT_UNREACHABLE, (p.returncode, p.stderr)
    assert "is tidald running?" in p.stderr, p.stderr


def test_vm_gone(w):
    """Last: a VM that hangs up leaves the list."""
    w.vms.pop("vm-light").close()
    wait_for(w.daemon, "vm-light left", lambda r: [vm["name"] for vm in r["vms"]] == ["vm-heavy"])
    p = ctl(w.daemon, "list")
    assert p.returncode == 0 and [r["Name"] for r in parse_table(p.stdout)] == ["vm-heavy"]


TESTS = [test_list_table, test_list_json, test_set_applies_and_forwards, test_set_sizes,
         test_set_refused_by_rule, test_set_unknown_vm, test_set_usage, test_top, test_metrics,
         test_unreachable, test_vm_gone]


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--tidald", required=True)
    parser.add_argument("--tidalctl", required=True)
    parser.add_argument("-k", default="")
    ARGS = parser.parse_args()
    if not os.access(ARGS.tidald, os.X_OK):
        print(f"SKIP: tidald is not built ({ARGS.tidald})")
        return 77
    failed = 0
    with tempfile.TemporaryDirectory(prefix="tidal-ctl-") as tmp:
        w = World(tmp)
        try:
            for t in TESTS:
                if ARGS.k not in t.__name__:
                    continue
                try:
                    t(w)
                    print(f"ok: {t.__name__}")
                except Exception:
                    failed += 1
                    print(f"FAIL: {t.__name__}")
                    traceback.print_exc()
        finally:
            status, err = w.close()
        if status != 0:
            failed += 1
            print(f"FAIL: tidald exited {status} on SIGTERM: {err}")
    print(f"{failed} failure(s)" if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
