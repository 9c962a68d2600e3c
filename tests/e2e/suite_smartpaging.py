"""End-to-end test of smart paging (issue 6): a guest squeezed to its minimum reboots, tidald
can grant only part of its startup memory, and tidal bridges the gap with a paging file until
the balloon has brought the guest within its grant."""
import json
import os
import re
import subprocess
import tempfile
import time

from suite_memctl import Daemon, stop_all
from suites import api_socket, check, memory_info, wait_until

MIB = 1 << 20
BUDGET_MIB = 1024
STARTUP_MIB = 512
# small's init writes and checks a pattern over this much of MemTotal before its balloon driver
# loads, on every boot: in the restart nothing can take memory back meanwhile, so the guest
# uses more than its grant and smart paging must page out and in.
EARLY_PATTERN_PCT = 85
SMALL_MEMORY = "startup=%dM,minimum=128M,maximum=1G,buffer=20,weight=1000" % STARTUP_MIB
BIG_MIB = 640
BIG_MEMORY = "startup=%dM,minimum=%dM,maximum=1G,buffer=10,weight=9000" % (BIG_MIB, BIG_MIB)


def start(ctx, daemon, name, memory, extra=(), cmdline_extra=""):
    sock = api_socket(name)
    g = ctx.start("smartpaging_" + name, memory=memory,
                  extra=["--name", name, "--api-socket", sock, "--memctl-socket",
                         daemon.socket] + list(extra), cmdline_extra=cmdline_extra)
    g.__enter__()
    return g, sock


def wait_stderr(g, pattern, timeout):
    """Waits for a regex in tidal's log (stderr); returns the match."""
    return wait_until("%r in tidal's log" % pattern, lambda: re.search(pattern, g.stderr()),
                      timeout)


def paging_info(ctx, sock):
    return memory_info(ctx, sock)["smart_paging"]


def grant_of(ctx, sock):
    return json.loads(ctx.tidalctl(sock, "info", "--json"))["info"]["memctl"]["grant_bytes"]


def squeeze_small(ctx, daemon, paging_dir, guests, cmdline_extra=""):
    """Starts small (weight 1000, paging in paging_dir) and lets tidald balance it down to about
    its minimum, then big (weight 9000), whose startup and minimum of BIG_MIB leave small no
    room to grow back: a restart of small can find at most budget - BIG_MIB = 384 of its
    512 MiB (a partial grant) whatever big's guest does. big holds its minimum rather than a
    workload grown step by step: the same squeeze in a fraction of the time. Returns small and
    its control socket."""
    small, small_sock = start(ctx, daemon, "small", SMALL_MEMORY,
                              extra=["--smart-paging-dir", paging_dir],
                              cmdline_extra=cmdline_extra)
    guests.append(small)
    small.wait_ready()

    def small_at_floor():
        return (daemon.vms()["small"]["grant_bytes"] <= 160 * MIB and
                memory_info(ctx, small_sock)["assigned_bytes"] <= 160 * MIB)

    # Its early pattern made it grow; idle, it comes down to its want (its minimum).
    wait_until("small balanced down to about its minimum", small_at_floor, 300,
               lambda: "tidald: %s" % daemon.ctl("list").stdout)
    big, _ = start(ctx, daemon, "big", BIG_MEMORY)
    guests.append(big)
    big.wait_ready(timeout=600)
    check(small_at_floor(), "small grew back next to big: %s" % daemon.ctl("list").stdout)
    return small, small_sock


def smartpaging_restart(ctx):
    """small (startup 512M, minimum 128M) is squeezed to its minimum by big (weight 9000,
    startup = minimum = 640M); small reboots and tidald grants only part of 512M: smart paging is active while
    the guest boots to its init, the test init's pattern over most of its RAM reads back
    correctly, the balloon takes the guest within its grant, paging ends and the file is
    gone."""
    daemon = Daemon(ctx, "smartpaging_restart", budget_mib=BUDGET_MIB)
    paging_dir = tempfile.mkdtemp(prefix="tidal-smartpaging-")
    paging_file = os.path.join(paging_dir, "small.paging")
    guests = []
    try:
        small, small_sock = squeeze_small(
            ctx, daemon, paging_dir, guests,
            cmdline_extra="tidal.early_pattern=%d" % EARLY_PATTERN_PCT)
        check(not os.path.exists(paging_file), "a paging file before any restart")

        # The reboot: tidald cannot find 512 MiB, grants part of it; smart paging starts
        # before the vCPUs run again.
        small.send("reboot")
        m = wait_stderr(small, r"smart paging: started, ([^ ]+ [KMG]iB) resident", 300)
        started = time.monotonic()
        info = paging_info(ctx, small_sock)
        grant = grant_of(ctx, small_sock)
        check(info["active"], "smart paging not active after its start: %r" % info)
        check(grant is not None and grant < STARTUP_MIB * MIB,
              "the restart was granted %r, not less than startup" % grant)
        check(os.path.exists(paging_file), "no paging file %s while paging" % paging_file)
        st = os.stat(paging_file)
        check(st.st_mode & 0o777 == 0o600, "paging file mode %o" % (st.st_mode & 0o777))
        listed = daemon.vms()["small"]["smart_paging"]
        print("smart paging started with %s resident (grant %d MiB); tidald: %r" %
              (m.group(1), grant >> 20, listed))

        # The guest reaches its init, which writes a pattern over most of its RAM before any
        # driver could give memory back: pages go out to the file and come back correct.
        early = small.wait_for(r"(?m)^EARLY pattern (\d+)\r?\n", 600)
        result = small.wait_for(r"(?m)^(OK pattern|ERR pattern)[^\r\n]*", 1800)
        during = paging_info(ctx, small_sock)
        print("early pattern over %s MiB: %s; paging %r" % (early.group(1), result.group(0),
                                                             during))
        check(result.group(1) == "OK pattern", "the pattern under smart paging: %s; console:\n%s"
              % (result.group(0), small.text()[-2000:]))
        # Once: a guest that crashed (a triple fault resets it) and ran the pattern again in a
        # later boot would otherwise pass.
        boots = small.stderr().count("guest rebooted; starting boot")
        check(boots == 1, "the guest restarted %d times, not once: memory it read under smart "
              "paging was wrong; tidal:\n%s" % (boots, small.stderr()[-2000:]))
        check(during["pages_out"] > 0 and during["pages_in"] > 0,
              "the pattern did not page out and back in: %r" % during)
        small.wait_ready(timeout=600)

        # The balloon brings the guest within its grant; paging ends, the file goes.
        wait_until("smart paging to end", lambda: "smart paging: ended" in small.stderr(), 900,
                   lambda: "paging %r, memory %r" % (paging_info(ctx, small_sock), {
                       k: v for k, v in memory_info(ctx, small_sock).items()
                       if k.endswith("bytes")}))
        lasted = time.monotonic() - started
        end = paging_info(ctx, small_sock)
        mem = memory_info(ctx, small_sock)
        check(not end["active"], "info still says active: %r" % end)
        check(end["pages_out"] > 0 and end["pages_in"] > 0,
              "no paging happened: %r" % end)
        check(mem["assigned_bytes"] <= mem["target_bytes"],
              "guest above its target after paging: %r" % mem)
        check(not os.path.exists(paging_file), "paging file %s still there" % paging_file)
        check(os.listdir(paging_dir) == [], "left in %s: %r" % (paging_dir,
                                                               os.listdir(paging_dir)))
        line = re.search(r"smart paging: ended after [^\n]*", small.stderr()).group(0)
        print("%s (%.1f s from the start line to the end as the test saw it)" % (line, lasted))
        wait_until("tidald to see paging over",
                   lambda: not daemon.vms()["small"]["smart_paging"]["active"], 60)

        # The guest runs on correctly with its memory back from the file.
        small.cmd("pattern 64", timeout=300)
    finally:
        stop_all(guests)
        daemon.close()


def smartpaging_disk_full(ctx):
    """A paging file system that fills up (16 MiB for a gap of hundreds) while the guest's init
    writes most of its RAM: tidal stops the VM with a clear error and exit status 1 instead of
    running it with memory it cannot read back, although its vCPU then waits for pages that
    are in the file; no paging file is left."""
    daemon = Daemon(ctx, "smartpaging_disk_full", budget_mib=BUDGET_MIB)
    paging_dir = tempfile.mkdtemp(prefix="tidal-smartpaging-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", paging_dir],
                   check=True)
    guests = []
    try:
        small, small_sock = squeeze_small(
            ctx, daemon, paging_dir, guests,
            cmdline_extra="tidal.early_pattern=%d" % EARLY_PATTERN_PCT)
        small.send("reboot")
        wait_stderr(small, r"smart paging: started", 300)
        # The early pattern writes hundreds of MiB past the grant: the file system fills.
        rc = small.wait_exit(timeout=900)
        err = small.stderr()
        check(err.count("guest rebooted; starting boot") == 1,
              "the guest restarted more than once while paging: %r" % err[-2000:])
        check(rc == 1, "tidal exited %s after the paging file system filled up, expected 1" % rc)
        check("smart paging failed: No space left on device" in err,
              "no clear message about the full disk: %r" % err[-2000:])
        check(os.listdir(paging_dir) == [], "left in %s: %r" % (paging_dir,
                                                               os.listdir(paging_dir)))
    finally:
        stop_all(guests)
        daemon.close()
        subprocess.run(["umount", paging_dir])
