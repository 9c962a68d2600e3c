#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The systemd units: systemd-analyze verify and security, and where meson install puts them.

    units.py --units DIR --bindir DIR --unit-dir DIR --sysusers-dir DIR --build-root DIR
             --exe tidal=PATH [--exe tidald=PATH] [--meson CMD]

--units holds the configured units (ExecStart under --bindir, the install bindir); the test
verifies copies whose ExecStart points at the built binaries, since verify checks that the
program exists. Exit 77 (skip) without systemd-analyze.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

UNITS = ["tidald.service", "tidald.socket", "tidal@.service"]
PROGRAMS = {"tidald.service": "tidald", "tidal@.service": "tidal"}
# The highest "Overall exposure level" accepted (0 = fully sandboxed, 10 = not at all).
MAX_EXPOSURE = 2.5

# Directives each unit must keep: the sandboxing docs/systemd.md promises.
REQUIRED = {
    "tidald.service": [
        "Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
        "CapabilityBoundingSet=", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
        "PrivateDevices=yes", "RestrictNamespaces=yes", "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service", "SystemCallArchitectures=native",
        "RuntimeDirectory=tidal", "RuntimeDirectoryPreserve=yes", "LockPersonality=yes",
        "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
        "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "UMask=0077",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "IPAddressDeny=any",
        "IPAddressAllow=localhost",
    ],
    "tidald.socket": [
        "ListenStream=/run/tidal/tidald.sock", "SocketMode=0660", "SocketGroup=tidal",
    ],
    "tidal@.service": [
        "ExecStart=", "--name %i $TIDAL_ARGS", "EnvironmentFile=", "KillSignal=SIGTERM",
        "Restart=on-failure", "RestartPreventExitStatus=2 3", "DeviceAllow=/dev/kvm rw",
        # smart paging: userfaultfd for KVM's faults without CAP_SYS_PTRACE, and its files
        "DeviceAllow=/dev/userfaultfd rw", "StateDirectory=tidal/smartpaging",
        "DevicePolicy=closed", "CapabilityBoundingSet=", "NoNewPrivileges=yes",
        "ProtectSystem=strict", "PrivateNetwork=yes", "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service", "Wants=tidald.socket",
    ],
}

ARGS = None
failures = []


def check(cond, message):
    if not cond:
        failures.append(message)
        print(f"FAIL: {message}")
    return cond


def unit_lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_required_directives():
    for unit, needles in REQUIRED.items():
        lines = unit_lines(os.path.join(ARGS.units, unit))
        for needle in needles:
            check(any(needle in line for line in lines), f"{unit}: no '{needle}'")
    print("ok: the units carry their directives")


def make_test_copies(tmp):
    """Copies of the units whose ExecStart names the built programs."""
    exes = dict(e.split("=", 1) for e in ARGS.exe)
    for unit in UNITS:
        with open(os.path.join(ARGS.units, unit)) as f:
            text = f.read()
        program = PROGRAMS.get(unit)
        if program:
            installed = os.path.join(ARGS.bindir, program)
            check(f"ExecStart={installed} " in text, f"{unit}: ExecStart is not {installed}")
            built = exes.get(program)
            if not built or not os.path.exists(built):
                # Not built yet (tidald is written in parallel): verify the rest of the unit.
                print(f"note: {program} is not built; {unit} is verified with ExecStart={shutil.which('true')}")
                built = shutil.which("true")
            text = text.replace(f"ExecStart={installed} ", f"ExecStart={built} ")
        with open(os.path.join(tmp, unit), "w") as f:
            f.write(text)
    # A template is verified through an instance too (%i expanded).
    shutil.copy(os.path.join(tmp, "tidal@.service"), os.path.join(tmp, "tidal@vm1.service"))


def test_verify(tmp):
    paths = [os.path.join(tmp, u) for u in UNITS + ["tidal@vm1.service"]]
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True,
                       text=True, timeout=120, cwd=tmp)
    ours = re.compile(r"tidald?(@[a-z0-9]*)?\.(service|socket)")
    complaints = [line for line in (p.stdout + p.stderr).splitlines() if ours.search(line)]
    for line in complaints:
        print(f"  {line}")
    check(p.returncode == 0, f"systemd-analyze verify exited {p.returncode}: {p.stderr.strip()}")
    check(not complaints, "systemd-analyze verify complains about our units")
    print("ok: systemd-analyze verify")


def test_security(tmp):
    for unit in ["tidald.service", "tidal@vm1.service"]:
        p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                            os.path.join(tmp, unit)],
                           capture_output=True, text=True, timeout=120, cwd=tmp)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout + p.stderr)
        if not check(m, f"{unit}: no exposure level in: {p.stdout[-300:]} {p.stderr[-300:]}"):
            continue
        level = float(m.group(1))
        check(level <= MAX_EXPOSURE, f"{unit}: exposure level {level} above {MAX_EXPOSURE}")
        print(f"ok: {unit} exposure level {level}")


def test_install():
    with tempfile.TemporaryDirectory(prefix="tidal-install-") as dest:
        p = subprocess.run([*ARGS.meson.split(), "install", "-C", ARGS.build_root, "--no-rebuild",
                            "--quiet", "--destdir", dest],
                           capture_output=True, text=True, timeout=300)
        if not check(p.returncode == 0, f"meson install failed: {p.stdout} {p.stderr}"):
            return
        root = lambda path: os.path.join(dest, path.lstrip("/"))
        for unit in UNITS:
            path = root(os.path.join(ARGS.unit_dir, unit))
            if check(os.path.isfile(path), f"{unit} not installed at {ARGS.unit_dir}"):
                check("@" + "bindir@" not in open(path).read(), f"{unit}: unsubstituted @bindir@")
        check(os.path.isfile(root(os.path.join(ARGS.sysusers_dir, "tidal.conf"))),
              f"no tidal.conf in {ARGS.sysusers_dir}")
        check(os.access(root(os.path.join(ARGS.bindir, "tidal")), os.X_OK),
              f"tidal@.service's program is not installed at {ARGS.bindir}")
        exes = dict(e.split("=", 1) for e in ARGS.exe)
        if "tidald" in exes:
            check(os.access(root(os.path.join(ARGS.bindir, "tidald")), os.X_OK),
                  f"tidald.service's program is not installed at {ARGS.bindir}")
    print("ok: meson install --destdir")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    for opt in ["--units", "--bindir", "--unit-dir", "--sysusers-dir", "--build-root"]:
        parser.add_argument(opt, required=True)
    parser.add_argument("--exe", action="append", default=[])
    parser.add_argument("--meson", default="meson")
    ARGS = parser.parse_args()
    if not shutil.which("systemd-analyze"):
        print("SKIP: systemd-analyze is not installed")
        return 77
    test_required_directives()
    with tempfile.TemporaryDirectory(prefix="tidal-units-") as tmp:
        make_test_copies(tmp)
        test_verify(tmp)
        test_security(tmp)
    test_install()
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
