"""Drive a tidal (or QEMU) process and the test guest's init over its serial console.

The guest's /init (guest/init.c) prints one ready line and then answers one command per line,
ending each answer with "OK <cmd>" or "ERR <cmd>: <reason>".
"""
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Every wait's timeout is multiplied by this: a rig on one L1 vCPU (smart paging's,
# tests/e2e/meson.build) runs its guests and their VMMs on one emulated CPU.
TIME_SCALE = float(os.environ.get("TIDAL_E2E_TIME_SCALE", "1"))
READY_RE = re.compile(r"TIDAL-GUEST-READY cpus=(\d+) memtotal_kb=(\d+) uptime_ms=(\d+)\r?\n")


def kvm_usable():
    """A /dev/kvm this user can open, with hardware virtualization (vmx or svm) under it.

    Without them a /dev/kvm may still exist: PVM's (kvm_pvm, in cloud VMs without nested
    virtualization) runs only kernels built for PVM, and a stock kernel crawls or stops there.
    Such a host counts as one without KVM: the tests use the nested rig (tests/rig/run keeps
    the same rule)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or os.environ.get("TIDAL_RIG") == "force":
        return False
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return bool({"vmx", "svm"} & set(line.split()))
    return False


class GuestError(AssertionError):
    pass


def prepare_guest(build_dir, tidal=None):
    """Fetches Debian's kernel and builds the test initramfs; returns (kernel, initrd).

    With tidal, also fills a kernel cache in the build directory (tidal cache-kernel) and
    points TIDAL_KERNEL_CACHE at it, for this process and the rig (which passes TIDAL_*): the
    decompression runs once, here at native speed, not in every rig. TIDAL_KERNEL_CACHE=off
    leaves the guests decompressing their kernel."""
    cache = subprocess.run([os.path.join(SRC, "scripts", "fetch-kernel.sh")], check=True,
                           stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    initrd = os.path.join(build_dir, "guest", "guest.cpio.gz")
    os.makedirs(os.path.dirname(initrd), exist_ok=True)
    subprocess.run([os.path.join(SRC, "guest", "build-initramfs.sh"), initrd, cache], check=True,
                   stdout=sys.stderr)
    kernel = os.path.join(cache, "kernel", "vmlinuz")
    if tidal and os.environ.get("TIDAL_KERNEL_CACHE") != "off":
        os.environ.setdefault("TIDAL_KERNEL_CACHE", os.path.join(build_dir, "kernel-cache"))
        subprocess.run([tidal, "cache-kernel", "--kernel", kernel], check=True,
                       stdout=sys.stderr)
    return kernel, initrd


def run_in_rig(argv_inside, build_dir, log, timeout, mem=4096, env=()):
    """Runs argv_inside in the nested rig (tests/rig/run); returns its exit status.

    The source tree is shared as well as the build directory: it need not lie under the host
    root the rig shares read-only (CI clones anywhere, /tmp included, and /tmp is L1's own)."""
    argv = [os.path.join(SRC, "tests", "rig", "run"), "--mem", str(mem), "--timeout",
            str(timeout), "--log", log, "--share", SRC, "--share", build_dir]
    for name in env:
        argv += ["--env", name]
    return subprocess.call(argv + ["--"] + list(argv_inside))


class Guest:
    def __init__(self, argv, log_path, env=None):
        self.argv = argv
        self.log = open(log_path, "ab", buffering=0)
        self.log.write(("\n$ " + " ".join(argv) + "\n").encode())
        # The log may sit on the rig's 9p share: its writes happen on a thread of their own, so
        # that a slow write never keeps the console from being read.
        self.log_queue = queue.Queue()
        self.log_thread = threading.Thread(target=self._write_log, daemon=True)
        self.log_thread.start()
        self.last_output = self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.out = b""
        self.err = b""
        self.pos = 0  # how far wait_for() has consumed self.out
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, "out"),
                                         daemon=True),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, "err"),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def _pump(self, stream, which):
        while True:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            self.log_queue.put(chunk)
            with self.cond:
                self.last_output = time.monotonic()
                if which == "out":
                    self.out += chunk
                else:
                    self.err += chunk
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _write_log(self):
        while True:
            chunk = self.log_queue.get()
            if chunk is None:
                break
            self.log.write(chunk)

    def threads_state(self):
        """What each of the VMM's threads is doing: name, state and kernel wait channel."""
        task_dir = "/proc/%d/task" % self.proc.pid
        out = []
        try:
            for tid in sorted(os.listdir(task_dir), key=int):
                def read(name):
                    with open(os.path.join(task_dir, tid, name)) as f:
                        return f.read().strip()
                state = read("stat").rsplit(")", 1)[1].split()[0]
                out.append("%s %s(%s) %s" % (tid, read("comm"), state, read("wchan")))
        except OSError as e:
            out.append("(%s)" % e)
        return "; ".join(out)

    def text(self):
        return self.out.decode(errors="replace")

    def stderr(self):
        with self.cond:
            return self.err.decode(errors="replace")

    def wait_for(self, pattern, timeout):
        """Waits for a regex in console output after what was consumed; returns the match."""
        rx = re.compile(pattern)
        timeout *= TIME_SCALE
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.out.decode(errors="replace"), self.pos)
                if m:
                    self.pos = m.end()
                    return m
                left = deadline - time.monotonic()
                exited = self.proc.poll() is not None and not self._pumps_alive()
                if left <= 0 or exited:
                    what = ("the VMM exited with status %s" % self.proc.poll() if exited else
                            "timed out after %ss; last output %.0f s ago; threads: %s" %
                            (timeout, time.monotonic() - self.last_output,
                             self.threads_state()))
                    raise GuestError("%s, waiting for %r; tail:\n%s\nstderr:\n%s" %
                                     (what, pattern, self.out[-3000:].decode(errors="replace"),
                                      self.err[-2000:].decode(errors="replace")))
                self.cond.wait(min(left, 0.5))

    def _pumps_alive(self):
        return any(t.is_alive() for t in self.threads)

    def wait_ready(self, timeout=240):
        m = self.wait_for(READY_RE.pattern, timeout)
        return {"cpus": int(m.group(1)), "memtotal_kb": int(m.group(2)),
                "uptime_ms": int(m.group(3)), "seconds": time.monotonic() - self.started}

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def _run(self, line, timeout):
        name = line.split()[0]
        start = self.pos
        self.send(line)
        # Up to the newline: "$" would also match a line still being received.
        m = self.wait_for(r"(?m)^(OK %s[^\r\n]*|ERR %s[^\r\n]*)\r?\n" %
                          (re.escape(name), re.escape(name)), timeout)
        if m.group(1).startswith("ERR"):
            raise GuestError("guest command %r failed: %s" % (line, m.group(1)))
        body = self.text()[start:m.start()]
        return m.group(1), [l.rstrip("\r") for l in body.splitlines() if l.strip()]

    def cmd(self, line, timeout=120):
        """Runs a guest command; returns its output lines (without the OK line)."""
        return self._run(line, timeout)[1]

    def exec(self, command, timeout=120):
        """Runs a shell command in the guest; returns (exit status, output lines)."""
        ok, lines = self._run("exec " + command, timeout)
        return int(re.search(r"rc=(\d+)", ok).group(1)), lines

    def meminfo(self):
        out = {}
        for l in self.cmd("meminfo"):
            m = re.match(r"(\w+):\s+(\d+)", l)
            if m:
                out[m.group(1)] = int(m.group(2))
        return out

    def wait_exit(self, timeout=120):
        timeout *= TIME_SCALE
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GuestError("process did not exit within %ss; tail:\n%s" %
                             (timeout, self.out[-2000:].decode(errors="replace")))
        for t in self.threads:
            t.join(5)
        return rc

    def _close_log(self):
        self.log_queue.put(None)
        self.log_thread.join()
        self.log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        for t in self.threads:
            t.join(5)
        if not self.log.closed:
            self._close_log()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
