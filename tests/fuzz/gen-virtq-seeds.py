#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_virtq (tests/fuzz/corpus/virtq/).

Input layout (see fuzz_virtq.c): 16-byte header {flags, size le16, desc,
avail, used le32, nsteps}, nsteps 4-byte script steps, then the RAM image
from guest-physical 0. Seeds keep the rings at the bottom of RAM so the
files stay tiny."""
import os
import struct
import sys

NEXT, WRITE, INDIRECT = 1, 2, 4
EVENT_IDX, INDIRECT_F, TWO_REGIONS, MAX256 = 1, 2, 4, 8
POP, PUSH, UNPOP, GUEST_WRITE, SIGNAL, ENABLE, HAS_AVAIL, COPY, PUBLISH, SLOT = range(10)

# size-4 queue: desc 0x00-0x3f, avail 0x40-0x4d, used 0x50-0x75, data from 0x80
DESC, AVAIL, USED = 0x00, 0x40, 0x50


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


class Seed:
    def __init__(self, flags=0, size=4, desc_gpa=DESC, avail=AVAIL, used=USED):
        self.hdr = (flags, size, desc_gpa, avail, used)
        self.ram = bytearray(0x100)
        self.steps = []

    def put(self, gpa, data):
        if len(self.ram) < gpa + len(data):
            self.ram.extend(bytes(gpa + len(data) - len(self.ram)))
        self.ram[gpa:gpa + len(data)] = data

    def desc(self, i, *args, table=DESC):
        self.put(table + 16 * i, desc(*args))

    def avail(self, heads, flags=0, used_event=0):
        size = self.hdr[1]
        ring = [0] * size
        for i, h in enumerate(heads):
            ring[i % size] = h
        self.put(AVAIL, struct.pack("<HH%dHH" % size, flags, len(heads), *ring, used_event))

    def step(self, op, a=0, b=0, c=0):
        self.steps.append(bytes([op, a, b, c]))

    def bytes(self):
        flags, size, d, a, u = self.hdr
        hdr = struct.pack("<BHIIIB", flags, size, d, a, u, len(self.steps))
        return hdr + b"".join(self.steps) + bytes(self.ram.rstrip(b"\0"))


def seeds():
    s = Seed()
    s.desc(0, 0x80, 16, NEXT, 1)
    s.desc(1, 0x90, 8, WRITE)
    s.avail([0])
    yield "chain", s

    s = Seed(flags=INDIRECT_F)
    s.desc(0, 0xa0, 32, INDIRECT)
    s.desc(0, 0x80, 16, NEXT, 1, table=0xa0)
    s.desc(1, 0x90, 8, WRITE, table=0xa0)
    s.avail([0])
    yield "indirect", s

    s = Seed(flags=EVENT_IDX)
    s.desc(0, 0x80, 16, NEXT, 1)
    s.desc(1, 0x90, 8, WRITE)
    s.desc(2, 0xc0, 4, WRITE)
    s.avail([0, 2], used_event=1)
    for st in [(POP,), (COPY, 0, 0, 0), (PUSH, 9), (SIGNAL,), (UNPOP,), (POP,), (UNPOP,),
               (POP,), (PUSH, 4), (SIGNAL,), (ENABLE,), (GUEST_WRITE, 0, 0x42, 3),
               (PUBLISH, 1), (SLOT, 2, 1, 0), (HAS_AVAIL,), (POP,), (PUSH,), (SIGNAL,)]:
        s.step(*st)
    yield "event-idx-script", s

    s = Seed(flags=TWO_REGIONS)
    s.desc(0, 0x80, 16, NEXT, 1)
    s.desc(1, 0x10000, 64, WRITE)        # region 1
    s.desc(2, 0xfff8, 16, WRITE)         # straddles the two regions
    s.avail([0, 2])
    yield "two-regions", s

    s = Seed()
    s.desc(0, 0x80, 16, NEXT, 1)
    s.desc(1, 0x80, 16, NEXT, 0)
    s.avail([0])
    yield "loop", s

    # a 64-entry queue (max 256) whose one chain uses every descriptor
    s = Seed(flags=MAX256 | INDIRECT_F, size=64, desc_gpa=0x400, avail=0x40, used=0x800)
    for i in range(64):
        s.put(0x400 + 16 * i, desc(0x100 + i, 1, NEXT if i < 63 else WRITE, i + 1))
    s.put(0x40, struct.pack("<HH", 0, 1))  # avail idx 1, ring[0] = 0
    yield "long-chain", s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "virtq")
    os.makedirs(out, exist_ok=True)
    for name, s in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(s.bytes())


if __name__ == "__main__":
    main()
