#!/usr/bin/env python3
"""Seeds for fuzz_net (see tests/fuzz/fuzz_net.c for the input layout):
well-formed rings with RX buffers and TX chains, so the fuzzer starts from
inputs that reach frame delivery, MRG_RXBUF, offload headers and resets."""
import struct, sys, os

RAM = 0x10000
RX = (0x1000, 0x2000, 0x3000)
TX = (0x4000, 0x5000, 0x6000)

def desc(ram, table, i, addr, ln, flags, nxt=0):
    struct.pack_into('<QIHH', ram, table + 16 * i, addr, ln, flags, nxt)

def avail(ram, base, heads):
    struct.pack_into('<HH', ram, base, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into('<H', ram, base + 4 + 2 * i, h)

def seed(flags, qrx, qtx, steps, rx_bufs, rx_len, tx_chains, tx_hdr=b'\0' * 12):
    ram = bytearray(RAM)
    for i in range(rx_bufs):
        desc(ram, RX[0], i, 0x8000 + i * rx_len, rx_len, 2)
    avail(ram, RX[1], list(range(rx_bufs)))
    heads = []
    for c, segs in enumerate(tx_chains):
        first = c * 4
        addr = 0xe000 + c * 0x400
        ram[addr:addr + 12] = tx_hdr
        for k, ln in enumerate(segs):
            last = k == len(segs) - 1
            desc(ram, TX[0], first + k, addr + sum(segs[:k]), ln, 0 if last else 1, first + k + 1)
        heads.append(first)
    avail(ram, TX[1], heads)
    hdr = bytes([flags]) + struct.pack('<HH', qrx, qtx) + bytes([len(steps)])
    return hdr + b''.join(bytes(s) for s in steps) + bytes(ram)

INJ = lambda n: (0, (n // 8) & 0xff, (n // 8) >> 8)
RXK, TXK, RST = (1, 0, 0), (2, 0, 0), (3, 0, 0)
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus', 'net')
os.makedirs(out, exist_ok=True)
seeds = {
    'mrg-both-ways': seed(1 | 2, 16, 16, [INJ(800), RXK, TXK, INJ(9000), RXK, TXK], 8, 0x800,
                          [[72], [12, 60], [40, 40, 40]]),
    'one-buffer-too-small': seed(2, 16, 16, [INJ(1600), INJ(64), RXK, TXK], 4, 0x400, [[72]]),
    'offloads-tso-header': seed(8 | 1, 16, 16, [INJ(4000), RXK, TXK], 8, 0x800, [[12, 100]],
                                tx_hdr=struct.pack('<BBHHHHH', 1, 1, 54, 1448, 34, 16, 0)),
    'stall-then-reset': seed(1 | 2 | 4, 16, 16, [INJ(800), INJ(800), RXK, RST, RXK, TXK], 0, 0x800,
                             [[72]]),
    'rate-limited': seed(16 | 32 | 1, 16, 16, [INJ(2000), INJ(2000), INJ(2000), RXK, TXK, TXK], 8,
                         0x800, [[72], [72], [72], [72]]),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
