#!/usr/bin/env python3
"""Writes a seed input for fuzz-virtio-mem (src/virtio-mem/fuzz/fuzz-virtio-mem.c): a driver
that plugs 2 blocks, asks their state, unplugs one and then everything, between config reads,
resets and checks. Without it libFuzzer takes long to build a valid ring that reaches the
hot-plug region. Usage: virtio-mem-seed.py OUT_FILE"""
import struct
import sys

QUEUE_SIZE = 4  # 2 << 4 = 32 entries
OPS = [0, 6, 0, 6, 0, 6, 0, 6, 7, 4, 7, 5]  # kicks, checks, a config access, a reset
ARG = [8, 0, 0, 0]  # 8 blocks requested from the start
AVAIL, DESC, DATA = 0x0, 0x110, 0x2800  # as in the harness
HP_GPA = 4 << 20
REQUESTS = [(0, HP_GPA, 2), (3, HP_GPA, 4), (1, HP_GPA, 1), (2, 0, 0)]  # PLUG STATE UNPLUG ALL

img = bytearray(0x3000)
struct.pack_into("<HH", img, AVAIL, 0, len(REQUESTS))
for i, (kind, addr, nb) in enumerate(REQUESTS):
    req, resp = DATA + 64 * i, DATA + 64 * i + 32
    struct.pack_into("<H", img, AVAIL + 4 + 2 * i, 2 * i)
    struct.pack_into("<H6xQH6x", img, req, kind, addr, nb)
    struct.pack_into("<QIHH", img, DESC + 32 * i, req, 24, 1, 2 * i + 1)  # NEXT
    struct.pack_into("<QIHH", img, DESC + 32 * i + 16, resp, 10, 2, 0)  # WRITE
with open(sys.argv[1], "wb") as f:
    f.write(bytes([QUEUE_SIZE] + OPS + ARG) + bytes(img))
