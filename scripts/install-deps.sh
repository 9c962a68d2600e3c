#!/usr/bin/env bash
# Installs every package tidal needs to build, test and run its demo on Debian 12.
# Idempotent and quick when everything is already there.
set -euo pipefail

PACKAGES=(
        # build
        build-essential meson ninja-build pkg-config clang clang-format
        liburing-dev libcap-ng-dev libcmocka-dev libjson-c-dev libsystemd-dev
        liblzma-dev libxxhash-dev
        # the test guest and the nested KVM rig
        busybox-static cpio gzip xz-utils zstd kmod qemu-system-x86 qemu-utils python3
        # ACPI table validation, sanitizers for clang builds
        acpica-tools libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
        exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
else
        SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
