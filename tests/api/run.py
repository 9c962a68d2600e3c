#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The control socket end to end, without KVM.

Runs api-test-server (the real server code on a real event loop, fake VMM callbacks) and
drives it with the real tidalctl and with raw sockets.

    run.py --tidalctl PATH --server PATH [-k SUBSTRING]
"""
import argparse
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import traceback

LINE_MAX = 64 * 1024
CLIENTS_MAX = 64
EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

ARGS = None
TMP = None


class Server:
    """An api-test-server process; waits until it listens."""

    def __init__(self, *args, env=None, expect_ready=True):
        self.proc = subprocess.Popen([ARGS.server, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.path = None
        if expect_ready:
            line = self.proc.stdout.readline()
            if not line.startswith("ready "):
                raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()}")
            self.path = line.split(" ", 1)[1].strip()

    def finish(self, timeout=10):
        """Waits for exit; returns (status, stderr)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not exit")
        return self.proc.returncode, self.proc.stderr.read()

    def stop(self):
        """SIGTERM; it must exit cleanly (under ASan: with nothing leaked)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status, err = self.finish()
        assert status == 0, err
        return status, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def sock_path(name):
    return os.path.join(TMP, name + ".sock")


def ctl(*args, env=None):
    return subprocess.run([ARGS.tidalctl, *args], capture_output=True, text=True, timeout=30,
                          env=env)


def ctl_ok(*args):
    r = ctl(*args)
    assert r.returncode == 0, f"tidalctl {args}: {r.returncode} {r.stderr}"
    return r.stdout


def info_json(path):
    reply = json.loads(ctl_ok("--api-socket", path, "info", "--json"))
    assert reply["ok"] is True
    return reply["info"]


class Conn:
    """A raw client: one JSON request per line."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        # Python's timeout makes connect() non-blocking, which on a Unix socket fails at once
        # when the backlog is full instead of waiting as a blocking one (tidalctl's) does.
        for _ in range(500):
            try:
                self.s.connect(path)
                break
            except BlockingIOError:
                time.sleep(0.01)
        else:
            raise AssertionError("cannot connect: backlog stays full")
        self.buf = b""

    def send(self, data):
        if isinstance(data, dict):
            data = json.dumps(data, separators=(",", ":"))
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def readline(self):
        """A reply line as a dict; None at end of stream (EOF or reset)."""
        while b"\n" not in self.buf:
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, request):
        self.send(json.dumps(request, separators=(",", ":")) + "\n")
        return self.readline()

    def close(self):
        self.s.close()


# ---- round trips through tidalctl ----

def test_info_human_and_json():
    with Server(sock_path("info")) as srv:
        out = ctl_ok("--api-socket", srv.path, "info")
        assert "memory" in out and "1 GiB" in out, out
        assert "balloon target" in out, out
        info = info_json(srv.path)
        assert info["name"] == "fake" and info["memory_bytes"] == 1 << 30, info
        assert info["pid"] == srv.proc.pid, info
        assert info["balloon"]["stats"] is None, info
        srv.stop()


def test_balloon_and_stats_period():
    with Server(sock_path("balloon")) as srv:
        assert "512 MiB" in ctl_ok("--api-socket", srv.path, "balloon", "512M")
        ctl_ok("--api-socket", srv.path, "stats-period", "5")
        b = info_json(srv.path)["balloon"]
        assert b["target_bytes"] == 512 << 20 and b["stats_period_s"] == 5, b
        assert b["stats"]["age_ms"] == 1234 and "free_memory_bytes" in b["stats"], b
        out = ctl_ok("--api-socket", srv.path, "info")
        assert "balloon stats free memory" in out and "700 MiB" in out, out
        # The VM says no: exit 1 and its message.
        r = ctl("--api-socket", srv.path, "balloon", "2G")
        assert r.returncode == EXIT_FAILED and "more than the guest's RAM" in r.stderr, r
        srv.stop()


def test_no_balloon_device():
    with Server("--no-balloon", sock_path("noballoon")) as srv:
        r = ctl("--api-socket", srv.path, "balloon", "128M")
        assert r.returncode == EXIT_FAILED, r
        assert "this VM has no balloon device" in r.stderr, r.stderr
        assert info_json(srv.path)["balloon"] is None
        srv.stop()


def test_reboot():
    with Server(sock_path("reboot")) as srv:
        assert "reboot requested" in ctl_ok("--api-socket", srv.path, "reboot")
        assert info_json(srv.path)["boots"] == 2
        srv.stop()


def test_shutdown_removes_socket():
    with Server(sock_path("shutdown")) as srv:
        assert "shutdown requested" in ctl_ok("--api-socket", srv.path, "shutdown")
        status, err = srv.finish()
        assert status == 0, err
        assert not os.path.exists(srv.path), "socket left behind"


def test_sigterm_removes_socket():
    with Server(sock_path("sigterm")) as srv:
        c = Conn(srv.path)  # a connected client must not keep it alive
        status, err = srv.stop()
        assert status == 0, err
        assert not os.path.exists(srv.path)
        c.close()


def test_json_flag_positions():
    with Server(sock_path("jsonpos")) as srv:
        a = json.loads(ctl_ok("--json", "--api-socket", srv.path, "reboot"))
        b = json.loads(ctl_ok("reboot", "--api-socket", srv.path, "--json"))
        assert a == b == {"ok": True}, (a, b)
        srv.stop()


def test_name_resolves_default_path():
    env = dict(os.environ, XDG_RUNTIME_DIR=TMP)
    name = f"apitest-{os.getpid()}"
    with Server("--name", name, env=env) as srv:
        if os.geteuid() == 0:
            assert srv.path == f"/run/tidal/{name}.sock", srv.path
        else:
            assert srv.path == f"{TMP}/tidal/{name}.sock", srv.path
        mode = stat.S_IMODE(os.stat(os.path.dirname(srv.path)).st_mode)
        assert mode & 0o077 == 0 or os.geteuid() == 0, oct(mode)
        r = ctl("--name", name, "info", "--json", env=env)
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r
        srv.stop()


# ---- the socket file ----

def test_socket_is_0600():
    old = os.umask(0)  # even with a permissive umask
    try:
        with Server(sock_path("perm")) as srv:
            st = os.lstat(srv.path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
            srv.stop()
    finally:
        os.umask(old)


def test_refuses_live_socket():
    with Server(sock_path("live")) as first:
        with Server(first.path, expect_ready=False) as second:
            status, err = second.finish()
            assert status != 0 and "another process is serving" in err, err
        # The first one is untouched and still answers.
        assert info_json(first.path)["name"] == "fake"
        first.stop()


def test_replaces_stale_socket():
    path = sock_path("stale")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # a socket file nobody listens on, as a killed VMM leaves
    r = ctl("--api-socket", path, "info")
    assert r.returncode == EXIT_UNREACHABLE and "nothing is listening" in r.stderr, r
    with Server(path) as srv:
        assert info_json(path)["name"] == "fake"
        srv.stop()


def test_refuses_non_socket():
    path = sock_path("regular")
    with open(path, "w") as f:
        f.write("precious\n")
    with Server(path, expect_ready=False) as srv:
        status, err = srv.finish()
        assert status != 0 and "not a socket" in err, err
    assert open(path).read() == "precious\n"


# ---- protocol robustness ----

def test_garbage_keeps_connection():
    with Server(sock_path("garbage")) as srv:
        c = Conn(srv.path)
        for bad in [b"garbage\n", b"{\"cmd\":\"info\"\n", b"[1,2]\n", b"\n",
                    b"{\"cmd\":\"balloon-set\",\"bytes\":-1}\n", b"\xff\xfe\x00\n",
                    b"{\"cmd\":\"frob\",\"id\":9}\n"]:
            c.send(bad)
            reply = c.readline()
            assert reply is not None and reply["ok"] is False and reply["error"], (bad, reply)
        assert reply["id"] == 9, reply
        reply = c.call({"cmd": "info", "id": "after-garbage"})
        assert reply["ok"] is True and reply["id"] == "after-garbage", reply
        c.close()
        srv.stop()


def test_pipelined_and_crlf():
    with Server(sock_path("pipe")) as srv:
        c = Conn(srv.path)
        c.send(b'{"cmd":"info","id":1}\n{"cmd":"reboot","id":2}\r\n{"cmd":"info","id":3}\n')
        replies = [c.readline() for _ in range(3)]
        assert [r["id"] for r in replies] == [1, 2, 3], replies
        assert replies[2]["info"]["boots"] == 2, replies
        # A last request without a newline still gets its answer when the client stops sending.
        c.send(b'{"cmd":"info","id":4}')
        c.s.shutdown(socket.SHUT_WR)
        assert c.readline()["id"] == 4
        assert c.readline() is None
        c.close()
        srv.stop()


def test_oversized_line_closes():
    with Server(sock_path("big")) as srv:
        c = Conn(srv.path)
        try:
            c.send(b"{\"cmd\":\"info\",\"id\":\"" + b"a" * (LINE_MAX + 100))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may hang up before taking it all
        reply = c.readline()
        assert reply is not None and reply["ok"] is False and "too long" in reply["error"], reply
        assert c.readline() is None, "connection should be closed"
        c.close()
        # A maximal line is fine.
        c = Conn(srv.path)
        line = b'{"cmd":"info","id":"max"' + b" " * (LINE_MAX - len('{"cmd":"info","id":"max"}')) + b"}"
        assert len(line) == LINE_MAX
        c.send(line + b"\n")
        reply = c.readline()
        assert reply is not None and reply["ok"] is True and reply["id"] == "max", reply
        # One byte more is refused.
        c.send(line[:-1] + b" }\n")
        reply = c.readline()
        assert reply is not None and "too long" in reply["error"], reply
        c.close()
        srv.stop()


def test_many_clients():
    with Server(sock_path("many")) as srv:
        conns = [Conn(srv.path) for _ in range(50)]
        for i, c in enumerate(conns):
            c.send({"cmd": "info", "id": i})
            c.send("\n")
        for i, c in enumerate(conns):
            reply = c.readline()
            assert reply["ok"] and reply["id"] == i, reply
        procs = [subprocess.Popen([ARGS.tidalctl, "--api-socket", srv.path, "info", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(10)]
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0 and json.loads(out)["ok"], err
        for c in conns:
            c.close()
        srv.stop()


def test_too_many_clients():
    with Server(sock_path("toomany")) as srv:
        conns = [Conn(srv.path) for _ in range(CLIENTS_MAX)]
        for c in conns:  # all of them really accepted
            assert c.call({"cmd": "info"})["ok"]
        extra = Conn(srv.path)
        reply = extra.readline()
        assert reply == {"ok": False, "error": "too many clients"}, reply
        extra.close()
        conns.pop().close()
        time.sleep(0.2)
        assert Conn(srv.path).call({"cmd": "info"})["ok"]
        for c in conns:
            c.close()
        srv.stop()


def test_client_that_never_reads():
    with Server(sock_path("noread")) as srv:
        hog = Conn(srv.path)
        hog.s.setblocking(False)
        chunk = b'{"cmd":"info"}\n' * 4096
        deadline = time.monotonic() + 30
        dropped = False
        while time.monotonic() < deadline and not dropped:
            try:
                hog.s.send(chunk)
            except BlockingIOError:
                # Others are served while the hog's replies pile up.
                assert Conn(srv.path).call({"cmd": "info"})["ok"]
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
        assert dropped, "a client that never reads should be disconnected"
        assert info_json(srv.path)["name"] == "fake"
        hog.close()
        srv.stop()


# ---- tidalctl's own errors ----

def test_tidalctl_errors():
    r = ctl("--api-socket", sock_path("nobody"), "info")
    assert r.returncode == EXIT_UNREACHABLE and "no such socket" in r.stderr, r
    for args in [[], ["frob"], ["info"], ["balloon"], ["balloon", "lots"],
                 ["--api-socket", "x", "balloon", "2T"], ["--api-socket", "x", "stats-period", "-1"],
                 ["--api-socket", "x", "stats-period", "1.5"], ["--bogus"],
                 ["--api-socket", "x", "--name", "y", "info"], ["--api-socket", "x", "info", "extra"],
                 ["--api-socket", "/" + "a" * 200, "info"]]:
        r = ctl(*args)
        assert r.returncode == EXIT_USAGE, (args, r)
        assert args == [] or r.stderr.startswith("tidalctl: error: "), (args, r.stderr)
    r = ctl("--help")
    assert r.returncode == 0 and "balloon SIZE" in r.stdout
    r = ctl("--version")
    assert r.returncode == 0 and r.stdout.startswith("tidalctl ")
    r = ctl("balloon", "--help")
    assert r.returncode == 0 and "balloon SIZE" in r.stdout


def main():
    global ARGS, TMP
    p = argparse.ArgumentParser()
    p.add_argument("--tidalctl", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("-k", default="")
    ARGS = p.parse_args()
    tests = [(n, f) for n, f in sorted(globals().items())
             if n.startswith("test_") and ARGS.k in n]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="tidal-api-") as tmp:
        TMP = tmp
        for name, fn in tests:
            t = time.monotonic()
            try:
                fn()
                print(f"ok   {name} ({time.monotonic() - t:.2f}s)")
            except Exception:
                failed += 1
                print(f"FAIL {name}")
                traceback.print_exc()
    print(f"{len(tests) - failed}/{len(tests)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
