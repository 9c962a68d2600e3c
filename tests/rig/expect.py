#!/usr/bin/env python3
"""Tiny expect: run a command, wait for patterns in its output, send lines.

usage: expect.py [--timeout SEC] [-q] STEP... -- CMD [ARGS...]
steps (run in order):
  -e REGEX   wait until REGEX matches the output seen since the last match
  -s LINE    send LINE + "\\n" to the command's stdin
  -t LABEL   print "TIME <LABEL> <seconds since start>" to stderr
  -w         wait for the command to exit (default after the last step)
Output of the command is copied to stdout (unless -q). Exit status: the
command's status; 124 on timeout; 125 if the command ended before a match.
"""
import os
import re
import subprocess
import sys
import time


def parse(argv):
    timeout, quiet, steps = 60.0, False, []
    i = 0
    while i < len(argv) and argv[i] != "--":
        opt = argv[i]
        if opt == "--timeout":
            timeout = float(argv[i + 1])
            i += 2
        elif opt == "-q":
            quiet = True
            i += 1
        elif opt in ("-e", "-s", "-t"):
            steps.append((opt, argv[i + 1]))
            i += 2
        elif opt == "-w":
            steps.append((opt, None))
            i += 1
        else:
            sys.exit(f"expect.py: unknown option {opt}\n{__doc__}")
    if i >= len(argv) - 1:
        sys.exit(f"expect.py: missing -- CMD\n{__doc__}")
    return timeout, quiet, steps, argv[i + 1:]


class Session:
    def __init__(self, cmd, quiet):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = b""
        self.quiet = quiet
        self.eof = False
        os.set_blocking(self.proc.stdout.fileno(), False)

    def pump(self, deadline):
        """Read what is available; returns False at deadline."""
        import select

        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
        if r:
            data = self.proc.stdout.read(65536)
            if not data:
                self.eof = True
                return True
            if not self.quiet:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            self.buf += data
        return True

    def expect(self, pattern, deadline):
        rx = re.compile(pattern.encode())
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return 0
            if self.eof:
                return 125
            if not self.pump(deadline):
                return 124

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, deadline):
        while not self.eof:
            if not self.pump(deadline):
                return 124
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return 124


def main():
    timeout, quiet, steps, cmd = parse(sys.argv[1:])
    start = time.monotonic()
    deadline = start + timeout
    s = Session(cmd, quiet)
    rc = 0
    if not steps or steps[-1][0] != "-w":
        steps.append(("-w", None))
    for kind, arg in steps:
        if kind == "-e":
            rc = s.expect(arg, deadline)
        elif kind == "-s":
            s.send(arg)
        elif kind == "-t":
            print(f"TIME {arg} {time.monotonic() - start:.3f}", file=sys.stderr, flush=True)
        else:
            rc = s.wait(deadline)
        if rc:
            what = "timeout" if rc == 124 else "EOF"
            if kind == "-e":
                print(f"expect.py: {what} waiting for {arg!r}", file=sys.stderr)
            break
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()
    return rc


if __name__ == "__main__":
    sys.exit(main())
