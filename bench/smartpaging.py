#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Restart-to-init under smart paging (issue 6's benchmark, docs/performance.md): how long a
guest takes from its reboot to its init when tidald can grant only half of its startup memory
(smart paging bridges the gap) versus when it grants all of it.

    bench/smartpaging.py --tidal build/src/vmm/tidal --build-dir build [--runs 3]

Each run: a tidald with a budget of --budget MiB; the guest (startup --startup MiB, minimum
128 MiB, weight 1000) boots and is balanced down to its want (its demand is small); then a
simulated VM ("hog", weight 9000, minimum = startup, so it cannot be squeezed) registers over
tidald's real socket and holds budget - startup/2 (the 50 % gap) or budget - startup - 64 MiB
(the full grant). The guest reboots: the time from the reboot command to its init's ready line
is the restart time. The two cases alternate, so drift in the rig hits both alike. Runs
directly where /dev/kvm exists, else inside the nested rig (only the ratio means anything).
Nothing here is a test: no assertions on time.
"""
import argparse
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from common import Guest, add_rig_args, emit, main_here_or_in_rig, median
from tidald import VM, Daemon, Failure, admin, pump

MiB = 1 << 20
CMDLINE = "console=ttyS0 quiet"


class Hog:
    """A simulated VM that holds `mib` (its minimum: tidald cannot take any of it) and keeps
    reporting, on a thread, so that tidald does not drop it as silent."""

    def __init__(self, daemon, mib):
        self.vm = VM(daemon.path, "hog")
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.vm.sock, selectors.EVENT_READ, self.vm)
        self.vm.register(startup=mib * MiB, minimum=mib * MiB, weight=9000)
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stop.is_set():
                pump(self.sel, 0.5)
                if self.vm.state == "running":
                    self.vm.report(self.vm.grant * 5 // 6)  # x 1.2 buffer = the grant
        except (Failure, OSError) as e:
            self.error = e

    def wait_admitted(self, timeout=120):
        end = time.monotonic() + timeout
        while self.vm.state != "running":
            if self.error or time.monotonic() > end:
                raise Failure("the hog was not admitted: %s" % (self.error or "timeout"))
            time.sleep(0.1)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.vm.sock.close()


def vm_row(daemon, name):
    for v in admin(daemon.path, {"cmd": "list"})["vms"]:
        if v["name"] == name:
            return v
    return None


def wait_until(what, cond, timeout):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise Failure("timed out waiting for " + what)
        time.sleep(0.2)


def tidalctl_info(tidalctl, sock):
    out = subprocess.run([tidalctl, "--api-socket", sock, "info", "--json"], check=True,
                         stdout=subprocess.PIPE, text=True, timeout=30).stdout
    return json.loads(out)["info"]


def one_restart(args, kernel, initrd, gap, run, log):
    """One run; returns a dict of figures."""
    workdir = tempfile.mkdtemp(prefix="tidal-bench-sp-")
    sock = os.path.join(workdir, "small.sock")
    daemon = Daemon(args.tidald, workdir, "%dM" % args.budget, 0)
    guest = hog = None
    try:
        argv = [args.tidal, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", CMDLINE,
                "--cpus", "1", "--name", "small", "--memory",
                "startup=%dM,minimum=128M,maximum=1G,buffer=20,weight=1000" % args.startup,
                "--memctl-socket", daemon.path, "--api-socket", sock,
                "--smart-paging-dir", os.path.join(workdir, "paging")]
        guest = Guest(argv, log)
        guest.wait_ready(timeout=600)
        wait_until("the guest to be balanced down", lambda: (vm_row(daemon, "small") or {}).get(
            "assigned_bytes", 1 << 62) <= args.startup * MiB // 2, 300)
        hog_mib = args.budget - (args.startup // 2 if gap else args.startup + 64)
        hog = Hog(daemon, hog_mib)
        hog.wait_admitted()

        t0 = time.monotonic()
        guest.send("reboot")
        ready = guest.wait_ready(timeout=900)
        restart_s = time.monotonic() - t0
        # What tidald admitted the restart with (its grant moves on as it balances).
        partial = re.search(r"tidald granted (\d+) MiB, less than startup", guest.stderr())
        grant_mib = int(partial.group(1)) if partial else args.startup
        paging = tidalctl_info(args.tidalctl, sock)["memory"]["smart_paging"]
        ended_s = None
        if paging["active"] or re.search(r"smart paging: started", guest.stderr()):
            wait_until("smart paging to end", lambda: "smart paging: ended" in guest.stderr(),
                       900)
            ended_s = time.monotonic() - t0
            paging = tidalctl_info(args.tidalctl, sock)["memory"]["smart_paging"]
        figures = dict(gap=gap, restart_s=restart_s, guest_uptime_s=ready["uptime_ms"] / 1000.0,
                       grant_mib=grant_mib, paging_ended_s=ended_s,
                       pages_in=paging["pages_in"], pages_out=paging["pages_out"])
        print("run %d %-10s restart-to-init %.2f s (guest uptime %.2f s), grant %s MiB, "
              "paging ended %s, pages in/out %d/%d" % (
                  run, "50 % gap" if gap else "full", restart_s, figures["guest_uptime_s"],
                  figures["grant_mib"], "%.1f s after the reboot" % ended_s if ended_s else "-",
                  figures["pages_in"], figures["pages_out"]), flush=True)
        guest.send("poweroff")
        guest.wait_exit(60)
        return figures
    finally:
        if guest and guest.proc.poll() is None:
            guest.kill()
        if hog:
            hog.close()
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(args, kernel, initrd):
    log = os.path.join(args.build_dir, "bench-smartpaging.log")
    results = {True: [], False: []}
    for i in range(args.runs):
        for gap in (False, True):
            results[gap].append(one_restart(args, kernel, initrd, gap, i + 1, log))
    full = median([r["restart_s"] for r in results[False]])
    half = median([r["restart_s"] for r in results[True]])
    emit("restart-to-init, startup %d MiB, budget %d MiB, median of %d runs" %
         (args.startup, args.budget, args.runs))
    emit("| restart | grant (MiB) | restart-to-init (s) | guest uptime at init (s) | "
         "paging ended after (s) | pages in / out | ratio to full grant |")
    emit("|---|---:|---:|---:|---:|---:|---:|")
    for gap, name in ((False, "full grant"), (True, "50 % gap, smart paging")):
        rs = results[gap]
        ended = [r["paging_ended_s"] for r in rs if r["paging_ended_s"]]
        emit("| %s | %s | %.2f | %.2f | %s | %d / %d | %.2f |" % (
            name, "/".join(str(r["grant_mib"]) for r in rs), median([r["restart_s"] for r in rs]),
            median([r["guest_uptime_s"] for r in rs]), "%.1f" % median(ended) if ended else "-",
            median([r["pages_in"] for r in rs]), median([r["pages_out"] for r in rs]),
            median([r["restart_s"] for r in rs]) / full))
    emit("target: 50 %% gap <= 2x the full grant's restart; ratio %.2f" % (half / full))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tidal", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--budget", type=int, default=1024, help="tidald's budget, MiB")
    ap.add_argument("--startup", type=int, default=512, help="the guest's startup, MiB")
    add_rig_args(ap)
    args = ap.parse_args()
    args.tidal = os.path.abspath(args.tidal)
    args.build_dir = os.path.abspath(args.build_dir)
    memctl = os.path.join(os.path.dirname(os.path.dirname(args.tidal)), "memctl")
    args.tidald = os.path.join(memctl, "tidald", "tidald")
    args.tidalctl = os.path.join(memctl, "tidalctl")

    return main_here_or_in_rig(__file__, args, run, "bench-smartpaging-rig.log")

if __name__ == "__main__":
    sys.exit(main())
